"""Patient deduplication: blocking, pairwise scoring, guarded clustering, survivorship, merge map, overrides.

Pure Polars (no Dagster). ``deduplicate(patients)`` returns the survivors (one row per person, fields merged),
the merge map (duplicate id -> survivor id) and a decisions table (ids and scores only, never values: PHI).

Library choice: ``rapidfuzz`` (Jaro-Winkler, OSA edit distance, token ratios; vectorised over candidate pairs
with ``process.cpdist``) and the ``nicknames`` dataset (Apache-2.0, hand-curated English name -> nickname pairs),
not ``splink``: splink 4+ drags in pandas, sqlglot and altair, runs its own DuckDB SQL and wants a trained or
hand-set model; our scoring is a handful of Fellegi-Sunter-style agreement weights that a reviewer can read in
``Weights`` below, and the blocking and clustering are a few Polars joins, so the extra dependency bought little.

How:

1. ``prepare``: comparison columns (accent-folded lower-case names, DOB, phones as 10 NANP digits, e-mail,
   address with street suffixes abbreviated, ZIP5, completeness).
2. ``candidate_pairs``: union of blocks (last name + DOB, first initial + DOB, DOB + ZIP5, each phone, e-mail,
   first initial + birth year + ZIP5). Blocks larger than ``MAX_BLOCK`` (placeholder phones, a shared clinic
   e-mail) are skipped, so the cost stays near-linear.
3. ``score_pairs``: per-field agreement levels and weights; ``total`` = sum. First name is nearly a gate: twins
   and siblings share last name, address, phone and often e-mail, so only DOB and first name set them apart.
4. ``cluster``: connected components over pairs at or above ``threshold`` plus forced pairs, minus never-merge
   pairs; a chain guard keeps in a cluster only members that match its survivor directly.
5. Survivor: most complete record, then most recent ``updated_at``, then smallest id. Field-level survivorship:
   identity fields keep the survivor's value; other fields take the most recent non-null value; first/last visit
   are min/max; status is Active if any record is; medical alerts are the union (never lose an allergy).
"""

from __future__ import annotations

import csv
import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from nicknames import NickNamer
from rapidfuzz import process
from rapidfuzz.distance import OSA, JaroWinkler

from senseimig_dagster.objects import MODIFIED_AT, PATIENT, PRIMARY_KEY, REGISTRY

REASON_MERGED = "merged_duplicate"
MAX_BLOCK = 50
DEFAULT_THRESHOLD = 12.0
# Common nicknames the dataset lacks (checked against it; add here rather than patching the package data).
EXTRA_NICKNAMES = (("barbara", "barb"), ("olivia", "liv"), ("evelyn", "evie"), ("madison", "maddie"))
_SUFFIXES = {
    "street": "st", "avenue": "ave", "drive": "dr", "lane": "ln", "court": "ct", "boulevard": "blvd",
    "road": "rd", "place": "pl", "circle": "cir", "parkway": "pkwy", "highway": "hwy", "terrace": "ter",
    "apartment": "apt", "suite": "ste", "north": "n", "south": "s", "east": "e", "west": "w",
}  # fmt: skip
# identity and keys keep the survivor's value (a duplicate's typo, nickname or upper case must not win)
SURVIVOR_FIELDS = ("patient_number", "primary_location_id", "first_name", "last_name", "title", "date_of_birth",
                   "gender", "ssn_last_four", "is_deleted")
SCORE_FIELDS = ("first_name", "last_name", "date_of_birth", "phone", "email", "address", "gender")


@dataclass(frozen=True)
class Weights:
    """Agreement weights (log-odds-like points); see the module docstring for why first name weighs most."""

    first_exact: float = 4.0  # Jaro-Winkler >= 0.92 or a known nickname
    first_typo: float = 3.0  # one edit (swap, drop, double)
    first_nickname_typo: float = 1.0  # not a name, one edit from a nickname of the other ("Paam"): weak
    first_partial: float = -3.0  # Mary / Maria: same-gender twins must not pass
    first_disagree: float = -8.0
    last_agree: float = 3.0
    last_partial: float = 1.0
    last_disagree: float = -3.0  # married names change
    dob_exact: float = 5.0
    dob_near: float = 1.0  # two of day, month, year equal, or day and month swapped
    dob_disagree: float = -7.0
    phone_agree: float = 2.5
    phone_disagree: float = -1.0
    email_agree: float = 2.5
    email_disagree: float = -1.0
    address_agree: float = 1.5  # households share addresses: weak evidence
    address_disagree: float = -1.0
    gender_disagree: float = -4.0


