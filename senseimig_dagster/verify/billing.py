"""Billing ledger reconciliation: Sensei's money vs what Dataverse holds after the load, exactly.

Measures come from the map, not from a list here: every Decimal field an object writes into the billing ledger table
(``<prefix>_billingledger``) is a measure. An object whose entry type is a picklist field (ledger transactions:
``txn_type`` -> ``smig_entrytype``) gets one measure per entry type label (Charge, Payment, Adjustment, Insurance
Payment, Write-off: Sensei's types folded as the map folds them); an object with a constant entry type (claims)
gets one per amount field (``Claim billed``, ``Claim paid``, ``Claim write off``).

Per location (Sensei's ``location_id``; Dataverse's location lookup resolved back to the location's source id) and
overall (``ALL``), in integer millionths, the raw layer's ``DECIMAL(18,6)``: an amount received with more than two
decimals (quarantined as ``amount_precision``) counts at the value received, and there is no float drift
(Dataverse returns Decimals as JSON numbers, each read as its shortest decimal text):

* ``sensei_all``: every extracted row; ``deleted``: rows deleted in Sensei; ``quarantined``: rows staging held back;
  ``sensei_staged``: the rows staged, i.e. expected in Dataverse; ``unexplained``: the rest of ``all - staged``
  (0 unless a row went missing in staging: shown, never folded into the quarantine);
* ``dataverse``: the ledger table's migrated rows, read back (paged ``$select``); ``deleted_kept``: those of them
  whose Sensei row was deleted later (a delta window reports deletions and never deletes in Dataverse, so they stay
  until a person decides: shown, and taken out of the comparison).

The Pandera schema's check: ``|dataverse - deleted_kept - sensei_staged| <= 0.01% x |sensei_staged|`` on every row. The quarantine
explains ``sensei_all - sensei_staged``; it never widens the tolerance. :func:`reconcile_and_repair` rewrites the
staged ledger rows that Dataverse lacks or holds differently through the writers' audited load (``load/writer.py``:
an audit intent before each write, before-images of updates, so rollback undoes a repair like any other write) and
reconciles again, once.

Totals are aggregates and location names are practices', not patients': they may go to metadata. Row-level
values never leave this module except as source ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pandera.polars as pa
import polars as pl
from pandera.errors import SchemaError, SchemaErrors

from senseimig_dagster.load.frames import SOURCE_ID
from senseimig_dagster.load.journal import RecordOutcome
from senseimig_dagster.load.owners import OwnerMap
from senseimig_dagster.load.payload import SOURCE_KEY
from senseimig_dagster.load.writer import WriteContext, write_object
from senseimig_dagster.mapping.model import FieldMapFile
from senseimig_dagster.objects import LOCATION, OBJECTS, PRIMARY_KEY, load_order
from senseimig_dagster.staging.values.money import EXACT_DECIMAL, exact_amount

if TYPE_CHECKING:
    from senseimig_dagster.dataverse.client import DataverseClient
    from senseimig_dagster.dataverse.schema import SchemaPlan
    from senseimig_dagster.verify.counts import DataverseIndex

CHECK_NAME = "ledger_reconciliation"
ALL = "ALL"
NO_LOCATION = "(none)"
TOLERANCE = Decimal("0.0001")  # 0.01%
_TOLERANCE_DENOMINATOR = 10_000  # |dv - staged| * 10000 <= |staged|: the same 0.01%, in integers
UNIT = 10 ** EXACT_DECIMAL.scale  # amounts are counted in millionths: exact for every raw amount
LOCATION_TABLE = LOCATION.target.table  # where the ledger's location lookup points
PER_LOCATION = LOCATION.name  # the column of location ids (named after the registry's location object)
AMOUNTS = ("sensei_all", "deleted", "quarantined", "unexplained", "sensei_staged", "dataverse", "deleted_kept")
KEYS = (PER_LOCATION, "measure")
AMOUNT = "amount"  # a row's amount, in millionths


@dataclass(frozen=True)
class Measure:
    """One amount field of an object in the ledger table. ``types``: source value -> option value of the entry
    type field ``type_field``; ``constant``: the object's constant entry type."""

    object: str
    amount_field: str
    column: str
    type_field: str | None
    types: Mapping[str, int | None]
    constant: int | None


def ledger_table(fmap: FieldMapFile) -> str:
    return f"{fmap.prefix}_billingledger"


def entry_type_column(fmap: FieldMapFile) -> str:
    return f"{fmap.prefix}_entrytype"


