"""Rows of one Sensei object cleaned and shaped into Dataverse columns, per the field map. Pure Polars.

Two passes, because patient deduplication and provider resolution (``pipeline.py``) run between them on values
that are clean but still under their Sensei names (dedup compares ``gender`` labels, not option values):

1. :func:`clean_object`: every written field through the cleaner its *target column* calls for (kind and
   MaxLength from the schema plan, or Microsoft's limit for standard columns): text trimmed/NFC, phones E.164,
   e-mails, NPIs, CDT codes, teeth and surfaces, money, dates, datetimes to UTC (``time_zone: location`` uses the
   row's location zone). Every reference is checked against the *extracted* ids of its parent
   (``orphan_reference``; a required parent quarantines the row), and source ids seen twice are quarantined.
2. :func:`shape_object`: picklist labels to option values (``unmapped_picklist_value``), lookups checked against
   the parent rows actually *staged* (``parent_not_staged``: the parent was quarantined, merged away or deleted),
   then the rename: values under Dataverse logical names, lookups under their navigation property holding the
   parent's alternate-key value (its Sensei id; a Sensei user's e-mail for ``systemuser``) for the loader's
   ``@odata.bind``, constants, a readable non-PHI ``smig_name`` on custom tables, and bookkeeping columns
   ``_object``, ``_source_id``, ``_table`` (routed objects) and ``_owner_user_id`` (objects with a Sensei user).

:func:`merge_into` adds the merged objects (policies with their plans, the latest referral) as columns of the
rows they are merged into (the patient's). Conservation (rows in = staged + merged + collapsed + quarantined + not written) is counted by
``pipeline.py``; every function here returns the rows it drops as quarantine rows or as counts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import polars as pl

from senseimig_dagster.dataverse.schema import SchemaPlan
from senseimig_dagster.dataverse.standard_tables import standard_tables
from senseimig_dagster.mapping.model import (
    LOCAL_TIME,
    SLOT,
    SLOT_CAPITALISED,
    TABLE,
    FieldMap,
    FieldMapFile,
    ObjectMap,
    value_key,
)
from senseimig_dagster.mapping.targets import TargetCatalog
from senseimig_dagster.objects import MODIFIED_AT, PRIMARY_KEY, STAFF_USER, SenseiObject, get
from senseimig_dagster.staging.values import VALUE, cleaned, first_reason
from senseimig_dagster.staging.values.check import Check, RowRule, Staged, run_checks
from senseimig_dagster.staging.values.dates import clean_date, default_range, describe_range, local_to_utc
from senseimig_dagster.staging.values.dental import clean_cdt_code, clean_surfaces, clean_tooth, tooth_detail
from senseimig_dagster.staging.values.emails import clean_email
from senseimig_dagster.staging.values.identifiers import clean_npi
from senseimig_dagster.staging.values.money import clean_money, ledger_amount
from senseimig_dagster.staging.values.phones import clean_phone
from senseimig_dagster.staging.values.refs import case_colliding_ids, clean_reference, duplicate_ids
from senseimig_dagster.staging.values.text import clean_text

OBJECT, SOURCE_ID, TABLE_COLUMN, OWNER_USER = "_object", "_source_id", "_table", "_owner_user_id"
ZONE = "_zone"

PHONE_COLUMNS = frozenset({"telephone1", "telephone2", "telephone3", "mobilephone"})
_KIND_DTYPES: dict[str, pl.DataType] = {
    "String": pl.String(), "Memo": pl.String(), "Integer": pl.Int64(), "Boolean": pl.Boolean(),
    "DateOnly": pl.Date(), "DateTime": pl.Datetime("us", "UTC"), "Picklist": pl.Int32(),
}
@dataclass(frozen=True)
class Targets:
    """Where a map writes: kinds and max lengths of columns, from the schema plan and the standard copy."""

    plan: SchemaPlan
    catalog: TargetCatalog

    @staticmethod
    def of(plan: SchemaPlan) -> Targets:
        return Targets(plan, TargetCatalog(plan))

    def kind(self, table: str, column: str) -> str | None:
        col = self.catalog.column(table, column)
        return col.kind if col else None

    def max_length(self, table: str, column: str) -> int | None:
        for t in self.plan.tables:
            if t.logical_name == table:
                for c in (*t.columns, *([t.primary_name] if t.primary_name else [])):
                    if c.logical_name == column:
                        return c.max_length
        return standard_tables().get(table, {}).get("columns", {}).get(column, {}).get("max_length")

    def required(self, table: str, column: str) -> bool:
        """ApplicationRequired in Microsoft's metadata: a row without it cannot be created."""
        facts = standard_tables().get(table, {}).get("columns", {}).get(column, {})
        return facts.get("required") == "ApplicationRequired"

    def is_custom(self, table: str) -> bool:
        return any(t.logical_name == table and t.custom for t in self.plan.tables)


