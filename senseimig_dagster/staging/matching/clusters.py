"""Scored pairs -> people: constrained clustering with household rules and a person's overrides.

Greedy agglomeration: the pairs a person forced are joined first, then pairs at or above ``MATCH_PROBABILITY``
from the most to the least probable. Two groups join only if no pair across them is kept apart: by an override
(``never``) or by a household rule, which holds whatever the score says:

- ``twins``: same birth date, a shared address, phone or e-mail (the surname may differ: a double-barrelled or
  mistyped one), first names that are not the same
  name (no exact, nickname, one-typo or near-identical spelling: Mary and Maria), or differ at all with another
  gender (Gabriel and Gabriella); and something that says two people were registered, not one person whose first
  name was replaced (legacy conversions and keying do that): another gender, SSNs that both are present and
  differ, or a family home (another generation registered at the address: the twins' parent);
- ``parent_child``: same first and last name, birth dates more than two typos apart and years apart (John Smith
  and John Smith Jr., or two brothers given the same name);
- ``other_person``: neither the first name (nor the names swapped) nor the birth date agree beyond a typo: a
  spouse or a sibling, however much address, phone and e-mail they share. Linkage models weigh each shared
  field as independent evidence, and in a household they are not: this rule is what keeps households apart.

The rules are checked as written on the pair that would join two groups; across the other members of the two
groups only clear-cut cases count (first names three edits apart, birth dates a generation apart), because two
copies of one person each carry their own typos and differ from each other more than either from the original.
An SSN's last four agreeing (within a typo) lifts the rules: household members do not share one, and a record
whose first name or birth date was replaced outright (legacy conversions do that) is still the same person.
A person's ``merge`` wins over a household rule: it is a decision about these two records.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from rapidfuzz.distance import DamerauLevenshtein, JaroWinkler

GENERATION_YEARS = 2
GENERATION_YEARS_APART = 12
# Birth years this far apart at one address are two generations for the twin rule: a young parent is still five
# years older than a teenager, and a record's own mistyped birth year seldom moves five years.
FAMILY_HOME_YEARS = 5
RULE_COLUMNS = ("unique_id", "first", "last", "first_related", "dob", "dob_digits", "phones", "email", "address",
                "gender", "ssn4", "family_home")
GENDERS = ("male", "female")


def pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def _same_first(a: str, b: str, related_a: Iterable[str], related_b: Iterable[str], strict: bool) -> bool:
    if strict:
        return DamerauLevenshtein.distance(a, b) <= 2 or JaroWinkler.similarity(a, b) >= 0.85
    return (a == b or b in related_a or a in related_b or DamerauLevenshtein.distance(a, b) <= 1
            or JaroWinkler.similarity(a, b) >= 0.92)


def _similar(a: str | None, b: str | None) -> bool:
    return bool(a and b) and (a == b or JaroWinkler.similarity(a, b) >= 0.92)  # type: ignore[arg-type]


def household_rule(a: Mapping[str, Any], b: Mapping[str, Any], strict: bool = False) -> str | None:
    """The household rule that keeps two records apart (``twins``, ``parent_child``, ``other_person``), or None.
    ``strict``: only the clear-cut cases (for records that are not the pair being joined)."""
    if not (a["first"] and b["first"] and a["dob"] and b["dob"]):
        return None
    if a["ssn4"] and b["ssn4"] and DamerauLevenshtein.distance(a["ssn4"], b["ssn4"]) <= 1:
        return None
    same_first = _same_first(a["first"], b["first"], a["first_related"] or (), b["first_related"] or (), strict)
    swapped = _similar(a["first"], b["last"]) and _similar(a["last"], b["first"])
    other_gender = a["gender"] in GENDERS and b["gender"] in GENDERS and a["gender"] != b["gender"]
    # both SSNs present here means they differ (agreeing ones returned above)
    two_people = other_gender or bool(a["ssn4"] and b["ssn4"]) or a["family_home"] or b["family_home"]
    if (a["dob"] == b["dob"] and a["first"] != b["first"] and not swapped and two_people
            and (not same_first or other_gender)):
        shared = (set(a["phones"] or ()) & set(b["phones"] or ())
                  or (a["email"] and a["email"] == b["email"]) or _similar(a["address"], b["address"]))
        if shared:
            return "twins"
    transposed = a["dob"][:4] == b["dob"][:4] and a["dob"][5:7] == b["dob"][8:10] and a["dob"][8:10] == b["dob"][5:7]
    near_dob = DamerauLevenshtein.distance(a["dob_digits"], b["dob_digits"]) <= (2 if strict else 1) or transposed
    if not (same_first or swapped or near_dob):
        return "other_person"
    gap = abs(int(a["dob"][:4]) - int(b["dob"][:4]))
    if (gap >= (GENERATION_YEARS_APART if strict else GENERATION_YEARS) and same_first and _similar(a["last"], b["last"])
            and DamerauLevenshtein.distance(a["dob_digits"], b["dob_digits"]) > 2):
        return "parent_child"
    return None


def family_homes(columns: pl.DataFrame) -> pl.Series:
    """Per record: another generation is registered at its address (birth years ``FAMILY_HOME_YEARS`` or more
    apart at one address and ZIP): a family's home, where twins live with a parent."""
    year = pl.col("dob").str.slice(0, 4).cast(pl.Int32, strict=False)
    spread = (year.max() - year.min()).over("address", "zip5")
    return columns.select(pl.when(pl.col("address").is_not_null()).then(spread >= FAMILY_HOME_YEARS)
                          .otherwise(False).fill_null(False).alias("family_home")).to_series()


