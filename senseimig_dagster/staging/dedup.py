"""Patient deduplication: probabilistic matching (``staging/matching``, Splink on DuckDB), survivorship, merge map,
review list and overrides.

Pure Polars and DuckDB (no Dagster). ``deduplicate(patients)`` returns the survivors (one row per person, fields
merged), the merge map (duplicate id -> survivor id, with the match probability and the comparison levels that
decided it), the decisions on every scored pair and the review list (pairs in the uncertain band). Ids, level
names and scores only, never values: PHI.

1. ``matching.columns``: comparison columns (folded names with their nicknames, phonetic codes, ISO birth date,
   NANP phones, e-mail, abbreviated address, ZIP5, SSN last four).
2. ``matching.linkage``: Splink blocks on several rules, compares with graded levels, estimates the parameters
   per tenant (EM) or uses the calibrated ones (small tenants), and scores each candidate pair.
3. ``matching.clusters``: pairs at or above ``MATCH_PROBABILITY`` join people, never across a household rule
   (twins, parent and child) or a person's ``never``; a person's ``merge`` joins whatever the score.
4. Pairs between ``REVIEW_PROBABILITY`` and ``MATCH_PROBABILITY`` not otherwise joined go to the review list; a
   person decides them in the override file, which wins on every later run.
5. Survivor: most complete record, then most recent ``updated_at``, then smallest id. Field-level survivorship:
   identity fields keep the survivor's value; other fields take the most recent non-null value; first/last visit
   are min/max; status is Active if any record is; medical alerts are the union (never lose an allergy).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from senseimig_dagster.objects import MODIFIED_AT, PATIENT, PRIMARY_KEY, REGISTRY
from senseimig_dagster.staging.matching import clusters, linkage
from senseimig_dagster.staging.matching.columns import comparison_columns
from senseimig_dagster.staging.matching.model import MATCH_PROBABILITY, REVIEW_PROBABILITY

REASON_MERGED = "merged_duplicate"
# identity and keys keep the survivor's value (a duplicate's typo, nickname or upper case must not win)
SURVIVOR_FIELDS = ("patient_number", "primary_location_id", "first_name", "last_name", "title", "date_of_birth",
                   "gender", "ssn_last_four", "is_deleted")
MERGE_MAP_SCHEMA = {"duplicate_id": pl.String, "survivor_id": pl.String, "match_probability": pl.Float64,
                    "match_weight": pl.Float64, "evidence": pl.String, "rule": pl.String, "reason": pl.String}
REVIEW_SCHEMA = {"id_l": pl.String, "id_r": pl.String, "match_probability": pl.Float64, "match_weight": pl.Float64,
                 "evidence": pl.String}
EVIDENCE_LEVELS = 5


@dataclass(frozen=True)
class Overrides:
    """Pairs a person decided on; they win over the model on every run. Pairs are unordered."""

    force_merge: frozenset[tuple[str, str]] = frozenset()
    never_merge: frozenset[tuple[str, str]] = frozenset()

    @staticmethod
    def of(force_merge: Iterable[tuple[str, str]] = (), never_merge: Iterable[tuple[str, str]] = ()) -> Overrides:
        return Overrides(frozenset(pair(a, b) for a, b in force_merge),
                         frozenset(pair(a, b) for a, b in never_merge))


def load_overrides(path: Path | str, missing_ok: bool = False) -> Overrides:
    """CSV with header ``id_a,id_b,action[,note]``; action is ``merge`` or ``never``; ``#`` lines are comments.
    ``missing_ok``: no file is no decision yet."""
    if missing_ok and not Path(path).exists():
        return Overrides()
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
    merge_map: pl.DataFrame  # MERGE_MAP_SCHEMA
    decisions: pl.DataFrame  # every scored pair: probability, band, decision, reason, lvl_/w_ per comparison
    review: pl.DataFrame  # REVIEW_SCHEMA: the uncertain band, for a person to decide in the override file
    parameters: dict[str, Any] = field(default_factory=dict)  # the Splink model used (m, u per level; no data)
    stats: dict[str, int] = field(default_factory=dict)
    training: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=linkage.TRAINING_SCHEMA))


pair = clusters.pair


def evidence(row: Mapping[str, Any]) -> str:
    """The comparison levels that weighed most on a pair, strongest first: ``date_of_birth=exact(+9.1), ...``."""
    parts = [(k[4:], row[k], row.get(f"w_{k[4:]}") or 0.0) for k in row if k.startswith("lvl_") and row[k]]
    parts = sorted((p for p in parts if p[1] != "missing"), key=lambda p: -abs(p[2]))[:EVIDENCE_LEVELS]
    return ", ".join(f"{name}={level}({weight:+.1f})" for name, level, weight in parts)


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
                prior: dict[str, Any] | None = None) -> DedupResult:
    """Survivors, merge map, decisions and review list for a frame of patients (registry columns; extra kept).
    ``prior``: the linkage model's starting parameters (default: the calibrated ``prior_model.json``)."""
    overrides = overrides or Overrides()
    ids = set(patients.get_column(PRIMARY_KEY).cast(pl.String).to_list())
    force = {p for p in overrides.force_merge if set(p) <= ids}
    never = {p for p in overrides.never_merge if set(p) <= ids}
    columns = comparison_columns(patients)
    scored = linkage.score(columns, prior)
    found = clusters.cluster(scored.pairs, columns, MATCH_PROBABILITY, force, never)
    rank = {r[0]: i for i, r in enumerate(patients.select(
        PRIMARY_KEY, pl.sum_horizontal([pl.col(c).is_not_null().cast(pl.Int32) for c in patients.columns
                                        if c != PRIMARY_KEY]).alias("_filled"), MODIFIED_AT)
        .sort(["_filled", MODIFIED_AT, PRIMARY_KEY], descending=[True, True, False], nulls_last=True).iter_rows())}
    cluster_of: dict[str, str] = {}
    for members in found.clusters:
        survivor = min(members, key=lambda m: rank[m])
        cluster_of.update(dict.fromkeys(members, survivor))
    decisions = _decisions(scored.pairs, cluster_of, found.kept_apart, force, never)
    merge_map = _merge_map(decisions, cluster_of, force)
    membership = pl.DataFrame(list(cluster_of.items()), schema={PRIMARY_KEY: pl.String, "_cluster": pl.String},
                              orient="row")
    merged = _merge_fields(patients, membership) if cluster_of else patients.clear()
    survivors = pl.concat([patients.filter(~pl.col(PRIMARY_KEY).is_in(list(cluster_of))), merged])
    review = decisions.filter(pl.col("decision") == "review").select(
        "id_l", "id_r", "match_probability", "match_weight", "evidence")
    bands = dict(decisions.group_by("decision").len().iter_rows())
    stats = {"patients": patients.height, "scored_pairs": scored.pairs.height, "clusters": len(found.clusters),
             "merged": merge_map.height, "survivors": survivors.height, "review": review.height,
             "kept_apart": len(found.kept_apart), "trained_on_tenant": int(scored.trained),
             "training_rules_skipped": scored.training.filter(pl.col("outcome") == "skipped").height,
             **{f"pairs_{k}": v for k, v in sorted(bands.items())}}
    return DedupResult(survivors, merge_map, decisions, review, scored.parameters, stats, scored.training)