def entry_type_labels(plan: SchemaPlan, fmap: FieldMapFile) -> dict[int, str]:
    for table in plan.tables:
        if table.logical_name == ledger_table(fmap):
            for column in table.columns:
                if column.logical_name == entry_type_column(fmap):
                    return dict(column.options)
    raise ValueError(f"the schema plan has no {entry_type_column(fmap)} on {ledger_table(fmap)}")


def ledger_measures(fmap: FieldMapFile) -> list[Measure]:
    """Every Decimal field written into the ledger table, with how its entry type is known."""
    table, type_column = ledger_table(fmap), entry_type_column(fmap)
    out = []
    for name, om in fmap.objects.items():
        if om.mode != "upsert" or om.merge is not None or table not in om.tables or name not in OBJECTS:
            continue
        decimals = {f.name for f in OBJECTS[name].fields if f.type == "decimal"}
        type_field = next((f.name for f in om.fields.values() if f.written and type_column in f.targets), None)
        types = dict(om.fields[type_field].values) if type_field else {}
        constant = dict(om.constants).get(type_column)
        for f in om.fields.values():
            if f.name in decimals and f.written and f.targets:
                out.append(Measure(name, f.name, f.targets[0].lower(), type_field,
                                   {str(k): v for k, v in types.items()}, constant))
    return out


def _measure_name(m: Measure, labels: Mapping[int, str], option: int | None, several: bool) -> str:
    label = labels.get(option, "(unmapped type)") if option is not None else "(unmapped type)"
    if m.type_field is None or several:
        return f"{label} {m.amount_field.removesuffix('_amount').replace('_', ' ')}"
    return label


def _several(measures: Sequence[Measure], m: Measure) -> bool:
    return sum(x.object == m.object for x in measures) > 1


def to_units(value: Any) -> int | None:
    """A Decimal, int, float (Dataverse's JSON number: its shortest text is the decimal it was) or text, in
    millionths."""
    if value is None:
        return None
    amount = value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else str(value))
    return int((amount * UNIT).to_integral_value())


def _units_expr(column: str, dtype: pl.DataType | None) -> pl.Expr:
    """A raw amount column in millionths, exactly as received (never rounded to cents: a sub-cent amount that
    staging held back counts at its value). Text that is not an amount is null (staging quarantined those rows)."""
    return (exact_amount(pl.col(column), dtype) * UNIT).cast(pl.Int64)


# -- the two sides -------------------------------------------------------------------------------------------------
def sensei_rows(raw: Mapping[str, pl.DataFrame], staged_ids: Mapping[str, Sequence[str]],
                measures: Sequence[Measure], labels: Mapping[int, str],
                quarantined_ids: Mapping[str, Sequence[str]] | None = None) -> pl.DataFrame:
    """One row per (source row, measure): source_id, location, measure, amount (millionths) and its fate (staged,
    quarantined, deleted). ``quarantined_ids`` (object -> ids, from ``staging.quarantine``): without it every row
    neither staged nor deleted counts as quarantined."""
    parts = []
    for m in measures:
        frame = raw.get(m.object)
        if frame is None or frame.is_empty() or m.amount_field not in frame.columns:
            continue
        several = _several(measures, m)
        if m.type_field:
            option = pl.col(m.type_field).cast(pl.String).replace_strict(m.types, default=None, return_dtype=pl.Int64)
            names = {o: _measure_name(m, labels, o, several) for o in {*m.types.values(), None}}
            measure = option.replace_strict({k: v for k, v in names.items() if k is not None},
                                            default=names[None], return_dtype=pl.String)
        else:
            measure = pl.lit(_measure_name(m, labels, m.constant, several))
        deleted = (pl.col("is_deleted").fill_null(False).cast(pl.Boolean) if "is_deleted" in frame.columns
                   else pl.lit(False))
        staged = pl.col(SOURCE_ID).is_in(list(staged_ids.get(m.object, ())))
        held = (pl.col(SOURCE_ID).is_in(list(quarantined_ids.get(m.object, ()))) if quarantined_ids is not None
                else pl.lit(True))
        rows = frame.select(
            pl.col(PRIMARY_KEY).cast(pl.String).alias(SOURCE_ID),
            pl.col(OBJECTS[m.object].location_field or PRIMARY_KEY).cast(pl.String).fill_null(NO_LOCATION)
            .alias(PER_LOCATION),
            measure.alias("measure"),
            _units_expr(m.amount_field, frame.schema[m.amount_field]).fill_null(0).alias(AMOUNT),
            deleted.alias("deleted"))
        rows = rows.with_columns(staged.alias("staged")).with_columns(
            (~pl.col("staged") & ~pl.col("deleted") & held).alias("quarantined"))
        parts.append(rows)
    schema = {SOURCE_ID: pl.String, PER_LOCATION: pl.String, "measure": pl.String, AMOUNT: pl.Int64,
              "deleted": pl.Boolean, "staged": pl.Boolean, "quarantined": pl.Boolean}
    return pl.concat([pl.DataFrame(schema=schema), *parts], how="vertical_relaxed")


