"""Free-text providers resolved to provider records.

Legacy appointments, clinical notes and ledger rows name the provider as text (``provider_name``) with no
``provider_id``: "Dr. Smith", "J SMITH DDS", "smith, john", "DDS1", "Samuel (hyg)", an NPI, or nothing usable
("TEMP PROVIDER"). Pure Polars/Python, no Dagster.

Normalisation: accent-fold, lower case, drop punctuation, turn "Last, First" round, and take titles and
credentials out of the name while keeping what they say about the role (Dr./DDS/DMD -> Doctor, RDH/hyg ->
Hygienist, DA/CDA/RDA/asst -> Assistant). Matching, first hit wins: abbreviation, NPI, full name, initial + last
name, a single last or first name, then a fuzzy full-name match (rapidfuzz token-sort ratio >= ``FUZZY_MIN``) for
typos. Several candidates are narrowed by the role the text names, then by the row's practice location; what
is still several is *ambiguous* (candidates listed), nothing is *unknown*. Ambiguous and unknown rows get the
configured fallback provider, or go to quarantine (reasons ``ambiguous_provider`` / ``unknown_provider``).

Provider names are staff names, not PHI; messages still carry ids and counts only.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl
from rapidfuzz import fuzz, process

from senseimig_dagster.objects import PRIMARY_KEY, REGISTRY, get
from senseimig_dagster.staging.quarantine import QUARANTINE_SCHEMA

# Objects whose legacy rows name their provider as text (the registry's ``free_text_provider`` declarations), and
# the object those texts resolve to (what their id fields reference).
FREE_TEXT_OBJECTS = tuple(o.name for o in REGISTRY if o.free_text_provider is not None)
PROVIDERS = next(iter({o.field(o.free_text_provider.id).references for o in REGISTRY  # type: ignore[union-attr]
                       if o.free_text_provider is not None}))
REASON_AMBIGUOUS = "ambiguous_provider"
REASON_UNKNOWN = "unknown_provider"
FUZZY_MIN = 90.0
ROLE_WORDS = {
    "dr": "Doctor", "doctor": "Doctor", "dds": "Doctor", "dmd": "Doctor",
    "rdh": "Hygienist", "hyg": "Hygienist", "hygienist": "Hygienist",
    "da": "Assistant", "cda": "Assistant", "rda": "Assistant", "efda": "Assistant", "asst": "Assistant",
    "assistant": "Assistant",
}  # fmt: skip
IGNORED_WORDS = frozenset({"mr", "mrs", "ms", "miss", "md", "phd", "msd", "pc", "pa"})

DECISION_SCHEMA: dict[str, pl.DataType] = {
    "object": pl.String(), "id": pl.String(), "provider_name": pl.String(), "location_id": pl.String(),
    "outcome": pl.String(), "provider_id": pl.String(), "method": pl.String(), "score": pl.Float64(),
    "candidates": pl.List(pl.String()), "action": pl.String(), "reason": pl.String(),
}


def fold(text: str) -> str:
    """Accent-folded lower-case words; punctuation becomes spaces except inside words (O'Brien -> obrien)."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    text = re.sub(r"[’'`]", "", text)
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


@dataclass(frozen=True)
class ParsedName:
    words: tuple[str, ...]  # name words, titles and credentials removed, first name first
    role: str | None  # the role a title or credential names
    compact: str  # the whole text folded without spaces (abbreviations, NPIs)


def parse_name(text: str) -> ParsedName:
    raw = text.strip()
    if raw.count(",") == 1:  # "Last, First" (also "Smith, J. DDS")
        last, first = raw.split(",")
        if first.strip() and last.strip():
            raw = f"{first} {last}"
    words, roles = [], []
    for w in fold(raw).split():
        if w in ROLE_WORDS:
            roles.append(ROLE_WORDS[w])
        elif w not in IGNORED_WORDS:
            words.append(w)
    role = roles[0] if len(set(roles)) == 1 else None  # "Dr. X RDH" names no single role
    return ParsedName(tuple(words), role, fold(text).replace(" ", ""))


class ProviderIndex:
    """Name variants of every provider, for exact lookups, and full names for fuzzy ones."""

    def __init__(self, providers: pl.DataFrame) -> None:
        self.keys: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        self.role: dict[str, str | None] = {}
        self.location: dict[str, str | None] = {}
        self.full: dict[str, str] = {}
        cols = ("id", "first_name", "last_name", "role", "npi", "abbreviation", "default_location_id")
        present = [c for c in cols if c in providers.columns]
        for row in providers.select(present).iter_rows(named=True):
            pid, first, last = row["id"], fold(row.get("first_name") or ""), fold(row.get("last_name") or "")
            self.role[pid], self.location[pid] = row.get("role"), row.get("default_location_id")
            if row.get("abbreviation"):
                self.keys["abbreviation"][fold(row["abbreviation"]).replace(" ", "")].add(pid)
            npi = re.sub(r"\D", "", row.get("npi") or "")
            if len(npi) == 10:
                self.keys["npi"][npi].add(pid)
            if first and last:
                self.full[pid] = f"{first} {last}"
                self.keys["full_name"][f"{first} {last}"].add(pid)
                self.keys["initial_last"][f"{first[0]} {last}"].add(pid)
            if last:
                self.keys["last_name"][last].add(pid)
            if first:
                self.keys["first_name"][first].add(pid)

    def candidates(self, name: ParsedName) -> tuple[set[str], str, float]:
        """Candidate ids, the method that found them and its score (100 for exact methods)."""
        for method, key in (("abbreviation", name.compact), ("npi", name.compact)):
            if key and key in self.keys[method]:
                return set(self.keys[method][key]), method, 100.0
        words = name.words
        if not words:
            return set(), "none", 0.0
        joined = " ".join(words)
        if joined in self.keys["full_name"]:
            return set(self.keys["full_name"][joined]), "full_name", 100.0
        if len(words) >= 2 and len(words[0]) == 1 and joined in self.keys["initial_last"]:
            return set(self.keys["initial_last"][joined]), "initial_last", 100.0
        if len(words) == 1:  # "Dr. Smith" or "Samuel (hyg)"
            found = self.keys["last_name"].get(joined, set()) | self.keys["first_name"].get(joined, set())
            return set(found), "single_name", 100.0 if found else 0.0
        if not self.full:
            return set(), "none", 0.0
        matches = process.extract(joined, self.full, scorer=fuzz.token_sort_ratio, score_cutoff=FUZZY_MIN,
                                  limit=None)
        if not matches:
            return set(), "none", 0.0
        best = max(score for _, score, _ in matches)
        return {pid for _, score, pid in matches if score >= best - 2.0}, "fuzzy", float(best)

    def narrow(self, found: set[str], role: str | None, location: str | None) -> tuple[set[str], str]:
        """Several candidates narrowed by the role the text names, then by the row's location."""
        how = ""
        if len(found) > 1 and role:
            same = {p for p in found if self.role.get(p) == role}
            if same:
                found, how = same, "+role"
        if len(found) > 1 and location:
            here = {p for p in found if self.location.get(p) == location}
            if here:
                found, how = here, how + "+location"
        return found, how


def resolve_providers(rows: pl.DataFrame, providers: pl.DataFrame, fallback_provider_id: str | None = None
                      ) -> pl.DataFrame:
    """One decision per row of ``rows`` (columns object, id, provider_name, optional location_id).

    Columns: see ``DECISION_SCHEMA``. ``action`` is ``resolved``, ``fallback`` or ``quarantine``; ``reason`` is
    set for ambiguous and unknown rows whichever the action.
    """
    if "location_id" not in rows.columns:
        rows = rows.with_columns(pl.lit(None, pl.String).alias("location_id"))
    rows = rows.with_columns(pl.col("provider_name", "location_id").cast(pl.String))
    index = ProviderIndex(providers)
    distinct = rows.select("provider_name", "location_id").unique()
    decided = []
    for text, location in distinct.iter_rows():
        parsed = parse_name(text or "")
        found, method, score = index.candidates(parsed)
        found, how = index.narrow(found, parsed.role, location)
        if len(found) == 1:
            outcome, pid, reason = "resolved", next(iter(found)), None
        else:
            outcome, pid = ("ambiguous", None) if found else ("unknown", None)
            reason = REASON_AMBIGUOUS if found else REASON_UNKNOWN
            score = score if found else 0.0
        action = "resolved" if pid else "fallback" if fallback_provider_id else "quarantine"
        decided.append({"provider_name": text, "location_id": location, "outcome": outcome,
                        "provider_id": pid or fallback_provider_id, "method": method + how if found else None,
                        "score": score, "candidates": sorted(found) if len(found) > 1 else [],
                        "action": action, "reason": reason})
    table = pl.DataFrame(decided, schema={k: v for k, v in DECISION_SCHEMA.items() if k not in ("object", "id")})
    out = rows.select("object", "id", "provider_name", "location_id").join(
        table, on=["provider_name", "location_id"], how="left", nulls_equal=True)
    return out.select(list(DECISION_SCHEMA)).cast(DECISION_SCHEMA)  # type: ignore[arg-type]


def free_text_rows(frames: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """Rows naming their provider only as text, from the objects that declare a free-text provider.

    An object without a location of its own (a clinical note) takes the location of the row its declaration's
    ``location_via`` points at (its appointment's), when that row is given.
    """
    parts = []
    for obj in FREE_TEXT_OBJECTS:
        frame = frames.get(obj)
        declared = get(obj).free_text_provider
        if frame is None or declared is None or declared.text not in frame.columns:
            continue
        picked = frame.filter(pl.col(declared.id).is_null() & pl.col(declared.text).is_not_null())
        location_field = get(obj).location_field
        via = get(obj).field(declared.location_via).references if declared.location_via else None
        if location_field is not None and location_field in picked.columns:
            loc = pl.col(location_field)
        elif via is not None and frames.get(via) is not None and declared.location_via in picked.columns:
            parent = frames[via].select(pl.col(PRIMARY_KEY).alias(declared.location_via),
                                        pl.col(get(via).location_field).alias("_loc"))
            picked = picked.join(parent, on=declared.location_via, how="left")
            loc = pl.col("_loc")
        else:
            loc = pl.lit(None, pl.String)
        parts.append(picked.select(pl.lit(obj).alias("object"), PRIMARY_KEY,
                                   pl.col(declared.text).cast(pl.String).alias("provider_name"),
                                   loc.cast(pl.String).alias("location_id")))
    schema = {"object": pl.String, "id": pl.String, "provider_name": pl.String, "location_id": pl.String}
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


def apply_resolution(obj: str, frame: pl.DataFrame, decisions: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``frame`` with resolved (or fallback) provider ids filled in and quarantined rows taken out, and the
    quarantine rows for those (``quarantine.QUARANTINE_SCHEMA``, severity ``row``).

    An object declaring a ``signer`` (a legacy clinical note carries its signer as text too): a signed row without
    a signer gets the same provider.
    """
    declared = get(obj).free_text_provider
    id_field = declared.id if declared else "provider_id"
    mine = decisions.filter(pl.col("object") == obj)
    fill = mine.filter(pl.col("provider_id").is_not_null()).select("id", pl.col("provider_id").alias("_pid"))
    out = frame.join(fill, on="id", how="left")
    out = out.with_columns(pl.coalesce(id_field, "_pid").alias(id_field))
    if declared is not None and declared.signer is not None and set(declared.signer) <= set(out.columns):
        signer, signed_at = declared.signer
        out = out.with_columns(pl.when(pl.col(signed_at).is_not_null() & pl.col(signer).is_null())
                               .then(pl.col("_pid")).otherwise(pl.col(signer)).alias(signer))
    held = mine.filter(pl.col("action") == "quarantine")
    what = (pl.when(pl.col("reason") == REASON_UNKNOWN).then(pl.lit("matches no provider record"))
            .otherwise(pl.format("matches {} providers ({})", pl.col("candidates").list.len(),
                                 pl.col("candidates").list.join(", "))))
    rows = held.select(
        pl.lit(obj).alias("object"), pl.col("id").alias("source_id"), pl.lit("provider_name").alias("field"),
        pl.col("reason").alias("rule"), pl.lit("row").alias("severity"),
        pl.format("{} {}: the free-text provider {}; add a name variant to the provider or set a fallback "
                  "provider; the row was quarantined and will not be loaded until fixed",
                  pl.lit(obj), pl.col("id"), what).alias("message"),
        pl.col("provider_name").alias("raw_value"),
    ).cast(QUARANTINE_SCHEMA)  # type: ignore[arg-type]
    staged = out.drop("_pid").join(held.select("id"), on="id", how="anti")
    return staged, rows


def decision_summary(decisions: pl.DataFrame) -> pl.DataFrame:
    """Counts per object, outcome, method and action: the table shown on the staging asset."""
    return (decisions.group_by("object", "outcome", "method", "action").len("rows")
            .sort("object", "outcome", "rows", descending=[False, False, True]))


# -- measurement ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProviderEvaluation:
    precision: float  # correct / resolved, over rows the generator made free text
    recall: float  # correct / rows whose text identifies exactly one provider
    resolved: int
    correct: int
    resolvable: int
    extra_correct: int  # texts the generator calls ambiguous that location or role narrowed correctly
    unresolvable_resolved: int  # texts naming nobody that were resolved anyway (each is also a precision miss)


def provider_truth(defects: pl.DataFrame) -> pl.DataFrame:
    """The generator's free-text providers: object, id, verdict (resolvable/ambiguous/unresolvable), true id."""
    return (defects.filter(pl.col("kind") == "free_text_provider")
            .select("object", "id", pl.col("detail").alias("verdict"), pl.col("of").alias("true_provider_id")))


def evaluate_providers(decisions: pl.DataFrame, truth: pl.DataFrame) -> ProviderEvaluation:
    """Precision and recall of the resolutions (fallbacks are not resolutions) against the generator's truth."""
    j = truth.join(decisions.select("object", "id", "outcome", "provider_id"), on=["object", "id"], how="left")
    resolved = j.filter(pl.col("outcome") == "resolved")
    correct = resolved.filter(pl.col("provider_id") == pl.col("true_provider_id"))
    resolvable = j.filter(pl.col("verdict") == "resolvable")
    hits = resolvable.filter((pl.col("outcome") == "resolved") & (pl.col("provider_id") == pl.col("true_provider_id")))
    return ProviderEvaluation(
        precision=correct.height / resolved.height if resolved.height else 1.0,
        recall=hits.height / resolvable.height if resolvable.height else 1.0,
        resolved=resolved.height, correct=correct.height, resolvable=resolvable.height,
        extra_correct=correct.filter(pl.col("verdict") == "ambiguous").height,
        unresolvable_resolved=resolved.filter(pl.col("verdict") == "unresolvable").height,
    )
