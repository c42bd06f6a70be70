"""Chart duplicates: the same clinical note, perio reading or planned procedure saved twice on one patient.

Run after patient deduplication has re-pointed children to survivors, so copies that a legacy conversion put on
a duplicate patient meet their originals. Pure Polars, no Dagster. Each object keeps one row per duplicate group
(the earliest signed version of a note; the earliest created reading or plan line) and every dropped row is
logged (object, kept id, dropped id, rule) so conservation can count it: rows = kept + collapsed.

Rules (each object declares its own in the registry, ``chart_duplicates``):

- ``identical_note``: same patient, note type and day (of ``signed_at``, else ``created_at``), the same body once
  whitespace and case are normalised (a double click, a re-import that added a trailing newline), and the same
  visit: the same appointment, or, without one, saved within ``SAVE_WINDOW`` of each other. Canned
  administrative notes ("Pt called about statement") are legitimately written twice a day.
- ``near_identical_note``: the same, with body similarity >= ``NOTE_SIMILARITY`` (rapidfuzz ratio) instead of
  equality; two different appointments never match: templated notes of two visits on one day differ only in a
  few numbers, so similarity alone would merge real notes.
- ``identical_reading``: same patient, exam date, tooth and site with every measurement equal. Two readings of
  one site that disagree are not collapsed: which is right is a clinical question, not a staging one.
- ``identical_plan_item``: same patient, plan, sequence, CDT code, tooth, surfaces, fee and service date.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl
from rapidfuzz import fuzz

from senseimig_dagster.objects import REGISTRY, get

REASON = "chart_duplicate"
NOTE_SIMILARITY = 97.0
SAVE_WINDOW = dt.timedelta(hours=1)
LOG_SCHEMA: dict[str, pl.DataType] = {"object": pl.String(), "kept_id": pl.String(), "dropped_id": pl.String(),
                                      "rule": pl.String(), "reason": pl.String()}


@dataclass
class ChartResult:
    frames: dict[str, pl.DataFrame]  # object -> rows kept
    log: pl.DataFrame  # LOG_SCHEMA
    counts: dict[str, int] = field(default_factory=dict)  # object -> rows collapsed


def _empty_log() -> pl.DataFrame:
    return pl.DataFrame(schema=LOG_SCHEMA)


def _collapse(frame: pl.DataFrame, obj: str, keys: list[str | pl.Expr], order: list[str], rule: str
              ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Keep the first row (by ``order``) of every group of equal ``keys``; log the others."""
    ranked = frame.select("id", *keys, *(c for c in order if c != "id")).sort(order, nulls_last=True)
    ranked = ranked.with_columns(pl.col("id").first().over(keys).alias("kept_id"))
    log = ranked.filter(pl.col("id") != pl.col("kept_id")).select(
        pl.lit(obj).alias("object"), "kept_id", pl.col("id").alias("dropped_id"), pl.lit(rule).alias("rule"),
        pl.lit(REASON).alias("reason"))
    return frame.filter(~pl.col("id").is_in(log.get_column("dropped_id").implode())), log


def _body(expr: pl.Expr) -> pl.Expr:
    return expr.fill_null("").str.replace_all(r"\s+", " ").str.strip_chars().str.to_lowercase()


