"""Pandera models of the staged tables, generated from the schema plan, the standard tables' copy and the
confirmed field map: nothing here is typed by hand, so a widened column or a new map target changes the model.

Per staged object (one table; a routed object once per table): every map target is a required column (values by
logical name, lookups by navigation property), plus ``_source_id``. Rules, each a vectorised Polars expression:

- ``max_length``: strings no longer than the Dataverse column, counted in UTF-16 units (``text.dataverse_length``);
- ``picklist``: choice, state and two-option values among the column's option values;
- ``range``: Integer/Decimal limits (the plan's attribute bodies, or the column metadata);
- ``unique``: the alternate key (``smig_sourcesystemid``), or ``_source_id`` on tables without one;
- ``required``: ApplicationRequired columns and the key are non-null (contact.lastname, account.name);
- ``lookup``: a lookup's source id is among its parent's staged source ids (attached by :func:`validate_staged`,
  which gets the parents' ids; lookups to ``mode: match`` objects - users - are checked by ``owners``);
- ``column_missing``: the column is not in the frame.

Failure cases carry values, which may be PHI: reports and Dagster metadata get counts, source ids, column and check
names, and values only for fields :func:`quarantine.masked_sample` shows.

Standard columns' max lengths, required levels and ranges come from ``standard=`` (table -> column -> ``kind``,
``options``, ``max_length``, ``required``, ``min``, ``max``; :func:`facts_from_attributes` turns a live
``DataverseMetadata.columns`` answer into it). ``standard_tables.json`` carries only kinds and options, so by
default the max lengths and required columns come from staging's copy in ``shape.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandera.polars as pa
import polars as pl
from pandera.errors import SchemaError, SchemaErrors

from senseimig_dagster.dataverse.schema import SchemaPlan, TableSpec
from senseimig_dagster.dataverse.schema_setup import attribute_body
from senseimig_dagster.dataverse.standard_tables import standard_tables
from senseimig_dagster.mapping.model import SLOT, SLOT_CAPITALISED, TABLE, FieldMapFile, ObjectMap
from senseimig_dagster.staging.quarantine import masked_sample
from senseimig_dagster.staging.values.text import dataverse_length

SOURCE_ID = "_source_id"
CHECK_NAME = "staged_schema"
_CHOICE_KINDS = frozenset({"Picklist", "State", "Status", "Boolean"})
_TEXT_KINDS = frozenset({"String", "Memo"})
_NUMERIC_KINDS = frozenset({"Integer", "Decimal", "Double", "Money", "BigInt"})
_REQUIRED_LEVELS = frozenset({"ApplicationRequired"})  # SystemRequired ones (statecode, ownerid) have defaults
# Pandera's built-in checks, renamed for people reading the metadata.
_BUILTIN_NAMES = {"column_in_dataframe": "column_missing", "not_nullable": "required", "field_uniqueness": "unique"}


@dataclass(frozen=True)
class ColumnRule:
    """What the staged frame's column ``name`` must satisfy, and where its values come from (for masking)."""

    name: str
    kind: str | None = None
    max_length: int | None = None
    options: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    required: bool = False
    unique: bool = False
    parent: str | None = None  # lookup: registry object whose staged source ids the value must be among
    source: tuple[str, str] | None = None  # (object, field) the value is written from


@dataclass(frozen=True)
class ValidationReport:
    passed: bool
    rows: int
    failure_counts: dict[str, int]  # "<column>.<check>" -> failing rows (1 for a missing column)
    sample: pl.DataFrame  # quarantine-shaped, PHI masked (quarantine.masked_sample)
    failures: pl.DataFrame = field(default_factory=pl.DataFrame)  # column, check, source_id: no values