@dataclass(frozen=True)
class Overrides:
    """Pairs a person decided on; applied after scoring. Pairs are unordered."""

    force_merge: frozenset[tuple[str, str]] = frozenset()
    never_merge: frozenset[tuple[str, str]] = frozenset()

    @staticmethod
    def of(force_merge: Iterable[tuple[str, str]] = (), never_merge: Iterable[tuple[str, str]] = ()) -> Overrides:
        return Overrides(frozenset(_pair(a, b) for a, b in force_merge),
                         frozenset(_pair(a, b) for a, b in never_merge))


def load_overrides(path: Path | str) -> Overrides:
    """CSV with header ``id_a,id_b,action[,note]``; action is ``merge`` or ``never``; ``#`` lines are comments."""
    force, never = [], []
    with Path(path).open(newline="", encoding="utf-8") as fh:
        rows = csv.DictReader(line for line in fh if line.strip() and not line.lstrip().startswith("#"))
        for n, row in enumerate(rows, start=2):
            action = (row.get("action") or "").strip().lower()
            pair = ((row.get("id_a") or "").strip(), (row.get("id_b") or "").strip())
            if not all(pair) or action not in ("merge", "never"):
                raise ValueError(f"{Path(path).name} line {n}: need id_a, id_b and action merge|never")
            (force if action == "merge" else never).append(pair)
    return Overrides.of(force, never)


@dataclass
class DedupResult:
    patients: pl.DataFrame  # survivors, fields merged; same columns as the input
    merge_map: pl.DataFrame  # duplicate_id, survivor_id, score, rule, reason
    decisions: pl.DataFrame  # id_l, id_r, one score column per field, total, decision, reason
    stats: dict[str, int] = field(default_factory=dict)


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


# -- 1. comparison columns ------------------------------------------------------------------------------------
def _fold(expr: pl.Expr) -> pl.Expr:
    """Accent-folded, lower-case, punctuation-free text with single spaces (O'Brien -> obrien, Zoë -> zoe)."""
    return (expr.str.normalize("NFKD").str.replace_all(r"\p{M}", "").str.to_lowercase()
            .str.replace_all(r"[-_/,.]", " ").str.replace_all(r"[^a-z0-9 ]", "")
            .str.replace_all(r"\s+", " ").str.strip_chars())


def _phone(col: str) -> pl.Expr:
    digits = pl.col(col).str.replace_all(r"\D", "")
    digits = pl.when(digits.str.len_chars() == 11).then(digits.str.strip_prefix("1")).otherwise(digits)
    # NANP area codes never start with 0 or 1; a placeholder (000-000-0000, 999...) would make one huge block
    placeholder = "^[01]|" + "|".join(f"^{d}{{10}}$" for d in "23456789")
    return pl.when((digits.str.len_chars() == 10) & ~digits.str.contains(placeholder)).then(digits)


def _address(expr: pl.Expr) -> pl.Expr:
    words = _fold(expr)
    for full, short in _SUFFIXES.items():
        words = words.str.replace_all(rf"\b{full}\b", short)
    return words


def prepare(patients: pl.DataFrame) -> pl.DataFrame:
    """Comparison columns (prefixed ``_``) next to ``id`` and ``updated_at``."""
    fields = [c for c in PATIENT.field_names if c in patients.columns and c != PRIMARY_KEY]
    email = pl.col("email").str.strip_chars().str.to_lowercase()
    phones = [_phone(c) for c in ("mobile_phone", "home_phone", "work_phone") if c in patients.columns]
    return patients.select(
        PRIMARY_KEY, MODIFIED_AT,
        _fold(pl.col("first_name")).alias("_first"),
        _fold(pl.col("nickname")).alias("_nick"),
        _fold(pl.col("last_name")).str.replace_all(" ", "").alias("_last"),
        pl.col("date_of_birth").alias("_dob"),
        pl.concat_list(phones).list.drop_nulls().list.unique().alias("_phones"),
        pl.when(email.str.contains(r"^[^@\s,]+@[^@\s,]+\.[a-z]{2,}$")).then(email).alias("_email"),
        _address(pl.col("address_line1")).alias("_addr"),
        pl.col("postal_code").str.slice(0, 5).alias("_zip5"),
        pl.col("gender").alias("_gender"),
        pl.sum_horizontal([pl.col(c).is_not_null().cast(pl.Int32) for c in fields]).alias("_filled"),
    )


