"""The sample migration's pieces: which patients, which of their rows, and the field diff.

* :func:`sample_patient_ids` picks N patients reproducibly (a seeded hash order, not ``random``), stratified across
  locations in proportion to their patients, at least one per location while N allows.
* :func:`sample_rows` keeps, per object, the rows that belong to those patients: rows that reference a sampled
  patient, then rows that reference kept rows (plan items through their plan, claim events through their claim…),
  and every row of objects that are not patient-scoped (locations, providers, payers, users), which parents need.
* :func:`field_diff` puts, for every sampled row and every mapped column, the source value, the staged
  (transformed) value and the value read back from Dataverse side by side. Lookups compare the parent's Dataverse
  id: the staged source id resolved through the parent table's read-back.

The diff holds PHI: its differences are kept in the migration's store only. :func:`diff_markdown` is what the UI
shows: column names, equality, and values only for the registry's shown fields (the rest masked whole).
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from senseimig_dagster.mapping.model import FieldMapFile
from senseimig_dagster.mapping.targets import TargetCatalog
from senseimig_dagster.objects import MASK, OBJECTS, PATIENT, PRIMARY_KEY, load_order

LOCATION_FIELD = PATIENT.location_field or PRIMARY_KEY
# Columns Dataverse reads back under another name: overriddencreatedon is stored as createdon.
READ_AS = {"overriddencreatedon": "createdon"}
DIFF_COLUMNS = ("object", "source_id", "field", "column", "source_value", "staged_value", "dataverse_value", "equal")


def _order_key(seed: int, value: str) -> str:
    return hashlib.sha256(f"{seed}:{value}".encode()).hexdigest()


def sample_patient_ids(patients: pl.DataFrame, n: int, seed: int = 0) -> list[str]:
    """``n`` patient ids, stratified by ``primary_location_id`` (largest remainder), same seed same ids."""
    if n <= 0 or patients.is_empty():
        return []
    frame = patients.select(pl.col(PRIMARY_KEY).cast(pl.Utf8), pl.col(LOCATION_FIELD).cast(pl.Utf8).fill_null(""))
    frame = frame.with_columns(
        pl.col(PRIMARY_KEY).map_elements(lambda v: _order_key(seed, v), return_dtype=pl.Utf8).alias("_order"))
    sizes = frame.group_by(LOCATION_FIELD).len().sort(LOCATION_FIELD)
    total, n = frame.height, min(n, frame.height)
    quotas = {row[LOCATION_FIELD]: row["len"] * n / total for row in sizes.iter_rows(named=True)}
    take = {loc: int(q) for loc, q in quotas.items()}
    if n >= len(take):  # every location is seen at least once
        take = {loc: max(k, 1) for loc, k in take.items()}
    by_remainder = sorted(quotas, key=lambda loc: (-(quotas[loc] - int(quotas[loc])), loc))
    i = 0
    while sum(take.values()) < n:
        loc = by_remainder[i % len(by_remainder)]
        if take[loc] < sizes.filter(pl.col(LOCATION_FIELD) == loc)["len"][0]:
            take[loc] += 1
        i += 1
    while sum(take.values()) > n:  # the minimum of one per location overshot: trim the largest
        loc = max(take, key=lambda k: (take[k], k))
        take[loc] -= 1
    chosen = (frame.sort("_order").with_columns(pl.int_range(pl.len()).over(LOCATION_FIELD).alias("_rank"))
              .filter(pl.col("_rank") < pl.col(LOCATION_FIELD).replace_strict(take, default=0)))
    return sorted(chosen[PRIMARY_KEY].to_list(), key=lambda v: _order_key(seed, v))


def _patient_scoped(name: str, scoped: set[str]) -> bool:
    return any(f.references in scoped for f in OBJECTS[name].fields if f.references and f.references != name)


def sample_rows(frames: Mapping[str, pl.DataFrame], patient_ids: list[str]) -> dict[str, pl.DataFrame]:
    """Per object, the rows of the sampled patients and their descendants; other objects whole."""
    kept: dict[str, set[str]] = {PATIENT.name: set(patient_ids)}
    out: dict[str, pl.DataFrame] = {}
    scoped = {PATIENT.name}
    for obj in load_order():
        frame = frames.get(obj.name)
        if frame is None:
            continue
        if obj.name == PATIENT.name:
            out[PATIENT.name] = frame.filter(pl.col(PRIMARY_KEY).cast(pl.Utf8).is_in(sorted(kept[PATIENT.name])))
            continue
        if not _patient_scoped(obj.name, scoped):
            out[obj.name] = frame
            continue
        scoped.add(obj.name)
        # A row belongs to the sample when any reference to a patient-scoped object points at a kept row.
        conditions = [pl.col(f.name).cast(pl.Utf8).is_in(sorted(kept[f.references]))
                      for f in obj.fields if f.references in kept and f.references != obj.name]
        rows = frame.filter(pl.any_horizontal(conditions)) if conditions else frame.clear()
        out[obj.name] = rows
        kept[obj.name] = set(rows[PRIMARY_KEY].cast(pl.Utf8).to_list())
    return out


@dataclass(frozen=True)
class Readback:
    """What Dataverse holds for the sample: per table, rows by source id; ids by (table, source id)."""

    rows: Mapping[str, Mapping[str, Mapping[str, Any]]]
    ids: Mapping[tuple[str, str], str]


def _wire_text(value: Any) -> Any:
    """A staged value as Dataverse returns it: datetimes ISO 8601 UTC with ``Z``, dates ``YYYY-MM-DD``."""
    if isinstance(value, dt.datetime):
        value = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) < 0.005
        except (TypeError, ValueError):
            return False
    return str(a) == str(b)


def field_diff(fmap: FieldMapFile, raw: Mapping[str, pl.DataFrame], staged: Mapping[str, pl.DataFrame],
               readback: Readback, catalog: TargetCatalog) -> pl.DataFrame:
    """One row per (object, source id, mapped field, column). A lookup's staged parent source id is compared, through
    the parent's read-back id, with the read-back ``_<attribute>_value``."""
    out: list[tuple] = []
    for name, frame in staged.items():
        omap = fmap.objects.get(name)
        if omap is None or frame.is_empty():
            continue
        source = {str(r[PRIMARY_KEY]): r for r in raw[name].iter_rows(named=True)} if name in raw else {}
        for row in frame.iter_rows(named=True):
            sid = str(row["_source_id"])
            table = row.get("_table") or omap.table
            dv = readback.rows.get(table, {}).get(sid, {})
            for field in omap.fields.values():
                if not field.written:
                    continue
                for column in field.targets:
                    column = column.replace("{table}", table)
                    if column not in row:
                        continue
                    staged_value = _wire_text(row[column])
                    lookup = catalog.lookup(table, column)
                    if lookup is not None:  # compare the parent's Dataverse id, resolved through its alternate key
                        dataverse_value = dv.get(f"_{lookup.attribute}_value")
                        if staged_value is None or lookup.attribute == "ownerid" or "systemuser" in lookup.targets:
                            expected = staged_value  # owners and users are bound by GUID (load/frames.py)
                        else:
                            expected = readback.ids.get((lookup.targets[0], str(staged_value)))
                        # a parent named but found on neither side is a difference, not two equal nulls
                        equal = _same(expected, dataverse_value) and (staged_value is None or expected is not None)
                    else:
                        dataverse_value = dv.get(READ_AS.get(column, column))
                        equal = _same(staged_value, dataverse_value)
                    source_value = source.get(sid, {}).get(field.name)
                    out.append((name, sid, field.name, column, _text(source_value), _text(staged_value),
                                _text(dataverse_value), equal))
    return pl.DataFrame(out, schema=dict.fromkeys(DIFF_COLUMNS[:-1], pl.Utf8) | {"equal": pl.Boolean},
                        orient="row")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def diff_markdown(diff: pl.DataFrame, max_rows: int = 200) -> str:
    """The UI view: differences first; only the registry's shown fields (``Field.shown``) show their values, every
    other value is masked whole (the store's ``verify.differences`` keeps the differing values)."""
    if diff.is_empty():
        return "No sampled rows."
    lines = [f"{diff['equal'].sum()} of {diff.height} values equal after the round trip.", "",
             "| object | source id | field | column | source | staged | dataverse | equal |",
             "|---|---|---|---|---|---|---|---|"]
    for r in diff.sort("equal").head(max_rows).iter_rows(named=True):
        shown = r["field"] in OBJECTS[r["object"]].shown_fields
        values = ["∅" if r[k] is None else r[k] if shown else MASK
                  for k in ("source_value", "staged_value", "dataverse_value")]
        lines.append(f"| {r['object']} | {r['source_id']} | {r['field']} | {r['column']} | "
                     + " | ".join(str(v).replace("|", "\\|") for v in values) + f" | {'yes' if r['equal'] else 'NO'} |")
    return "\n".join(lines)