def _first_target(om: ObjectMap, fm: FieldMap, fmap: FieldMapFile) -> tuple[str, str] | None:
    """(table, column) of a field's first target, placeholders filled with the first slot / routed table."""
    if not fm.targets:
        return None
    table = om.tables[0]
    if om.merge is not None:
        table = _merge_root(om, fmap).table
    slot = om.merge.slots[0][1] if om.merge and om.merge.slots else ""
    if om.merge and not om.merge.slots and (parent := fmap.objects.get(om.merge.into)) and parent.merge:
        slot = parent.merge.slots[0][1] if parent.merge.slots else ""
    name = fm.targets[0].replace(SLOT, slot).replace(SLOT_CAPITALISED, slot.capitalize()).replace(TABLE, table)
    return table, name.lower()


def _merge_root(om: ObjectMap, fmap: FieldMapFile) -> ObjectMap:
    while om.merge is not None and om.merge.into in fmap.objects:
        om = fmap.objects[om.merge.into]
    return om


# -- pass 1: values -------------------------------------------------------------------------------------------
def utc_datetime(value: pl.Expr, earliest: dt.date, latest: dt.date, dtype: pl.DataType | None = None) -> pl.Expr:
    """An instant as ``Datetime(us, UTC)`` (naive input is read as UTC), within the date range. ``dtype``: the
    column's type; an already typed column (the raw layer's) skips the text round trip (~1 s per million rows)."""
    as_text = value.cast(pl.String)
    parsed = as_text.str.to_datetime(time_zone="UTC", strict=False, time_unit="us")
    if isinstance(dtype, pl.Datetime):
        as_text = value  # only its nulls matter below: a typed value is never invalid_date
        parsed = (value.dt.convert_time_zone("UTC") if dtype.time_zone else value.dt.replace_time_zone("UTC")
                  ).dt.cast_time_unit("us")
    low = dt.datetime.combine(earliest, dt.time(), dt.UTC)
    high = dt.datetime.combine(latest, dt.time(), dt.UTC)
    out_of_range = (parsed < low) | (parsed > high)
    reason = first_reason((as_text.is_not_null() & parsed.is_null(), "invalid_date"),
                          (out_of_range, "date_out_of_range"))
    return cleaned(pl.when(reason.is_null()).then(parsed), reason)