# -- 2. blocking ----------------------------------------------------------------------------------------------
def _blocks() -> dict[str, list[pl.Expr]]:
    initial = pl.col("_first").str.slice(0, 1)
    return {
        "last_dob": [pl.col("_last"), pl.col("_dob")],
        "initial_dob": [initial, pl.col("_dob")],
        "dob_zip": [pl.col("_dob"), pl.col("_zip5")],
        "initial_year_zip": [initial, pl.col("_dob").dt.year(), pl.col("_zip5")],
        "email": [pl.col("_email")],
    }


def candidate_pairs(prepared: pl.DataFrame, max_block: int = MAX_BLOCK) -> pl.DataFrame:
    """Unique (id_l, id_r) pairs, id_l < id_r, sharing at least one block of at most ``max_block`` rows."""
    keyed = [prepared.select(PRIMARY_KEY, pl.concat_str([e.cast(pl.String) for e in exprs], separator="|")
                             .alias("key")) for exprs in _blocks().values()]
    keyed.append(prepared.select(PRIMARY_KEY, pl.col("_phones").alias("key")).explode("key"))
    frames = []
    for i, k in enumerate(keyed):
        k = k.drop_nulls("key").with_columns(pl.lit(i).alias("block"))
        k = k.filter(pl.len().over("key").is_between(2, max_block))
        frames.append(k)
    keys = pl.concat(frames).select(pl.concat_str([pl.col("block").cast(pl.String), pl.col("key")]).alias("key"),
                                    PRIMARY_KEY)
    pairs = keys.join(keys, on="key", suffix="_r").filter(pl.col(PRIMARY_KEY) < pl.col(f"{PRIMARY_KEY}_r"))
    return pairs.select(pl.col(PRIMARY_KEY).alias("id_l"), pl.col(f"{PRIMARY_KEY}_r").alias("id_r")).unique()


# -- 3. scoring -----------------------------------------------------------------------------------------------
@functools.cache
def nickname_pairs() -> pl.DataFrame:
    """Every (name, nickname) pair in both directions, lower case."""
    rows = [(name, nick) for name, nicks in NickNamer().nickname_lookup.items() for nick in nicks]
    rows += list(EXTRA_NICKNAMES)
    rows += [(b, a) for a, b in rows]
    return pl.DataFrame(rows, schema={"a": pl.String, "b": pl.String}, orient="row").unique()


@functools.cache
def _related_names() -> dict[str, frozenset[str]]:
    related: dict[str, set[str]] = defaultdict(set)
    for a, b in nickname_pairs().iter_rows():
        related[a].add(b)
    return {k: frozenset(v) for k, v in related.items()}


def _nickname_typo(left: pl.Series, right: pl.Series) -> pl.Series:
    """One side is no known name but one edit away from a nickname of the other (a typo made on the nickname).

    Mary vs Maria is not one: Mary is a name of its own, and twins Mary and Maria must stay apart.
    """
    related = _related_names()

    def close(name: str | None, other: str | None) -> bool:
        return (bool(name and other) and other not in related
                and any(OSA.distance(n, other) <= 1 for n in related.get(name, ())))

    return pl.Series([close(a, b) or close(b, a) for a, b in zip(left, right, strict=True)], dtype=pl.Boolean)


def _cp(scorer, left: pl.Series, right: pl.Series) -> pl.Series:
    return pl.Series(process.cpdist(left.fill_null("").to_list(), right.fill_null("").to_list(),
                                    scorer=scorer, workers=1))