@dataclass
class Clustering:
    clusters: list[list[str]]  # groups of more than one record
    kept_apart: dict[tuple[str, str], str] = field(default_factory=dict)  # scored pair -> why it was not joined


class _Groups:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.members: dict[str, list[str]] = defaultdict(list)

    def find(self, x: str) -> str:
        while self.parent.get(x, x) != x:
            x = self.parent[x]
        return x

    def members_of(self, root: str) -> list[str]:
        return self.members.get(root) or [root]

    def join(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        keep, gone = (ra, rb) if len(self.members_of(ra)) >= len(self.members_of(rb)) else (rb, ra)
        self.members[keep] = self.members_of(keep) + self.members_of(gone)
        self.members.pop(gone, None)
        self.parent[gone] = keep


def cluster(scored: pl.DataFrame, columns: pl.DataFrame, threshold: float,
            force: Iterable[tuple[str, str]] = (), never: Iterable[tuple[str, str]] = ()) -> Clustering:
    """Groups of one person (see the module doc). ``scored``: id_l, id_r, match_probability."""
    never_pairs = {pair(a, b) for a, b in never}
    force_pairs = {pair(a, b) for a, b in force} - never_pairs
    strong = scored.filter(pl.col("match_probability") >= threshold).sort(
        "match_probability", "id_l", "id_r", descending=[True, False, False])
    ids = {i for p in force_pairs for i in p} | set(strong["id_l"]) | set(strong["id_r"])
    columns = columns.with_columns(family_homes(columns))
    rows = {r["unique_id"]: r for r in columns.filter(pl.col("unique_id").is_in(list(ids)))
            .select(RULE_COLUMNS).iter_rows(named=True)}
    groups, out = _Groups(), Clustering([])

    def blocked(left: list[str], right: list[str], edge: tuple[str, str]) -> str | None:
        for x in left:
            for y in right:
                if pair(x, y) in never_pairs:
                    return "override_never"
                if pair(x, y) in force_pairs:
                    continue
                strict = pair(x, y) != edge
                if x in rows and y in rows and (rule := household_rule(rows[x], rows[y], strict)):
                    return rule
        return None

    edges = [(a, b, True) for a, b in sorted(force_pairs)] + [(a, b, False) for a, b in strong
                                                                 .select("id_l", "id_r").iter_rows()]
    for a, b, forced in edges:
        ra, rb = groups.find(a), groups.find(b)
        if ra == rb:
            continue
        why = blocked(groups.members_of(ra), groups.members_of(rb), pair(a, b))
        if why and not (forced and why != "override_never"):
            out.kept_apart[pair(a, b)] = why
            continue
        groups.join(a, b)
    out.clusters = sorted(sorted(m) for m in groups.members.values() if len(m) > 1)
    return out