def dataverse_rows(client: DataverseClient, entity_set: str, fmap: FieldMapFile, measures: Sequence[Measure],
                   labels: Mapping[int, str], index: DataverseIndex) -> pl.DataFrame:
    """The ledger table's migrated rows as (source_id, location, measure, amount, entry_type), paged."""
    location_nav = f"_{fmap.prefix}_locationid_value"
    type_column = entry_type_column(fmap)
    columns = sorted({SOURCE_KEY, type_column, location_nav, *(m.column for m in measures)})
    locations = {guid: sid for sid, guid in index.ids(LOCATION_TABLE).items()}
    out = []
    for row in client.query(entity_set, columns):
        sid = row.get(SOURCE_KEY)
        if sid is None:
            continue
        option = row.get(type_column)
        guid = row.get(location_nav)
        location = NO_LOCATION if guid is None else locations.get(str(guid), f"(unknown {guid})")
        for m in measures:
            if row.get(m.column) is None:
                continue
            if (m.constant is not None and option != m.constant) or (m.type_field and option not in m.types.values()):
                continue
            out.append((str(sid), location, _measure_name(m, labels, option, _several(measures, m)),
                        to_units(row[m.column]), option))
    return pl.DataFrame(out, schema={SOURCE_ID: pl.String, PER_LOCATION: pl.String, "measure": pl.String,
                                     AMOUNT: pl.Int64, "entry_type": pl.Int64}, orient="row")


# -- totals and the check -----------------------------------------------------------------------------------------
def totals(sensei: pl.DataFrame, dataverse: pl.DataFrame) -> pl.DataFrame:
    """Per location and measure, then ``ALL`` per measure: the AMOUNTS columns, in millionths."""
    def sum_if(mask: pl.Expr, name: str) -> pl.Expr:
        return pl.when(mask).then(pl.col(AMOUNT)).otherwise(0).sum().alias(name)

    source = sensei.group_by(KEYS).agg(sum_if(pl.lit(True), "sensei_all"), sum_if(pl.col("deleted"), "deleted"),
                                       sum_if(pl.col("quarantined"), "quarantined"),
                                       sum_if(pl.col("staged"), "sensei_staged"))
    deleted_ids = sensei.filter(pl.col("deleted")).get_column(SOURCE_ID).unique()
    target = dataverse.with_columns(pl.col(SOURCE_ID).is_in(deleted_ids.implode()).alias("_deleted")).group_by(
        KEYS).agg(pl.col(AMOUNT).sum().alias("dataverse"), sum_if(pl.col("_deleted"), "deleted_kept"))
    per_location = source.join(target, on=list(KEYS), how="full", coalesce=True).with_columns(
        pl.col(c).fill_null(0).cast(pl.Int64) for c in AMOUNTS if c != "unexplained")
    # not staged, yet neither deleted nor quarantined: shown, so nothing is hidden between Sensei and staged
    per_location = per_location.with_columns(
        (pl.col("sensei_all") - pl.col("sensei_staged") - pl.col("quarantined") - pl.col("deleted"))
        .alias("unexplained"))
    overall = per_location.group_by("measure").agg(pl.col(c).sum() for c in AMOUNTS).with_columns(
        pl.lit(ALL).alias(PER_LOCATION))
    return pl.concat([per_location.select(*KEYS, *AMOUNTS), overall.select(*KEYS, *AMOUNTS)]).sort(
        pl.col(PER_LOCATION) == ALL, PER_LOCATION, "measure")


def _within_tolerance(data: Any) -> pl.LazyFrame:
    gap = (pl.col("dataverse") - pl.col("deleted_kept") - pl.col("sensei_staged")).abs()
    return data.lazyframe.select(gap * _TOLERANCE_DENOMINATOR <= pl.col("sensei_staged").abs())