def score_pairs(prepared: pl.DataFrame, pairs: pl.DataFrame, weights: Weights = Weights()) -> pl.DataFrame:
    """One row per pair: a score column per field (its weight, 0 when a side is missing) and ``total``."""
    w = weights
    p = (pairs.join(prepared, left_on="id_l", right_on=PRIMARY_KEY)
         .join(prepared, left_on="id_r", right_on=PRIMARY_KEY, suffix="_r"))
    nick = nickname_pairs().with_columns(pl.lit(True).alias("_is_nick"))
    p = p.join(nick, left_on=["_first", "_first_r"], right_on=["a", "b"], how="left")
    if p.is_empty():
        sims = {"jw_first": pl.Series([], dtype=pl.Float64), "osa_first": pl.Series([], dtype=pl.Int64),
                "jw_last": pl.Series([], dtype=pl.Float64), "osa_last": pl.Series([], dtype=pl.Int64),
                "jw_nick": pl.Series([], dtype=pl.Float64), "jw_nick_r": pl.Series([], dtype=pl.Float64)}
    else:
        jw, osa = JaroWinkler.normalized_similarity, OSA.distance
        sims = {"jw_first": _cp(jw, p["_first"], p["_first_r"]), "osa_first": _cp(osa, p["_first"], p["_first_r"]),
                "jw_last": _cp(jw, p["_last"], p["_last_r"]), "osa_last": _cp(osa, p["_last"], p["_last_r"]),
                # a recorded nickname on one side against the other's first name
                "jw_nick": _cp(jw, p["_nick"], p["_first_r"]), "jw_nick_r": _cp(jw, p["_first"], p["_nick_r"])}
    p = p.with_columns(**sims)
    unsure = p.filter((pl.col("jw_first") < 0.92) & (pl.col("osa_first") > 1) & pl.col("_is_nick").is_null())
    nick_typo = unsure.select("id_l", "id_r", _nickname_typo(unsure["_first"], unsure["_first_r"])
                              .alias("_nick_typo") if unsure.height else pl.lit(False).alias("_nick_typo"))
    p = p.join(nick_typo, on=["id_l", "id_r"], how="left")
    both = lambda c: pl.col(c).is_not_null() & pl.col(f"{c}_r").is_not_null()  # noqa: E731
    first_exact = ((pl.col("jw_first") >= 0.92) | pl.col("_is_nick").fill_null(False)
                   | (pl.col("jw_nick") >= 0.97) | (pl.col("jw_nick_r") >= 0.97))
    first = (pl.when(~both("_first")).then(0.0).when(first_exact).then(w.first_exact)
             .when(pl.col("osa_first") <= 1).then(w.first_typo)
             .when(pl.col("_nick_typo").fill_null(False)).then(w.first_nickname_typo)
             .when(pl.col("jw_first") >= 0.8).then(w.first_partial).otherwise(w.first_disagree))
    last = (pl.when(~both("_last")).then(0.0)
            .when((pl.col("jw_last") >= 0.92) | (pl.col("osa_last") <= 1)).then(w.last_agree)
            .when(pl.col("jw_last") >= 0.8).then(w.last_partial).otherwise(w.last_disagree))
    dl, dr = pl.col("_dob"), pl.col("_dob_r")
    same = [(dl.dt.year() == dr.dt.year()), (dl.dt.month() == dr.dt.month()), (dl.dt.day() == dr.dt.day())]
    swapped = (dl.dt.year() == dr.dt.year()) & (dl.dt.month() == dr.dt.day()) & (dl.dt.day() == dr.dt.month())
    near = (pl.sum_horizontal([s.cast(pl.Int8) for s in same]) >= 2) | swapped
    dob = (pl.when(~both("_dob")).then(0.0).when(dl == dr).then(w.dob_exact).when(near).then(w.dob_near)
           .otherwise(w.dob_disagree))
    has_phones = (pl.col("_phones").list.len() > 0) & (pl.col("_phones_r").list.len() > 0)
    phone = (pl.when(~has_phones).then(0.0)
             .when(pl.col("_phones").list.set_intersection("_phones_r").list.len() > 0).then(w.phone_agree)
             .otherwise(w.phone_disagree))
    email = (pl.when(~both("_email")).then(0.0).when(pl.col("_email") == pl.col("_email_r")).then(w.email_agree)
             .otherwise(w.email_disagree))
    addr_same = (pl.col("_addr") == pl.col("_addr_r")) & (pl.col("_zip5") == pl.col("_zip5_r")).fill_null(True)
    address = (pl.when(~both("_addr")).then(0.0).when(addr_same).then(w.address_agree)
               .otherwise(w.address_disagree))
    binary = pl.col("_gender").is_in(["Male", "Female"]) & pl.col("_gender_r").is_in(["Male", "Female"])
    gender = pl.when(binary & (pl.col("_gender") != pl.col("_gender_r"))).then(w.gender_disagree).otherwise(0.0)
    scores = {"first_name": first, "last_name": last, "date_of_birth": dob, "phone": phone, "email": email,
              "address": address, "gender": gender}
    out = p.select("id_l", "id_r", *(e.cast(pl.Float64).alias(f"s_{k}") for k, e in scores.items()))
    return out.with_columns(pl.sum_horizontal([f"s_{k}" for k in SCORE_FIELDS]).alias("total"))