def _value_check(obj: SenseiObject, fm: FieldMap, targets: Targets, table: str, column: str,
                 frame: pl.DataFrame, today: dt.date) -> Check | None:
    f = obj.field(fm.name)
    col = pl.col(fm.name)
    kind = targets.kind(table, column)
    earliest, latest = default_range(today)
    if f.name == "npi" or column.endswith("_npi"):
        return Check(f.name, clean_npi(col))
    if kind in ("String", "Memo") and (column in PHONE_COLUMNS or f.name.endswith("phone")):
        return Check(f.name, clean_phone(col))
    if column.startswith("emailaddress") or f.name == "email":
        return Check(f.name, clean_email(col))
    if f.name in ("code", "procedure_code"):
        return Check(f.name, clean_cdt_code(col))
    if f.name == "tooth":
        return Check(f.name, clean_tooth(col, allow_areas=f.tooth_areas), detail=tooth_detail(f.tooth_areas))
    if f.name == "surfaces" and "tooth" in frame.columns:
        return Check(f.name, clean_surfaces(col, pl.col("tooth")), detail="surfaces M O D B F L I on one tooth")
    if f.type == "decimal":
        if f.sign_by is not None and f.sign_by in frame.columns:
            return Check(f.name, ledger_amount(col, pl.col(f.sign_by), frame.schema.get(f.name)),
                         detail="by entry type")
        return Check(f.name, clean_money(col, dtype=frame.schema.get(f.name)))
    if fm.transform == "date" or f.type == "date":
        return Check(f.name, clean_date(col, earliest, latest, dtype=frame.schema.get(f.name)),
                     detail=describe_range(earliest, latest))
    if fm.transform == "datetime" or f.type == "datetime":
        if fm.time_zone == LOCAL_TIME and ZONE in frame.columns:
            return Check(f.name, local_to_utc(col, pl.col(ZONE)))
        return Check(f.name, utc_datetime(col, earliest, latest, frame.schema.get(f.name)),
                     detail=describe_range(earliest, latest))
    if kind in ("String", "Memo"):
        limit = targets.max_length(table, column)
        return Check(f.name, clean_text(col, max_length=limit, required=targets.required(table, column),
                                        multiline=kind == "Memo"), detail=f"limit {limit}")
    return None


def with_zone(frame: pl.DataFrame, obj: SenseiObject, locations: pl.DataFrame | None) -> pl.DataFrame:
    """The row's location's IANA zone as ``_zone`` (for ``time_zone: location`` fields)."""
    if obj.location_field is None or locations is None or "time_zone" not in locations.columns:
        return frame.with_columns(pl.lit(None, pl.String).alias(ZONE))
    zones = locations.select(pl.col(PRIMARY_KEY).alias("_zone_key"), pl.col("time_zone").cast(pl.String).alias(ZONE))
    key = pl.col(obj.location_field).cast(pl.String)
    return (frame.with_columns(key.alias("_zone_key"))
            .join(zones.unique("_zone_key"), on="_zone_key", how="left", maintain_order="left").drop("_zone_key"))


def json_as_text(frame: pl.DataFrame, obj: SenseiObject) -> pl.DataFrame:
    """JSON fields as JSON text, as the raw layer stores them (a frame read from JSON lines has lists)."""
    casts = []
    for f in obj.fields:
        if f.type == "json" and f.name in frame.columns and frame.schema[f.name] not in (pl.String, pl.Null):
            wrapped = pl.struct(pl.col(f.name).alias("v")).struct.json_encode()
            casts.append(pl.when(pl.col(f.name).is_not_null()).then(wrapped.str.slice(5).str.strip_suffix("}"))
                         .alias(f.name))
    return frame.with_columns(casts) if casts else frame


def clean_object(name: str, frame: pl.DataFrame, fmap: FieldMapFile, targets: Targets,
                 extracted_ids: Mapping[str, pl.Series], *, today: dt.date | None = None,
                 locations: pl.DataFrame | None = None) -> Staged:
    """Pass 1 over one object's (non-deleted) rows: values cleaned under their Sensei names; see the module doc."""
    obj, om = get(name), fmap.objects[name]
    today = today or dt.date.today()
    frame = json_as_text(frame, obj)
    if any(fm.written and fm.time_zone == LOCAL_TIME for fm in om.fields.values()):
        frame = with_zone(frame, obj, locations)
    checks: list[Check] = []
    for f in obj.fields:
        if f.name not in frame.columns or f.name == PRIMARY_KEY:
            continue
        if f.references and f.references in extracted_ids:
            checks.append(Check(f.name, clean_reference(pl.col(f.name), extracted_ids[f.references],
                                                        required=f.required), detail=f.references.replace("_", " "),
                                severity={"orphan_reference": "row"} if f.required else {}))
            continue
        fm = om.fields.get(f.name)
        if fm is None or not fm.written or fm.transform not in ("direct", "date", "datetime"):
            continue
        where = _first_target(om, fm, fmap)
        check = _value_check(obj, fm, targets, *where, frame, today) if where else None
        if check is not None:
            checks.append(check)
    staged = run_checks(frame, name, checks, source_id_rules(obj, frame))
    return staged if ZONE not in staged.clean.columns else Staged(
        staged.clean.drop(ZONE), staged.quarantine, staged.rows_in, staged.rows_quarantined)