def reconciliation_schema() -> pa.DataFrameSchema:
    """Whole millionths per (location, measure); Dataverse within 0.01% of the staged Sensei rows."""
    return pa.DataFrameSchema(
        {PER_LOCATION: pa.Column(pl.String), "measure": pa.Column(pl.String),
         **{c: pa.Column(pl.Int64, nullable=False) for c in AMOUNTS}},
        checks=[pa.Check(_within_tolerance, name="dataverse_within_0.01pct_of_sensei_staged")],
        unique=list(KEYS), strict=True, name="ledger_reconciliation")


@dataclass(frozen=True)
class Reconciliation:
    table: pl.DataFrame  # KEYS + AMOUNTS (millionths) + ok
    failures: dict[str, int]  # Pandera check -> failing rows

    @property
    def passed(self) -> bool:
        return not self.failures

    def markdown(self) -> str:
        return reconciliation_markdown(self.table)

    def quarantined_by_location(self) -> dict[str, str]:
        rows = self.table.group_by(PER_LOCATION).agg(pl.col("quarantined").sum()).sort(PER_LOCATION)
        return {loc: money(c) for loc, c in rows.iter_rows()}


def check_totals(table: pl.DataFrame) -> Reconciliation:
    """Validate ``table`` with :func:`reconciliation_schema`; ``ok`` marks the rows Pandera passed."""
    failing: set[int] = set()
    failures: dict[str, int] = {}
    try:
        reconciliation_schema().validate(table, lazy=True)
    except (SchemaErrors, SchemaError) as exc:  # its text quotes only totals, but is not re-raised anyway
        cases = exc.failure_cases
        if isinstance(cases, pl.DataFrame) and cases.height:
            for check, n in cases.group_by("check").len().iter_rows():
                failures[str(check)] = int(n)
            failing = {int(i) for i in cases.get_column("index").drop_nulls().to_list()}
        else:
            failures["schema"] = 1
    ok = pl.Series("ok", [i not in failing for i in range(table.height)], dtype=pl.Boolean)
    return Reconciliation(table.with_columns(ok), failures)


def money(units: int) -> str:
    """Millionths as an amount: two decimals, more only when the amount has them (``12.345``, never rounded)."""
    sign = "-" if units < 0 else ""
    whole, fraction = divmod(abs(units), UNIT)
    decimals = f"{fraction:06d}".rstrip("0").ljust(2, "0")
    return f"{sign}{whole:,}.{decimals}"