def _decisions(pairs: pl.DataFrame, cluster_of: Mapping[str, str], kept_apart: Mapping[tuple[str, str], str],
               force: set[tuple[str, str]], never: set[tuple[str, str]]) -> pl.DataFrame:
    """Every scored pair and every overridden one, with its band, decision and reason."""
    missing = [p for p in force | never
               if not pairs.filter((pl.col("id_l") == p[0]) & (pl.col("id_r") == p[1])).height]
    if missing:  # a person's decision on a pair the blocking rules never compared
        pairs = pl.concat([pairs, pl.DataFrame(missing, schema={"id_l": pl.String, "id_r": pl.String},
                                               orient="row")], how="diagonal_relaxed")
    decision, reason, why = [], [], []
    for row in pairs.iter_rows(named=True):
        p, prob = (row["id_l"], row["id_r"]), row["match_probability"]
        same = cluster_of.get(p[0]) is not None and cluster_of.get(p[0]) == cluster_of.get(p[1])
        if p in never:
            d, r = "never_merge", "override: never merge"
        elif p in force:
            d, r = "forced_merge", "override: merge"
        elif prob >= MATCH_PROBABILITY:
            d = "merge" if same else "kept_apart"
            r = f"probability >= {MATCH_PROBABILITY:g}" if same else f"household rule: {kept_apart.get(p, 'other')}"
        elif same:
            d, r = "same_cluster", "joined through other records"
        else:
            d, r = "review", f"{REVIEW_PROBABILITY:g} <= probability < {MATCH_PROBABILITY:g}"
        decision.append(d)
        reason.append(r)
        why.append(evidence(row))
    return pairs.with_columns(pl.Series("decision", decision, pl.String), pl.Series("reason", reason, pl.String),
                              pl.Series("evidence", why, pl.String)).sort(
        "match_probability", "id_l", "id_r", descending=[True, False, False], nulls_last=True)


def _merge_map(decisions: pl.DataFrame, cluster_of: Mapping[str, str], force: set[tuple[str, str]]) -> pl.DataFrame:
    """duplicate -> survivor, explained by the strongest pair that tied the duplicate into its cluster."""
    joined = decisions.filter(pl.col("decision").is_in(["merge", "forced_merge", "same_cluster"]))
    best: dict[str, dict[str, Any]] = {}
    for row in joined.iter_rows(named=True):  # sorted by probability: the first pair seen is the strongest
        for dup, other in ((row["id_l"], row["id_r"]), (row["id_r"], row["id_l"])):
            survivor = cluster_of.get(dup)
            if survivor is None or dup == survivor:
                continue
            key = (other == survivor, row["decision"] == "forced_merge")
            if dup not in best or key > best[dup]["_key"]:
                best[dup] = {**row, "_key": key}
    rows = []
    for dup, survivor in sorted(cluster_of.items()):
        if dup == survivor:
            continue
        row = best.get(dup, {})
        forced = row.get("decision") == "forced_merge"
        rows.append((dup, survivor, row.get("match_probability"), row.get("match_weight"), row.get("evidence"),
                     "override" if forced else "model", REASON_MERGED))
    return pl.DataFrame(rows, schema=MERGE_MAP_SCHEMA, orient="row").sort("survivor_id", "duplicate_id")


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


def cluster_pairs(rows: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    groups: dict[str, set[str]] = defaultdict(set)
    for dup, root in rows:
        groups[root].update((dup, root))
    return {pair(a, b) for g in groups.values() for a in g for b in g if a < b}


def evaluate_dedup(merge_map: pl.DataFrame, truth: pl.DataFrame) -> Evaluation:
    """Pairwise precision and recall of the merge map's clusters against the truth's (pairs in one cluster)."""
    predicted = cluster_pairs(merge_map.select("duplicate_id", "survivor_id").iter_rows())
    actual = cluster_pairs(truth.select("duplicate_id", "original_id").iter_rows())
    tp = len(predicted & actual)
    return Evaluation(tp / len(predicted) if predicted else 1.0, tp / len(actual) if actual else 1.0,
                      tp, len(predicted - actual), len(actual - predicted))