def source_id_rules(obj: SenseiObject, frame: pl.DataFrame) -> list[RowRule]:
    """Copies of one source id keep the latest; ids only letter case tells apart are quarantined wherever the
    registry gives the object's table an alternate key (Dataverse would load them as one record)."""
    rules = [RowRule(PRIMARY_KEY, "duplicate_source_id", duplicate_ids(frame))]
    key = obj.target.alternate_key
    if key is not None and not obj.target.merged:
        rules.append(RowRule(PRIMARY_KEY, "source_id_case_collision", case_colliding_ids(frame), detail=key))
    return rules


# -- pass 2: codes, lookups, rename ---------------------------------------------------------------------------
def clean_options(label: pl.Expr, values: tuple[tuple[str, Any], ...]) -> pl.Expr:
    """A label through the map's value map (trimmed, case-insensitive). A label mapped to ``null`` is known and
    leaves the column empty; a label the map lacks is ``unmapped_picklist_value``. Options may be booleans
    (``directioncode``)."""
    keys = {value_key(k).strip().lower(): v for k, v in values}
    mapped = {k: v for k, v in keys.items() if v is not None}
    dtype = pl.Boolean() if mapped and all(isinstance(v, bool) for v in mapped.values()) else pl.Int32()
    text = label.cast(pl.String).str.strip_chars()
    text = pl.when(text != "").then(text)
    lower = text.str.to_lowercase()
    value = (lower.replace_strict(list(mapped), list(mapped.values()), default=None, return_dtype=dtype)
             if mapped else pl.lit(None, dtype))
    unmapped = text.is_not_null() & ~lower.is_in(list(keys))
    return cleaned(value, first_reason((unmapped, "unmapped_picklist_value")))


def staged_reference(ref: pl.Expr, staged_ids: pl.Series) -> pl.Expr:
    """The id when its parent row is staged; else null with ``parent_not_staged``."""
    value = ref.cast(pl.String)
    missing = value.is_not_null() & ~value.is_in(pl.lit(staged_ids.cast(pl.String).drop_nulls().implode()))
    return cleaned(pl.when(~missing).then(value), first_reason((missing, "parent_not_staged")))


def code_checks(name: str, om: ObjectMap, frame: pl.DataFrame, staged_ids: Mapping[str, pl.Series]
                  ) -> list[Check]:
    obj = get(name)
    checks: list[Check] = []
    for fm in om.fields.values():
        if not fm.written or fm.name not in frame.columns:
            continue
        if fm.transform == "picklist" and fm.via is None:
            checks.append(Check(fm.name, clean_options(pl.col(fm.name), fm.values)))
    for f in obj.fields:
        fm = om.fields.get(f.name)
        bound = fm is not None and fm.written and fm.transform == "lookup"  # what a lookup binds must be loaded
        if f.references and f.references in staged_ids and f.name in frame.columns and (bound or f.required):
            checks.append(Check(f.name, staged_reference(pl.col(f.name), staged_ids[f.references]),
                                detail=f.references.replace("_", " "),
                                severity={"parent_not_staged": "row" if f.required else "field"}))
    return checks


def _target_names(fm: FieldMap, table: str, slot: str = "") -> list[str]:
    return [t.replace(TABLE, table).replace(SLOT, slot).replace(SLOT_CAPITALISED, slot.capitalize())
            for t in fm.targets]


def _field_columns(fm: FieldMap, table: str, lookup_values: Mapping[str, pl.DataFrame], slot: str = ""
                   ) -> list[pl.Expr]:
    """The target columns one field writes (targets by transform); lookups hold the parent's key value."""
    names = _target_names(fm, table, slot)
    col = pl.col(fm.name)
    if fm.transform == "lookup":
        if fm.lookup in lookup_values:  # a parent keyed by something else than its id (systemuser: e-mail)
            col = pl.col(f"_key_{fm.name}")
        return [col.cast(pl.String).alias(n) for n in names]
    if fm.transform == "split":
        sep = fm.separator or " "
        text = col.cast(pl.String).str.strip_chars()
        last = text.str.split(sep).list.last()
        rest = pl.when(text.str.contains(sep, literal=True)).then(
            text.str.head(text.str.len_chars() - last.str.len_chars() - len(sep)).str.strip_chars())
        return [rest.alias(names[0]), last.alias(names[-1])] if len(names) > 1 else [text.alias(names[0])]
    if fm.transform == "concat":
        joined = pl.concat_str([pl.col(s).cast(pl.String) for s in fm.sources], separator=fm.separator or " ",
                               ignore_nulls=True)
        return [joined.alias(n) for n in names]
    if fm.transform == "constant":
        return [pl.lit(fm.value).alias(n) for n in names]
    return [col.alias(n) for n in names]