# -- 4. clustering --------------------------------------------------------------------------------------------
class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while x != root:
            self.parent[x], x = root, self.parent.get(x, x)
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _components(nodes: Iterable[str], adjacent: Mapping[str, set[str]]) -> list[list[str]]:
    """Connected components of more than one node."""
    uf = _UnionFind()
    for a in nodes:
        for b in adjacent.get(a, ()):
            uf.union(a, b)
    groups: dict[str, list[str]] = defaultdict(list)
    for n in nodes:
        groups[uf.find(n)].append(n)
    return [sorted(g) for g in groups.values() if len(g) > 1]


@dataclass
class _Clustering:
    clusters: dict[str, list[str]]  # survivor -> duplicates
    split: set[tuple[str, str]]  # above-threshold pairs the chain guard or a never-merge kept apart


def cluster(prepared: pl.DataFrame, scored: pl.DataFrame, overrides: Overrides, threshold: float,
            weights: Weights = Weights()) -> _Clustering:
    """Guarded connected components: every duplicate must match its survivor directly (score or forced)."""
    rank = {r[0]: i for i, r in enumerate(prepared.sort(["_filled", MODIFIED_AT, PRIMARY_KEY],
                                                        descending=[True, True, False], nulls_last=True)
                                          .select(PRIMARY_KEY).iter_rows())}
    good = {_pair(a, b) for a, b in scored.filter(pl.col("total") >= threshold).select("id_l", "id_r").iter_rows()}
    edges = (good | overrides.force_merge) - overrides.never_merge
    adjacent: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        adjacent[a].add(b)
        adjacent[b].add(a)
    known = {_pair(a, b): t for a, b, t in scored.filter(pl.col("id_l").is_in(list(adjacent)))
             .select("id_l", "id_r", "total").iter_rows()}
    clusters: dict[str, list[str]] = {}
    split: set[tuple[str, str]] = set()
    pending = _components(adjacent, adjacent)
    while pending:
        members = pending.pop()
        survivor = min(members, key=lambda m: rank.get(m, len(rank)))
        missing = [_pair(survivor, m) for m in members if m != survivor and _pair(survivor, m) not in known]
        if missing:  # chained members never compared with the survivor: score them now
            extra = score_pairs(prepared, pl.DataFrame(missing, schema=["id_l", "id_r"], orient="row"), weights)
            known.update({_pair(a, b): t for a, b, t in extra.select("id_l", "id_r", "total").iter_rows()})

        def linked(m: str, survivor: str = survivor) -> bool:
            p = _pair(survivor, m)
            return p in edges or (known.get(p, float("-inf")) >= threshold and p not in overrides.never_merge)

        ok = _drop_never(survivor, [m for m in members if m != survivor and linked(m)], overrides, known)
        if ok:
            clusters[survivor] = ok
        rest = set(members) - {survivor, *ok}
        split.update(_pair(a, b) for a in rest for b in adjacent[a] if b not in rest)
        pending.extend(_components(rest, {a: adjacent[a] & rest for a in rest}))
    return _Clustering(clusters, split)


def _drop_never(survivor: str, members: list[str], overrides: Overrides, known: dict) -> list[str]:
    """Two members that must never merge cannot both join the survivor: the weaker match leaves."""
    kept = sorted(members, key=lambda m: -known.get(_pair(survivor, m), float("inf")))
    out: list[str] = []
    for m in kept:
        if not any(_pair(m, o) in overrides.never_merge for o in out):
            out.append(m)
    return sorted(out)