# -- column facts ------------------------------------------------------------------------------------------------
def facts_from_attributes(attributes: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Column facts from AttributeMetadata rows (``DataverseMetadata.columns`` or :func:`attribute_body`)."""
    out: dict[str, dict[str, Any]] = {}
    for name, a in attributes.items():
        level = a.get("RequiredLevel")
        out[name.lower()] = {"kind": a.get("AttributeType"), "max_length": a.get("MaxLength"),
                             "required": level.get("Value") if isinstance(level, Mapping) else level,
                             "min": a.get("MinValue"), "max": a.get("MaxValue")}
        options = (a.get("OptionSet") or {}).get("Options")
        if options:
            out[name.lower()]["options"] = [o["Value"] for o in options]
    return out


def _plan_facts(table: TableSpec) -> dict[str, dict[str, Any]]:
    """The plan's columns as setup creates them: max lengths and ranges from the very bodies it POSTs."""
    columns = [*table.columns, *([table.primary_name] if table.primary_name else [])]
    facts = facts_from_attributes({c.logical_name: attribute_body(c) for c in columns})
    for c in columns:  # the body's kind for dates is DateTime; options may be absent from a two-option body
        facts[c.logical_name]["kind"] = c.kind
        facts[c.logical_name].setdefault("options", [v for v, _ in c.options])
    return facts


def _table_facts(table: str, plan: SchemaPlan, standard: Mapping[str, Mapping[str, Any]] | None
                 ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(columns, lookups) of ``table``: standard facts overlaid by the plan's (the plan is what setup creates)."""
    copy = standard_tables().get(table, {})
    columns: dict[str, dict[str, Any]] = {k: dict(v) for k, v in copy.get("columns", {}).items()}
    for name, extra in ((standard or {}).get(table) or {}).items():  # live facts, when given, win over the copy
        columns[name] = {**columns.get(name, {}), **{k: v for k, v in extra.items() if v is not None}}
    lookups = dict(copy.get("lookups", {}))
    spec = next((t for t in plan.tables if t.logical_name == table), None)
    if spec is not None:
        columns.update(_plan_facts(spec))
        lookups.update({lk.schema_name: {"targets": [lk.target]} for lk in spec.lookups})
    return columns, lookups


# -- targets of an object --------------------------------------------------------------------------------------
def _merged_into(fmap: FieldMapFile, object_name: str) -> list[tuple[ObjectMap, tuple[str, ...]]]:
    """Objects whose values land on ``object_name``'s rows (transitively), with the slot names they may fill."""
    found: list[tuple[ObjectMap, tuple[str, ...]]] = []
    for om in fmap.objects.values():
        if om.merge is not None and om.merge.into == object_name:
            slots = tuple(dict.fromkeys(s for _, s in om.merge.slots)) or ("",)
            found.append((om, slots))
            found += [(inner, inner_slots if inner_slots != ("",) else slots)
                      for inner, inner_slots in _merged_into(fmap, om.name)]
    return found


def _expand(target: str, table: str, slot: str) -> str:
    return target.replace(TABLE, table).replace(SLOT_CAPITALISED, slot.capitalize()).replace(SLOT, slot)


def _targets(fmap: FieldMapFile, om: ObjectMap, table: str) -> dict[str, tuple[str, str, str | None]]:
    """Staged column -> (object, field, lookup parent) for every written target, constants and merged values."""
    sources = [(om, ("",)), *_merged_into(fmap, om.name)]
    out: dict[str, tuple[str, str, str | None]] = {}
    for obj, slots in sources:
        for f in obj.fields.values():
            if not f.written:
                continue
            for slot in slots:
                for t in f.targets:
                    out.setdefault(_expand(t, table, slot), (obj.name, f.name,
                                                             f.lookup if f.transform == "lookup" else None))
        for slot in slots:
            for name, _ in obj.constants:
                out.setdefault(_expand(name, table, slot), (obj.name, name, None))
    return out


def column_rules(object_name: str, fmap: FieldMapFile, plan: SchemaPlan, *, table: str | None = None,
                 standard: Mapping[str, Mapping[str, Any]] | None = None) -> list[ColumnRule]:
    """The rules of ``object_name``'s staged frame for ``table`` (required for routed objects)."""
    om = fmap.objects.get(object_name)
    if om is None or om.mode != "upsert" or om.merge is not None:
        raise ValueError(f"{object_name} has no staged table of its own (not in the map, match/skip mode or merged)")
    if table is None:
        if om.route is not None:
            raise ValueError(f"{object_name} is routed: pass table= one of {', '.join(om.tables)}")
        table = om.table
    elif table not in om.tables:
        raise ValueError(f"{object_name} is not written to {table}")
    columns, lookups = _table_facts(table, plan, standard)
    keys = [c for k in next((t.keys for t in plan.tables if t.logical_name == table), ()) for c in k.columns]
    rules = [ColumnRule(SOURCE_ID, required=True, unique=not keys)]
    for name, (obj, fld, parent) in _targets(fmap, om, table).items():
        facts = {} if name in lookups else columns.get(name, {})
        is_key = name in keys
        rules.append(ColumnRule(
            name, facts.get("kind"), facts.get("max_length"), tuple(facts.get("options") or ()), facts.get("min"),
            facts.get("max"), required=is_key or facts.get("required") in _REQUIRED_LEVELS, unique=is_key,
            parent=parent, source=(obj, fld)))
    return rules


# -- Pandera ----------------------------------------------------------------------------------------------------
def _max_length(limit: int) -> pa.Check:
    def fits(data: Any) -> pl.LazyFrame:
        text = pl.col(data.key).cast(pl.String)
        return data.lazyframe.select(text.is_null() | (dataverse_length(text) <= limit))

    return pa.Check(fits, name="max_length")


def _picklist(options: tuple[Any, ...], kind: str | None) -> pa.Check:
    # Two-option columns are written as booleans; their option values 0/1 stand for false/true.
    allowed = [bool(v) for v in options] if kind == "Boolean" else list(options)

    def known(data: Any) -> pl.LazyFrame:
        col = pl.col(data.key)
        return data.lazyframe.select(col.is_null() | col.is_in(pl.Series(allowed)))

    return pa.Check(known, name="picklist")


def _in_range(minimum: float | None, maximum: float | None) -> pa.Check:
    def inside(data: Any) -> pl.LazyFrame:
        col = pl.col(data.key).cast(pl.Float64)
        ok = col.is_null()
        low = col >= minimum if minimum is not None else pl.lit(True)
        high = col <= maximum if maximum is not None else pl.lit(True)
        return data.lazyframe.select(ok | (low & high))

    return pa.Check(inside, name="range")


def _resolves(parent: str, ids: pl.Series) -> pa.Check:
    def found(data: Any) -> pl.LazyFrame:
        col = pl.col(data.key).cast(pl.String)
        return data.lazyframe.select(col.is_null() | col.is_in(ids.cast(pl.String)))

    return pa.Check(found, name="lookup")


def _checks(rule: ColumnRule) -> list[pa.Check]:
    checks = []
    if rule.kind in _TEXT_KINDS and rule.max_length:
        checks.append(_max_length(int(rule.max_length)))
    if rule.kind in _CHOICE_KINDS and rule.options:
        checks.append(_picklist(rule.options, rule.kind))
    if rule.kind in _NUMERIC_KINDS and (rule.minimum is not None or rule.maximum is not None):
        checks.append(_in_range(rule.minimum, rule.maximum))
    return checks


def schema_from_rules(rules: Iterable[ColumnRule], *, name: str = "staged") -> pa.DataFrameSchema:
    columns = {r.name: pa.Column(None, checks=_checks(r), nullable=not r.required, unique=r.unique, required=True,
                                 metadata={"parent": r.parent, "source": r.source}) for r in rules}
    return pa.DataFrameSchema(columns, strict=False, name=name)


def schema_for(object_name: str, fmap: FieldMapFile, plan: SchemaPlan, *, table: str | None = None,
               standard: Mapping[str, Mapping[str, Any]] | None = None) -> pa.DataFrameSchema:
    """The Pandera model of ``object_name``'s staged frame (lookup resolution is added by :func:`validate_staged`)."""
    rules = column_rules(object_name, fmap, plan, table=table, standard=standard)
    schema = schema_from_rules(rules, name=f"{object_name}:{table or fmap.objects[object_name].table}")
    schema.metadata = {"object": object_name, "match_objects": sorted(
        o.name for o in fmap.objects.values() if o.mode == "match")}
    return schema


def _with_lookups(schema: pa.DataFrameSchema, frame: pl.DataFrame, parents: Mapping[str, pl.Series]
                  ) -> pa.DataFrameSchema:
    meta = schema.metadata or {}
    skip = set(meta.get("match_objects", ()))
    updates: dict[str, dict[str, Any]] = {}
    missing = []
    for name, col in schema.columns.items():
        parent = (col.metadata or {}).get("parent")
        if parent is None or parent in skip:
            continue
        ids = parents.get(parent)
        if ids is None and parent == meta.get("object") and SOURCE_ID in frame.columns:
            ids = frame.get_column(SOURCE_ID)  # self-reference (a claim replacing a claim)
        if ids is None:
            missing.append(f"{name} -> {parent}")
            continue
        updates[name] = {"checks": [*col.checks, _resolves(parent, ids)]}
    if missing:
        raise ValueError(f"parents' staged source ids needed for lookups: {', '.join(missing)}")
    return schema.update_columns(updates) if updates else schema


def _failure_frame(errors: SchemaErrors | SchemaError) -> pl.DataFrame:
    cases = errors.failure_cases
    if not isinstance(cases, pl.DataFrame):  # a scalar failure case (a single SchemaError)
        cases = pl.DataFrame({"failure_case": [str(cases)], "column": [getattr(errors.schema, "name", None)],
                              "check": [str(errors.check)], "index": [None]})
    return cases


def validate_staged(frame: pl.DataFrame, schema: pa.DataFrameSchema,
                    parents: Mapping[str, pl.Series] | None = None, *, sample_size: int = 10) -> ValidationReport:
    """All failures of ``frame`` against ``schema`` (lazy: every check runs), counted per column and check."""
    schema = _with_lookups(schema, frame, parents or {})
    try:
        schema.validate(frame, lazy=True)
    except (SchemaErrors, SchemaError) as exc:  # never re-raised or logged: its message holds failing values
        cases = _failure_frame(exc)
    else:
        return ValidationReport(True, frame.height, {}, masked_sample(_quarantine_rows(pl.DataFrame(), schema)),
                                pl.DataFrame(schema={"column": pl.String, "check": pl.String,
                                                     SOURCE_ID: pl.String}))
    missing = cases.filter(pl.col("check") == "column_in_dataframe")
    cases = pl.concat([cases.filter(pl.col("check") != "column_in_dataframe"),
                       missing.with_columns(pl.col("failure_case").alias("column"), pl.lit(None).alias("failure_case"))],
                      how="vertical_relaxed")
    ids = frame.get_column(SOURCE_ID).cast(pl.String) if SOURCE_ID in frame.columns else None
    # A check that raised (a value of the wrong type: text in an Integer column) has no row index and the
    # exception text, which may quote values, as its failure case.
    errored = pl.col("index").is_null() & (pl.col("check") != "column_in_dataframe")
    cases = cases.with_columns(pl.when(errored).then(pl.lit("wrong_type"))
                               .otherwise(pl.col("check").replace(_BUILTIN_NAMES)).alias("check"),
                               pl.when(errored).then(None).otherwise(pl.col("failure_case").cast(pl.String))
                               .alias("failure_case"), pl.col("index").cast(pl.Int64))
    cases = cases.with_columns(
        (ids.gather(cases.get_column("index").fill_null(0)) if ids is not None and cases.height
         else pl.Series([None] * cases.height, dtype=pl.String)).alias(SOURCE_ID))
    cases = cases.with_columns(pl.when(pl.col("index").is_null()).then(None).otherwise(pl.col(SOURCE_ID))
                               .alias(SOURCE_ID))
    counts = cases.group_by("column", "check").len().sort("column", "check")
    failure_counts = {f"{c}.{k}": n for c, k, n in counts.iter_rows()}
    sample = masked_sample(_quarantine_rows(cases, schema), sample_size)
    return ValidationReport(False, frame.height, failure_counts, sample, cases.select("column", "check", SOURCE_ID))


def _quarantine_rows(cases: pl.DataFrame, schema: pa.DataFrameSchema) -> pl.DataFrame:
    """Failure cases in the quarantine frame's shape, keyed by the source field so masking knows what is PHI."""
    obj = (schema.metadata or {}).get("object", "")
    source = {n: (c.metadata or {}).get("source") or (obj, n) for n, c in schema.columns.items()}
    lookup = pl.DataFrame([(n, o, f) for n, (o, f) in source.items()],
                          schema={"column": pl.String, "object": pl.String, "field": pl.String}, orient="row")
    if cases.is_empty():
        return pl.DataFrame(schema={"object": pl.String, "source_id": pl.String, "field": pl.String,
                                    "rule": pl.String, "severity": pl.String, "message": pl.String,
                                    "raw_value": pl.String})
    return (cases.join(lookup, on="column", how="left")
            .select(pl.col("object").fill_null(obj), pl.col(SOURCE_ID).alias("source_id"),
                    pl.col("field").fill_null(pl.col("column")), pl.col("check").alias("rule"),
                    pl.lit("row").alias("severity"),
                    pl.format("{} {}: column {} fails {}", pl.col("object").fill_null(obj),
                              pl.col(SOURCE_ID).fill_null("(table)"), pl.col("column"), pl.col("check"))
                    .alias("message"),
                    pl.col("failure_case").alias("raw_value")))


def validate_object(object_name: str, frame: pl.DataFrame, fmap: FieldMapFile, plan: SchemaPlan,
                    parents: Mapping[str, pl.Series] | None = None, *,
                    standard: Mapping[str, Mapping[str, Any]] | None = None) -> ValidationReport:
    """Validate one staged object's frame (a routed object per ``_table``), its reports summed into one."""
    om = fmap.objects[object_name]
    if om.route is not None and "_table" in frame.columns:
        parts = [(t, frame.filter(pl.col("_table") == t)) for t in om.tables]
    else:
        parts = [(None, frame)]
    reports = [validate_staged(part, schema_for(object_name, fmap, plan, table=t, standard=standard), parents)
               for t, part in parts]
    counts: dict[str, int] = {}
    for r in reports:
        for k, n in r.failure_counts.items():
            counts[k] = counts.get(k, 0) + n
    return ValidationReport(all(r.passed for r in reports), frame.height, counts,
                            pl.concat([r.sample for r in reports]))