def _name_column(obj: SenseiObject, frame: pl.DataFrame) -> pl.Expr | None:
    """``Appointment 2026-10-03 D1110``: the registry's display name (label, date, code); no person's name, no free
    text."""
    if obj.display_name is None:
        return None
    label, day, code = obj.display_name.label, obj.display_name.date, obj.display_name.code
    parts: list[pl.Expr] = [pl.lit(label)]
    if day in frame.columns:
        when = pl.col(day)
        if isinstance(frame.schema[day], pl.Datetime):
            when = when.dt.date()
        parts.append(when.cast(pl.String))
    if code and code in frame.columns:
        text = pl.col(code).cast(pl.String)
        parts.append(text.str.extract(r"(D\d{4})") if code == "cdt_codes" else text.str.slice(0, 40))
    return pl.concat_str(parts, separator=" ", ignore_nulls=True).str.slice(0, 200)


def _cast_to_kinds(frame: pl.DataFrame, targets: Targets, tables: tuple[str, ...]) -> pl.DataFrame:
    """Each target column in its Dataverse kind's type (a tooth cleaned as text into an Integer column)."""
    casts = []
    for c in frame.columns:
        if c.startswith("_"):
            continue
        kind = next((k for t in tables if (k := targets.kind(t, c))), None)
        dtype = _KIND_DTYPES.get(kind or "")
        if dtype is not None and frame.schema[c] != dtype and not (kind == "Picklist" and frame.schema[c] ==
                                                                   pl.Boolean):
            casts.append(pl.col(c).cast(dtype, strict=False))
        elif frame.schema[c] == pl.Null:
            casts.append(pl.col(c).cast(pl.String))
    return frame.with_columns(casts) if casts else frame