def collapse_notes(notes: pl.DataFrame, obj: str, rule: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    day = pl.coalesce("signed_at", "created_at").dt.date().alias("_day")
    order = ["signed_at", "created_at", "id"]
    work = notes.with_columns(day, _body(pl.col("body")).alias("_body")).sort("created_at", "id", nulls_last=True)
    same_text = ["patient_id", "note_type", "_day", "_body"]
    # without an appointment, a new "visit" starts when the previous identical note is older than SAVE_WINDOW
    session = (pl.col("created_at").diff().over(same_text) > SAVE_WINDOW).fill_null(False).cum_sum().over(same_text)
    work = work.with_columns(pl.coalesce("appointment_id", pl.format("session-{}", session)).alias("_visit"))
    kept, exact = _collapse(work, obj, [*same_text, "_visit"], order, rule)
    near = _near_identical(kept, order, obj)
    kept = kept.filter(~pl.col("id").is_in(near.get_column("dropped_id").implode()))
    return kept.drop("_day", "_body", "_visit"), pl.concat([exact, near])


def _near_identical(notes: pl.DataFrame, order: list[str], obj: str) -> pl.DataFrame:
    """Near-identical bodies within (patient, type, day) groups; the groups are small, pairs are compared."""
    groups = ["patient_id", "note_type", "_day"]
    crowded = notes.filter(pl.len().over(groups) > 1).sort([*groups, *order], nulls_last=True)
    rows = []
    for _, group in crowded.group_by(groups, maintain_order=True):
        kept: list[dict] = []
        for note in group.select("id", "appointment_id", "created_at", "_body").iter_rows(named=True):
            match = next((k for k in kept if _same_visit(k, note)
                          and fuzz.ratio(k["_body"], note["_body"]) >= NOTE_SIMILARITY), None)
            if match is None:
                kept.append(note)
            else:
                rows.append((obj, match["id"], note["id"], "near_identical_note", REASON))
    return pl.DataFrame(rows, schema=LOG_SCHEMA, orient="row")


def _same_visit(a: dict, b: dict) -> bool:
    if a["appointment_id"] and b["appointment_id"]:
        return a["appointment_id"] == b["appointment_id"]
    if a["created_at"] is None or b["created_at"] is None:
        return False
    return abs(a["created_at"] - b["created_at"]) <= SAVE_WINDOW


def collapse(name: str, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One object's chart duplicates by its registry declaration: rows equal on its ``same`` fields (the earliest
    created kept), or the note rule. Returns the rows kept and the log of those dropped."""
    rule = get(name).chart_duplicates
    if rule is None:
        return frame, _empty_log()
    if rule.same:
        keys: list[str | pl.Expr] = [c for c in rule.same if c in frame.columns]
        return _collapse(frame, name, keys, ["created_at", "id"], rule.rule)
    return collapse_notes(frame, name, rule.rule)


def collapse_chart_duplicates(frames: Mapping[str, pl.DataFrame]) -> ChartResult:
    """Collapse every object in ``frames`` (object name -> frame) that declares ``chart_duplicates`` in the
    registry; other frames pass through."""
    out, logs, counts = dict(frames), [_empty_log()], {}
    for obj in REGISTRY:
        if obj.chart_duplicates is not None and obj.name in frames:
            out[obj.name], log = collapse(obj.name, frames[obj.name])
            logs.append(log)
            counts[obj.name] = log.height
    return ChartResult(out, pl.concat(logs), counts)


# -- measurement ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChartEvaluation:
    precision: float
    recall: float
    collapsed: int
    injected: int


def chart_truth(defects: pl.DataFrame) -> pl.DataFrame:
    """The generator's chart duplicates: object, dropped_id (the copy), kept_id (its original)."""
    return (defects.filter(pl.col("kind") == "duplicate_chart_entry")
            .select("object", pl.col("id").alias("dropped_id"), pl.col("of").alias("kept_id")))


def evaluate_chart(log: pl.DataFrame, truth: pl.DataFrame) -> ChartEvaluation:
    """A collapse is right when it pairs a copy with its original (either way round: which is kept is a rule)."""
    def pairs(frame: pl.DataFrame) -> set[tuple[str, frozenset[str]]]:
        return {(o, frozenset((k, d))) for o, k, d in frame.select("object", "kept_id", "dropped_id").iter_rows()}

    predicted, actual = pairs(log), pairs(truth)
    tp = len(predicted & actual)
    return ChartEvaluation(tp / len(predicted) if predicted else 1.0, tp / len(actual) if actual else 1.0,
                           len(predicted), len(actual))