# -- 5. survivorship ------------------------------------------------------------------------------------------
def _merge_fields(patients: pl.DataFrame, membership: pl.DataFrame) -> pl.DataFrame:
    """One merged row per cluster (columns as ``patients``)."""
    rows = patients.join(membership, on=PRIMARY_KEY).sort(MODIFIED_AT, descending=True, nulls_last=True)
    is_survivor = pl.col(PRIMARY_KEY) == pl.col("_cluster")
    aggs = []
    for c in patients.columns:
        if c == PRIMARY_KEY:
            aggs.append(pl.col("_cluster").first().alias(c))
        elif c in ("first_visit_date", "created_at"):
            aggs.append(pl.col(c).min())
        elif c in ("last_visit_date", MODIFIED_AT):
            aggs.append(pl.col(c).max())
        elif c == "status":
            aggs.append(pl.when((pl.col(c) == "Active").any()).then(pl.lit("Active"))
                        .otherwise(pl.col(c).filter(is_survivor).first()).alias(c))
        elif c == "medical_alerts" and isinstance(patients.schema[c], pl.List):
            aggs.append(pl.col(c).explode().drop_nulls().unique(maintain_order=True).implode().alias(c))
        elif c in SURVIVOR_FIELDS or c.startswith("_"):
            aggs.append(pl.coalesce(pl.col(c).filter(is_survivor).first(), pl.col(c).drop_nulls().first()).alias(c))
        else:
            aggs.append(pl.col(c).drop_nulls().first())
    merged = rows.group_by("_cluster", maintain_order=True).agg(aggs)
    return merged.select(patients.columns).cast(patients.schema)  # type: ignore[arg-type]


def deduplicate(patients: pl.DataFrame, overrides: Overrides | None = None,
                threshold: float = DEFAULT_THRESHOLD, weights: Weights = Weights()) -> DedupResult:
    """Survivors, merge map and decisions for a frame of patients (registry columns; extra columns kept)."""
    overrides = overrides or Overrides()
    prepared = prepare(patients)
    pairs = candidate_pairs(prepared)
    forced = [p for p in overrides.force_merge | overrides.never_merge]
    if forced:  # overridden pairs are scored too, so their decision rows show what the scores said
        pairs = pl.concat([pairs, pl.DataFrame(forced, schema=["id_l", "id_r"], orient="row")]).unique()
        ids = set(patients.get_column(PRIMARY_KEY).to_list())
        pairs = pairs.filter(pl.col("id_l").is_in(ids) & pl.col("id_r").is_in(ids))
    scored = score_pairs(prepared, pairs, weights)
    result = cluster(prepared, scored, overrides, threshold, weights)
    map_rows = [(d, s) for s, dups in result.clusters.items() for d in dups]
    merge_map = pl.DataFrame(map_rows, schema={"duplicate_id": pl.String, "survivor_id": pl.String}, orient="row")
    pair_expr = [pl.min_horizontal("duplicate_id", "survivor_id").alias("id_l"),
                 pl.max_horizontal("duplicate_id", "survivor_id").alias("id_r")]
    merge_map = (merge_map.with_columns(pair_expr)
                 .join(scored.select("id_l", "id_r", pl.col("total").alias("score")), on=["id_l", "id_r"], how="left")
                 .with_columns(pl.when(pl.struct("id_l", "id_r").is_in(_struct_list(overrides.force_merge)))
                               .then(pl.lit("override")).otherwise(pl.lit("score")).alias("rule"),
                               pl.lit(REASON_MERGED).alias("reason"))
                 .drop("id_l", "id_r").sort("survivor_id", "duplicate_id"))
    decisions = _decisions(scored, merge_map, result, overrides, threshold)
    members = [(s, s) for s in result.clusters] + map_rows
    membership = pl.DataFrame([(m, s) for m, s in members], schema={PRIMARY_KEY: pl.String, "_cluster": pl.String},
                              orient="row")
    merged = _merge_fields(patients, membership) if result.clusters else patients.clear()
    in_cluster = membership.get_column(PRIMARY_KEY)
    survivors = pl.concat([patients.filter(~pl.col(PRIMARY_KEY).is_in(in_cluster.implode())), merged])
    stats = {"patients": patients.height, "candidate_pairs": pairs.height, "clusters": len(result.clusters),
             "merged": merge_map.height, "survivors": survivors.height, "chain_splits": len(result.split)}
    return DedupResult(survivors, merge_map, decisions, stats)