def shape_object(name: str, frame: pl.DataFrame, fmap: FieldMapFile, targets: Targets,
                 staged_ids: Mapping[str, pl.Series], *, matched: Mapping[str, pl.DataFrame] | None = None) -> Staged:
    """Pass 2: ``frame`` (pass-1 rows, routed rows only) to Dataverse columns; see the module docstring.

    ``staged_ids``: parent object -> ids of its staged rows (a user's: users found in the extract).
    ``matched``: rows of the objects the map matches instead of writing (``mode: match``: Sensei users), for lookups
    to them, bound by their ``match_on`` value (a user's e-mail -> ``systemuser``).
    """
    obj, om = get(name), fmap.objects[name]
    checked = run_checks(frame, name, code_checks(name, om, frame, staged_ids), [])
    rows = checked.clean
    # Lookups to rows of the same object (a replaced claim, a corrected ledger entry) can only be judged now,
    # against the rows that survived this pass: a target quarantined or not staged empties the lookup.
    self_refs = [f.name for f in obj.fields if f.references == name and f.name in rows.columns
                 and (fm := om.fields.get(f.name)) is not None and fm.written and fm.transform == "lookup"]
    if self_refs:
        again = run_checks(rows, name, [Check(r, staged_reference(pl.col(r), rows.get_column(PRIMARY_KEY)),
                                              detail=name.replace("_", " "), severity={"parent_not_staged": "field"})
                                        for r in self_refs], [])
        rows = again.clean
        checked = Staged(rows, pl.concat([checked.quarantine, again.quarantine]), checked.rows_in,
                         checked.rows_quarantined)
    lookup_values: dict[str, pl.DataFrame] = {}
    for fm in om.fields.values():
        parent = fmap.objects.get(fm.lookup or "")
        if fm.written and fm.transform == "lookup" and parent is not None and parent.mode == "match" \
                and parent.match_on and fm.lookup in (matched or {}):
            key = pl.col(parent.match_on).str.strip_chars().str.to_lowercase()
            keyed = matched[fm.lookup].select(pl.col(PRIMARY_KEY).alias(fm.name), key.alias(f"_key_{fm.name}"))
            rows = rows.join(keyed.unique(fm.name), on=fm.name, how="left", maintain_order="left")
            lookup_values[fm.lookup] = keyed
    route = dict(om.route.tables) if om.route else None
    tables = om.tables
    if route:
        rows = rows.with_columns(pl.col(om.route.by).cast(pl.String).replace_strict(route, default=None)
                                 .alias(TABLE_COLUMN))
    exprs: list[pl.Expr] = [pl.lit(name).alias(OBJECT), pl.col(PRIMARY_KEY).cast(pl.String).alias(SOURCE_ID)]
    if route:
        exprs.append(pl.col(TABLE_COLUMN))
    users = [f.name for f in obj.fields if f.references == STAFF_USER.name and f.name in rows.columns]
    if users:
        exprs.append(pl.col(users[0]).cast(pl.String).alias(OWNER_USER))
    written: dict[str, pl.Expr] = {}
    for fm in om.fields.values():
        if not fm.written or (fm.transform not in ("constant", "concat") and fm.name not in rows.columns):
            continue
        per_table = tables if any(TABLE in t for t in fm.targets) else tables[:1]
        for table in per_table:
            for e in _field_columns(fm, table, lookup_values):
                if route and len(per_table) > 1:  # one column per routed table, filled on that table's rows
                    e = pl.when(pl.col(TABLE_COLUMN) == table).then(e).alias(e.meta.output_name())
                written.setdefault(e.meta.output_name(), e)
    for column, value in om.constants:
        written.setdefault(column, pl.lit(value).alias(column))
    name_column = f"{targets.plan.prefix}_name"
    if targets.is_custom(tables[0]) and name_column not in written and (label := _name_column(obj, rows)) is not None:
        written[name_column] = label.alias(name_column)
    shaped = rows.select(*exprs, *written.values())
    shaped = _cast_to_kinds(shaped, targets, tables)
    return Staged(shaped, checked.quarantine, checked.rows_in, checked.rows_quarantined)


# -- merged objects -------------------------------------------------------------------------------------------
@dataclass
class MergeOutcome:
    merged_ids: pl.Series  # rows of the merged object that now live on a patient row
    not_written_ids: pl.Series  # rows that lost ``latest_by`` to a newer one, have no slot, or are unused


