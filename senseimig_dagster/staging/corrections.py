"""Corrections a person made to quarantined or rejected records, applied by staging on its next run.

The corrections file (``SENSEIMIG_CORRECTIONS``, default ``corrections.yaml``; absent: none) is YAML::

    corrections:
      - {object: ledger_transaction, record_id: 4f1c..., field: patient_id, value: 9a2e...,
         by: Jane Doe, why: "patient id mistyped at the front desk; receipt 1182"}

or CSV with the columns ``object,record_id,field,value,by,why``. Each correction replaces one field of the newest
raw version of one record before staging reads it; the value is read by the extraction's own parser
(``sensei/values.py``), so a corrected amount is as exact as a received one. Nothing is changed in ``raw``: the
received value stays what Sensei sent, and the correction is applied again on every run until Sensei itself holds
the corrected value (then it is ``already_in_source``).

Every correction gets an outcome: ``applied``, ``already_in_source``, ``record_not_found`` or ``invalid_value``.
:func:`apply_corrections` returns them without values (safe for metadata and ``staging.corrections``) and, apart,
the before and after values for the encrypted audit store.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from senseimig_dagster.objects import MODIFIED_AT, OBJECTS, PRIMARY_KEY
from senseimig_dagster.sensei.records import cast_series

COLUMNS = ("object", "record_id", "field", "value", "by", "why")
OUTCOME_SCHEMA = {"object": pl.String, "record_id": pl.String, "field": pl.String, "by": pl.String,
                  "why": pl.String, "outcome": pl.String}
VALUES_SCHEMA = {**OUTCOME_SCHEMA, "before": pl.String, "after": pl.String}


class CorrectionsError(ValueError):
    """The corrections file cannot be read: names the entry and the problem, never a value."""


@dataclass(frozen=True)
class Correction:
    object: str
    record_id: str
    field: str
    value: str | None  # None (or empty): set the field to null
    by: str
    why: str


@dataclass(frozen=True)
class Applied:
    raw: dict[str, pl.DataFrame]  # the raw frames with the corrections in
    outcomes: pl.DataFrame  # OUTCOME_SCHEMA: one row per correction, no values
    values: pl.DataFrame  # VALUES_SCHEMA: the same with before/after (PHI: for the encrypted audit store only)

    def applied_ids(self) -> dict[str, set[str]]:
        """Per object, the records a correction changed: what a release sends."""
        done = self.outcomes.filter(pl.col("outcome") == "applied")
        return {o: set(done.filter(pl.col("object") == o).get_column("record_id")) for o in
                done.get_column("object").unique().to_list()}

    def per_object(self) -> dict[str, dict[str, int]]:
        """object -> outcome -> corrections, for metadata."""
        out: dict[str, dict[str, int]] = {}
        for obj, outcome, n in self.outcomes.group_by("object", "outcome").len().sort("object").iter_rows():
            out.setdefault(obj, {})[outcome] = n
        return out


def load_corrections(path: str | Path) -> list[Correction]:
    """The corrections in ``path`` (YAML or CSV by its suffix); none when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return []
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as f:
            entries = list(csv.DictReader(f))
    else:
        try:
            loaded = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
        except YAMLError as e:  # its text names line and column; values are not quoted beyond the mark
            raise CorrectionsError(f"{path.name}: not YAML ({type(e).__name__})") from None
        entries = loaded.get("corrections") if isinstance(loaded, dict) else None
        if not isinstance(entries, list):
            raise CorrectionsError(f"{path.name}: expected a top-level 'corrections:' list")
    return [_correction(path.name, i, e) for i, e in enumerate(entries, 1)]


def _correction(file: str, n: int, entry: object) -> Correction:
    where = f"{file} entry {n}"
    if not isinstance(entry, dict):
        raise CorrectionsError(f"{where}: not a mapping of {', '.join(COLUMNS)}")
    text = {k: (None if entry.get(k) is None else str(entry[k]).strip()) for k in COLUMNS}
    missing = [k for k in ("object", "record_id", "field", "by", "why") if not text[k]]
    if missing:
        raise CorrectionsError(f"{where}: {', '.join(missing)} missing (who and why are required)")
    obj = OBJECTS.get(text["object"] or "")
    if obj is None:
        raise CorrectionsError(f"{where}: unknown object")
    if text["field"] not in obj.field_names:
        raise CorrectionsError(f"{where}: {obj.name} has no such field")
    if text["field"] in (PRIMARY_KEY, MODIFIED_AT):
        raise CorrectionsError(f"{where}: {text['field']} identifies the record; it cannot be corrected")
    value = entry.get("value")
    return Correction(obj.name, text["record_id"] or "", text["field"] or "",
                      None if value is None or str(value) == "" else str(value), text["by"] or "", text["why"] or "")


def apply_corrections(raw: Mapping[str, pl.DataFrame], corrections: list[Correction]) -> Applied:
    """``raw`` (object -> newest raw rows) with every correction that fits applied."""
    frames = dict(raw)
    outcomes: list[dict] = []
    for c in corrections:
        frame = frames.get(c.object)
        row = (frame.filter(pl.col(PRIMARY_KEY).cast(pl.String) == c.record_id)
               if frame is not None and c.field in frame.columns else None)
        base = {"object": c.object, "record_id": c.record_id, "field": c.field, "by": c.by, "why": c.why}
        if frame is None or row is None or row.is_empty():
            outcomes.append({**base, "outcome": "record_not_found", "before": None, "after": c.value})
            continue
        dtype = frame.schema[c.field]
        new = _typed(c, dtype)
        before = row.get_column(c.field)[0]
        if new is None and c.value is not None:
            outcomes.append({**base, "outcome": "invalid_value", "before": _text(before), "after": c.value})
            continue
        if new.item() == before:
            outcomes.append({**base, "outcome": "already_in_source", "before": _text(before), "after": c.value})
            continue
        hit = pl.col(PRIMARY_KEY).cast(pl.String) == c.record_id
        frames[c.object] = frame.with_columns(
            pl.when(hit).then(pl.lit(new.item(), new.dtype)).otherwise(pl.col(c.field)).cast(dtype).alias(c.field))
        outcomes.append({**base, "outcome": "applied", "before": _text(before), "after": c.value})
    values = pl.DataFrame(outcomes, schema=VALUES_SCHEMA)
    return Applied(frames, values.select(list(OUTCOME_SCHEMA)), values)


def _typed(c: Correction, dtype: pl.DataType) -> pl.Series | None:
    """The corrected value as the column's type, read like a received value; None when it does not read."""
    field = OBJECTS[c.object].field(c.field)
    text = pl.Series(c.field, [c.value], pl.String)
    if field.type in ("uuid", "str", "text"):
        return text
    value = cast_series(field.type, text, "json")
    if c.value is not None and value.null_count():
        return None
    return value.cast(dtype, strict=False)


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)