def _struct_list(pairs: Iterable[tuple[str, str]]) -> pl.Series:
    return pl.Series([{"id_l": a, "id_r": b} for a, b in pairs],
                     dtype=pl.Struct({"id_l": pl.String, "id_r": pl.String})).implode()


def _decisions(scored: pl.DataFrame, merge_map: pl.DataFrame, result: _Clustering, overrides: Overrides,
               threshold: float) -> pl.DataFrame:
    """Every scored pair with its decision: merge, forced_merge, never_merge, chain_split or no_match."""
    merged = {_pair(d, s) for d, s in merge_map.select("duplicate_id", "survivor_id").iter_rows()}
    decision, reason = [], []
    for a, b, total in scored.select("id_l", "id_r", "total").iter_rows():
        p = (a, b)
        if p in overrides.never_merge:
            d, r = "never_merge", "override: never merge"
        elif p in overrides.force_merge:
            d, r = "forced_merge", "override: force merge"
        elif p in merged:
            d, r = "merge", f"total {total:g} >= {threshold:g}"
        elif p in result.split:
            d, r = "chain_split", "above threshold, but one side does not match the cluster's survivor"
        elif total >= threshold:
            d, r = "same_cluster", "both merged into one survivor through a third record"
        else:
            d, r = "no_match", f"total {total:g} < {threshold:g}"
        decision.append(d)
        reason.append(r)
    return scored.with_columns(pl.Series("decision", decision, pl.String), pl.Series("reason", reason, pl.String)
                               ).sort("total", "id_l", "id_r", descending=[True, False, False])


# -- children -------------------------------------------------------------------------------------------------
def patient_reference_fields() -> dict[str, tuple[str, ...]]:
    """Object name -> its fields that reference a patient (from the registry)."""
    out = {o.name: o.references_to(PATIENT.name) for o in REGISTRY}
    return {k: v for k, v in out.items() if v}


def repoint_children(frames: Mapping[str, pl.DataFrame], merge_map: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Every patient reference in ``frames`` (object name -> frame) pointed at its survivor."""
    refs = patient_reference_fields()
    old, new = merge_map.get_column("duplicate_id"), merge_map.get_column("survivor_id")
    out = {}
    for name, frame in frames.items():
        cols = [c for c in refs.get(name, ()) if c in frame.columns]
        out[name] = frame.with_columns(pl.col(c).replace(old, new) for c in cols) if cols else frame
    return out


# -- measurement ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    precision: float
    recall: float
    true_positives: int
    false_positives: int
    false_negatives: int


def dedup_truth(defects: pl.DataFrame) -> pl.DataFrame:
    """The generator's duplicate patients (``defects.jsonl`` rows): duplicate_id, original_id."""
    return (defects.filter((pl.col("kind") == "duplicate_patient") & (pl.col("object") == PATIENT.name))
            .select(pl.col("id").alias("duplicate_id"), pl.col("of").alias("original_id")))


def _cluster_pairs(rows: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    groups: dict[str, set[str]] = defaultdict(set)
    for dup, root in rows:
        groups[root].update((dup, root))
    return {_pair(a, b) for g in groups.values() for a in g for b in g if a < b}


def evaluate_dedup(merge_map: pl.DataFrame, truth: pl.DataFrame) -> Evaluation:
    """Pairwise precision and recall of the merge map's clusters against the truth's (pairs in one cluster)."""
    predicted = _cluster_pairs(merge_map.select("duplicate_id", "survivor_id").iter_rows())
    actual = _cluster_pairs(truth.select("duplicate_id", "original_id").iter_rows())
    tp = len(predicted & actual)
    return Evaluation(tp / len(predicted) if predicted else 1.0, tp / len(actual) if actual else 1.0,
                      tp, len(predicted - actual), len(actual - predicted))