def reconciliation_markdown(table: pl.DataFrame, names: Mapping[str, str] | None = None) -> str:
    """One table per location (``ALL`` last): the quarantined column explains Sensei all vs staged."""
    names = names or {}
    sections = []
    for location in table.get_column(PER_LOCATION).unique(maintain_order=True).to_list():
        part = table.filter(pl.col(PER_LOCATION) == location)
        title = "All locations" if location == ALL else f"Location {names.get(location, location)} ({location})"
        lines = [f"### {title}", "",
                 "| measure | Sensei all | deleted in Sensei | quarantined | not staged, unexplained | Sensei staged | "
                 "Dataverse | deleted in Sensei, kept in Dataverse | difference | within 0.01% |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in part.iter_rows(named=True):
            lines.append(f"| {r['measure']} | " + " | ".join(money(r[c]) for c in AMOUNTS)
                         + f" | {money(r['dataverse'] - r['deleted_kept'] - r['sensei_staged'])} | "
                         + f"{'yes' if r.get('ok', True) else 'NO'} |")
        sections.append("\n".join(lines))
    return "\n\n".join(sections) if sections else "No ledger rows."


# -- one call: read, reconcile, repair once -------------------------------------------------------------------------
@dataclass(frozen=True)
class LedgerInputs:
    raw: Mapping[str, pl.DataFrame]  # raw ledger objects (ledger_transaction, claim)
    staged: Mapping[str, pl.DataFrame]  # their staged frames, as the writers loaded them
    quarantined_ids: Mapping[str, Sequence[str]] | None = None


def reconcile(client: DataverseClient, inputs: LedgerInputs, fmap: FieldMapFile, plan: SchemaPlan,
              entity_sets: Mapping[str, str], index: DataverseIndex) -> tuple[Reconciliation, pl.DataFrame]:
    """The reconciliation, and Dataverse's rows (for :func:`rows_to_repair`)."""
    measures, labels = ledger_measures(fmap), entry_type_labels(plan, fmap)
    staged_ids = {k: v.get_column(SOURCE_ID).cast(pl.String).to_list() for k, v in inputs.staged.items()}
    source = sensei_rows(inputs.raw, staged_ids, measures, labels, inputs.quarantined_ids)
    target = dataverse_rows(client, entity_sets[ledger_table(fmap)], fmap, measures, labels, index)
    return check_totals(totals(source, target)), target


def rows_to_repair(inputs: LedgerInputs, dataverse: pl.DataFrame, fmap: FieldMapFile, plan: SchemaPlan
                   ) -> dict[str, list[str]]:
    """Per object, staged source ids whose amounts, entry types or locations Dataverse lacks or holds differently."""
    measures, labels = ledger_measures(fmap), entry_type_labels(plan, fmap)
    staged_ids = {k: v.get_column(SOURCE_ID).cast(pl.String).to_list() for k, v in inputs.staged.items()}
    expected = sensei_rows(inputs.raw, staged_ids, measures, labels).filter(pl.col("staged"))
    out: dict[str, list[str]] = {}
    for name in sorted({m.object for m in measures}):
        ids = set(staged_ids.get(name, ()))
        mine = expected.filter(pl.col(SOURCE_ID).is_in(sorted(ids))).select(SOURCE_ID, *KEYS, AMOUNT)
        there = dataverse.filter(pl.col(SOURCE_ID).is_in(sorted(ids))).select(SOURCE_ID, *KEYS, AMOUNT)
        differ = pl.concat([mine.join(there, on=[SOURCE_ID, *KEYS, AMOUNT], how="anti"),
                            there.join(mine, on=[SOURCE_ID, *KEYS, AMOUNT], how="anti")])
        if differ.height:
            out[name] = sorted(set(differ.get_column(SOURCE_ID).to_list()))
    return out


@dataclass(frozen=True)
class RepairOutcome:
    first: Reconciliation
    final: Reconciliation
    repaired: dict[str, list[str]]  # object -> source ids rewritten (empty when the first pass passed)
    written: list[RecordOutcome]  # the repair's outcomes, for the load journal

    @property
    def failed_rows(self) -> int:
        """Rewrites Dataverse refused."""
        return sum(r.outcome == "failed" for r in self.written)

    @property
    def passed(self) -> bool:
        return self.final.passed

    @property
    def rerun(self) -> bool:
        return not self.first.passed


def reconcile_and_repair(writer: WriteContext | None, inputs: LedgerInputs, fmap: FieldMapFile, plan: SchemaPlan,
                         entity_sets: Mapping[str, str], index: DataverseIndex, *,
                         owners: OwnerMap | None = None) -> RepairOutcome:
    """Reconcile; on failure rewrite the differing staged ledger rows once with ``writer`` (None: no re-run, as
    when the map's gate is closed) and reconcile again."""
    client = index.client
    first, target = reconcile(client, inputs, fmap, plan, entity_sets, index)
    if first.passed or writer is None:
        return RepairOutcome(first, first, {}, [])
    repair = rows_to_repair(inputs, target, fmap, plan)
    written = repair_rows(writer, inputs, repair, fmap, owners)
    index.forget(ledger_table(fmap))
    final, _ = reconcile(client, inputs, fmap, plan, entity_sets, index)
    return RepairOutcome(first, final, repair, written)


def repair_rows(writer: WriteContext, inputs: LedgerInputs, repair: Mapping[str, Sequence[str]],
                fmap: FieldMapFile, owners: OwnerMap | None = None) -> list[RecordOutcome]:
    """Rewrite the ``repair`` rows (object -> source ids), parents first, audited. The journal is not consulted:
    Dataverse was just found to differ from what it says was sent, so each row is looked up by key and written
    whole (an update with its before-image, or a create when the row is gone)."""
    ids = {sid for sids in repair.values() for sid in sids}
    ctx = replace(writer, previous={}, audited=lambda _table: ids)
    out: list[RecordOutcome] = []
    for obj in load_order():
        if obj.name in repair:
            rows = inputs.staged[obj.name].filter(pl.col(SOURCE_ID).cast(pl.String).is_in(list(repair[obj.name])))
            out += write_object(ctx, fmap.objects[obj.name], rows, owners=owners)
    return out


__all__ = ["ALL", "AMOUNT", "AMOUNTS", "CHECK_NAME", "UNIT", "LedgerInputs", "Measure", "Reconciliation", "RepairOutcome", "check_totals",
           "dataverse_rows", "entry_type_labels", "ledger_measures", "ledger_table", "money", "reconcile",
           "reconcile_and_repair", "reconciliation_markdown", "reconciliation_schema", "repair_rows", "rows_to_repair",
           "sensei_rows", "to_units", "totals"]