def _latest(frame: pl.DataFrame, keys: list[str], latest_by: str | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One row per ``keys`` (the greatest ``latest_by``, then ``updated_at``, then id) and the others."""
    order = [c for c in (latest_by, MODIFIED_AT, PRIMARY_KEY) if c and c in frame.columns]
    winners = frame.sort(order, descending=True, nulls_last=True).unique(keys, keep="first", maintain_order=True)
    return winners, frame.join(winners.select(PRIMARY_KEY), on=PRIMARY_KEY, how="anti")


def _with_via(om: ObjectMap, frame: pl.DataFrame, frames: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """``via: <field>``: the value read from the referenced row (a referral's source type), then mapped."""
    obj = get(om.name)
    for fm in om.fields.values():
        if not fm.written or fm.via is None or fm.name not in frame.columns:
            continue
        parent = obj.field(fm.name).references
        source = frames.get(parent) if parent else None
        if source is None or fm.via not in source.columns:
            frame = frame.with_columns(pl.lit(None, pl.Int32).alias(fm.name))
            continue
        looked = source.select(pl.col(PRIMARY_KEY).cast(pl.String).alias(fm.name), pl.col(fm.via).alias("_via"))
        frame = (frame.with_columns(pl.col(fm.name).cast(pl.String))
                 .join(looked.unique(fm.name), on=fm.name, how="left", maintain_order="left")
                 .with_columns(clean_options(pl.col("_via"), fm.values).struct.field(VALUE).alias(fm.name))
                 .drop("_via"))
    return frame


def _children(name: str, fmap: FieldMapFile) -> list[tuple[str, ObjectMap, str]]:
    """Objects merged into ``name`` through a field of it: (object, map, ``name``'s linking field)."""
    return [(child, om, om.merge.via.partition(".")[2]) for child, om in fmap.objects.items()
            if om.merge is not None and om.merge.into == name and om.merge.via.startswith(f"{name}.")]


def _slot_values(om: ObjectMap, table: str, slot: str, columns: list[str], prefix: str = "") -> list[pl.Expr]:
    exprs: list[pl.Expr] = []
    for fm in om.fields.values():
        if fm.written and (fm.transform in ("constant", "concat") or prefix + fm.name in columns):
            exprs += _field_columns(replace(fm, name=prefix + fm.name), table, {}, slot)
    return exprs


def merge_into(root: str, root_ids: pl.Series, fmap: FieldMapFile, frames: Mapping[str, pl.DataFrame]
               ) -> tuple[pl.DataFrame, dict[str, MergeOutcome]]:
    """Every object merged into ``root`` (directly, or through another merged object: insurance plans through
    the patient's policies) as columns of the root's rows: ``id`` + target columns, and per merged object what was
    merged.

    ``frames``: pass-2 rows (picklists mapped, lookups checked) of each merged object and of the objects their
    ``via`` fields read (a referral's source, its raw ``type``). Rows pointing at no staged root row are the
    caller's to quarantine before (``parent_not_staged``).
    """
    ids = root_ids.cast(pl.String)
    table = fmap.objects[root].table
    columns = pl.DataFrame({PRIMARY_KEY: ids})
    outcomes: dict[str, MergeOutcome] = {}
    for name, om in fmap.objects.items():
        if om.merge is None or om.merge.into != root or name not in frames:
            continue
        link = om.merge.via
        frame = _with_via(om, frames[name], frames).with_columns(pl.col(link).cast(pl.String))
        frame = frame.filter(pl.col(link).is_in(ids.implode()))
        slots = dict(om.merge.slots) if om.merge.slot_by else {}
        slot = (pl.col(om.merge.slot_by).cast(pl.String).replace_strict(slots, default=None) if slots
                else pl.lit(""))
        frame = frame.with_columns(slot.alias("_slot"))
        winners, losers = _latest(frame.filter(pl.col("_slot").is_not_null()), [link, "_slot"], om.merge.latest_by)
        not_written = [losers.get_column(PRIMARY_KEY), frame.filter(pl.col("_slot").is_null())[PRIMARY_KEY]]
        children = _children(name, fmap)
        for child, _, child_link in children:
            rows = frames.get(child, pl.DataFrame({PRIMARY_KEY: []}, schema={PRIMARY_KEY: pl.String}))
            prefixed = rows.select(pl.all().name.prefix(f"_{child}_")).with_columns(
                pl.col(f"_{child}_{PRIMARY_KEY}").cast(pl.String).alias(child_link))
            winners = winners.with_columns(pl.col(child_link).cast(pl.String)).join(
                prefixed.unique(child_link), on=child_link, how="left", maintain_order="left")
            used = winners.filter(pl.col(f"_{child}_{PRIMARY_KEY}").is_not_null()).get_column(child_link).unique()
            outcomes[child] = MergeOutcome(used, rows.filter(~pl.col(PRIMARY_KEY).is_in(used.implode()))[PRIMARY_KEY])
        for slot_name in dict.fromkeys(slots.values() if slots else [""]):
            part = winners.filter(pl.col("_slot") == slot_name)
            values = _slot_values(om, table, slot_name, part.columns)
            values += [e for child, child_map, _ in children
                       for e in _slot_values(child_map, table, slot_name, part.columns, f"_{child}_")]
            cols = part.select(pl.col(link).alias(PRIMARY_KEY), *values)
            columns = columns.join(cols, on=PRIMARY_KEY, how="left", maintain_order="left")
        outcomes[name] = MergeOutcome(winners.get_column(PRIMARY_KEY), pl.concat(not_written))
    return columns, outcomes
