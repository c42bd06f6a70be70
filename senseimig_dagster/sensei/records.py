"""From source text to typed rows: one vectorised caster shared by the REST and CSV paths.

Both readers first build a frame of *strings* (one column per registry field, plus where each row came from and the
row as received), then call :func:`cast_batch`. It types every column with Polars, and routes each row that cannot
be landed to a :class:`Reject` with a named reason instead of failing the run or dropping it:

- ``wrong_type``: a value that does not parse as its registry type (the message names field and expected type,
  never the value: values may be PHI);
- ``missing_primary_key`` / ``missing_modified_at``: a row without ``id`` or ``updated_at`` cannot be keyed or
  partitioned;
- ``duplicate_primary_key`` / ``duplicate_identical``: a second copy of an id in the same batch; the copy with the
  latest ``updated_at`` lands (the last one received wins a tie); a copy identical to it collapses into it
  (``duplicate_identical``, counted), one with other values is rejected, so that received = landed + rejected;
- ``malformed_record`` / ``malformed_row`` (raised by the readers): a JSON record that is not an object, a CSV
  record with the wrong number of fields or cut short.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import polars as pl

from senseimig_dagster.objects import MODIFIED_AT, PRIMARY_KEY, FieldType, SenseiObject
from senseimig_dagster.sensei import values

Flavor = Literal["json", "csv"]

SOURCE_REF = "_source_ref"  # "page 3 row 12" / "line 1042": where a row came from, for errors and rejects
EXTRA = "_extra"  # JSON text of fields the registry does not know (kept, never dropped), or null
RAW = "_raw"  # the row as received; only ever stored in the local reject table
# What every landed raw row carries besides the source's fields, and its DuckDB type.
LINEAGE_COLUMNS = {EXTRA: "JSON", SOURCE_REF: "VARCHAR", "_source": "VARCHAR", "_extracted_at": "TIMESTAMPTZ",
                   "_run_id": "VARCHAR", "_ordinal": "BIGINT"}

DUPLICATE_PRIMARY_KEY = "duplicate_primary_key"  # a conflicting copy of an id: the newest was kept
DUPLICATE_IDENTICAL = "duplicate_identical"  # an identical copy of an id: collapsed, nothing to review
DUPLICATE_REASONS = (DUPLICATE_PRIMARY_KEY, DUPLICATE_IDENTICAL)

REJECT_SCHEMA: dict[str, pl.DataType] = {
    "object": pl.String(), "source_id": pl.String(), "source_ref": pl.String(), "reason": pl.String(),
    "field": pl.String(), "message": pl.String(), "raw": pl.String(), "modified_at": pl.Datetime("us", "UTC"),
}


@dataclass(frozen=True)
class Reject:
    object: str
    source_id: str | None
    source_ref: str
    reason: str
    field: str | None
    message: str  # safe to log: names object, place, field and cause, never a value
    raw: str
    modified_at: dt.datetime | None = None  # the row's updated_at when it could be read: decides its partition


@dataclass
class Batch:
    """Typed rows ready to land (registry columns + ``_extra`` + ``_source_ref``) and the rows that were not."""

    object: str
    frame: pl.DataFrame
    rejects: list[Reject] = field(default_factory=list)
    variants: dict[str, int] = field(default_factory=dict)  # "field: variant" -> landed rows read from it

    @property
    def received(self) -> int:
        return self.frame.height + len(self.rejects)


def rejects_frame(rejects: list[Reject]) -> pl.DataFrame:
    return pl.DataFrame([r.__dict__ for r in rejects], schema=REJECT_SCHEMA)


def parse_datetimes(text: pl.Series) -> pl.Series:
    """ISO 8601 (and the other renderings ``values.datetime`` reads) to UTC."""
    return values.parse("datetime", text, "json")[0]


def cast_series(type_: FieldType, text: pl.Series, flavor: Flavor) -> pl.Series:
    """One column of source text as its registry type; a value that does not parse becomes null."""
    return cast_with_variants(type_, text, flavor)[0]


def cast_with_variants(type_: FieldType, text: pl.Series, flavor: Flavor) -> tuple[pl.Series, pl.Series | None]:
    """One column as its registry type, and how each value was rendered when not in the wire's own form."""
    if type_ in ("uuid", "str", "text"):
        return text, None
    if type_ == "json":
        # Canonical (minified) JSON, so the API and the export land identical values. Registry JSON fields hold
        # arrays or objects; a bare scalar (json_path_match would strip a string's quotes) is a wrong type.
        container = text.str.strip_chars().str.contains(r"^[\[{]")
        return text.str.json_path_match("$").set(~container.fill_null(False), None), None
    if type_ in ("int", "decimal", "bool", "date", "datetime"):
        return values.parse(type_, text.str.strip_chars(), flavor)
    raise ValueError(f"no cast for field type {type_!r}")


def _blank_to_null(type_: FieldType, text: pl.Series, flavor: Flavor) -> pl.Series:
    # A blank typed value is null in both paths; an empty CSV field is null for text too (CSV cannot tell them
    # apart), while JSON keeps "" for text because it can.
    if type_ not in ("uuid", "str", "text"):
        return text.set(text.str.strip_chars() == "", None)
    if flavor == "csv":
        return text.set(text == "", None)
    return text


def cast_batch(obj: SenseiObject, text: pl.DataFrame, flavor: Flavor) -> Batch:
    """Type a frame of strings (registry fields, ``_extra``, ``_source_ref``, ``_raw``) into a :class:`Batch`."""
    height = text.height
    source = {f.name: _blank_to_null(f.type, text.get_column(f.name), flavor) if f.name in text.columns
              else pl.Series(f.name, [None] * height, pl.String) for f in obj.fields}
    cast = {f.name: cast_with_variants(f.type, source[f.name], flavor) for f in obj.fields}
    typed = {name: value.alias(name) for name, (value, _) in cast.items()}
    # The first problem of each row, in registry order; null when the row is clean.
    checks = [(source[PRIMARY_KEY].is_null(), f"missing_primary_key:{PRIMARY_KEY}"),
              (source[MODIFIED_AT].is_null(), f"missing_modified_at:{MODIFIED_AT}")]
    checks += [(source[f.name].is_not_null() & typed[f.name].is_null(), f"wrong_type:{f.name}")
               for f in obj.fields if f.type not in ("uuid", "str", "text")]
    problem = pl.select(pl.coalesce([pl.when(pl.lit(mask)).then(pl.lit(label)) for mask, label in checks if
                                     mask.any()] or [pl.lit(None, pl.String)])).to_series()
    if problem.len() != height:  # no problem at all: a literal null
        problem = pl.Series("problem", [None] * height, pl.String)
    found = {name: variant for name, (_, variant) in cast.items() if variant is not None}
    frame = pl.DataFrame([*typed.values(), text.get_column(EXTRA), text.get_column(SOURCE_REF),
                          text.get_column(RAW), problem.alias("problem"),
                          *(v.alias(f"_variant_{n}") for n, v in found.items())])
    bad = frame.filter(pl.col("problem").is_not_null())
    clean = frame.filter(pl.col("problem").is_null()).drop("problem")
    variants = _count_variants(clean, found)
    rejects = [_reject(obj, row) for row in bad.iter_rows(named=True)]
    if clean.get_column(PRIMARY_KEY).is_duplicated().any():
        clean, copies = _collapse_duplicates(obj, clean)
        rejects += copies
    return Batch(obj.name, clean.select([*obj.field_names, EXTRA, SOURCE_REF]), rejects, variants)


def _count_variants(clean: pl.DataFrame, found: dict[str, pl.Series]) -> dict[str, int]:
    """``field: variant`` -> rows read from that rendering, over the rows that land."""
    counts: dict[str, int] = {}
    for name in found:
        column = clean.get_column(f"_variant_{name}").drop_nulls()
        for variant, n in column.value_counts().iter_rows():
            counts[f"{name}: {variant}"] = n
    return counts


def _reject(obj: SenseiObject, row: dict) -> Reject:
    reason, field_name = row["problem"].split(":", 1)
    if reason == "wrong_type":
        message = (f"{obj.name} {row[SOURCE_REF]}: field {field_name!r} is not a valid "
                   f"{obj.field(field_name).type}")
    else:
        message = f"{obj.name} {row[SOURCE_REF]}: required field {field_name!r} is missing"
    return Reject(obj.name, row[PRIMARY_KEY] if reason != "missing_primary_key" else None, row[SOURCE_REF],
                  reason, field_name, message, row[RAW], row[MODIFIED_AT])


def _collapse_duplicates(obj: SenseiObject, clean: pl.DataFrame) -> tuple[pl.DataFrame, list[Reject]]:
    """One row per id: the newest by ``updated_at``, the copy received last on a tie. The others are accounted for:
    a copy identical to the kept one (every field and ``_extra``) collapses into it (``duplicate_identical``),
    a conflicting one is rejected (``duplicate_primary_key``): never silently merged away."""
    content = [*obj.field_names, EXTRA]
    order = clean.select(PRIMARY_KEY, MODIFIED_AT, pl.struct(content).hash().alias("_content")).with_row_index(
        "_order")
    kept = order.sort([MODIFIED_AT, "_order"]).unique(PRIMARY_KEY, keep="last")
    dropped = order.filter(~pl.col("_order").is_in(kept.get_column("_order").implode()))
    identical = dropped.join(kept.select(PRIMARY_KEY, "_content"), on=[PRIMARY_KEY, "_content"], how="semi")
    same = set(identical.get_column("_order").to_list())
    rows = clean.with_row_index("_order").filter(pl.col("_order").is_in(dropped.get_column("_order").implode()))
    copies = [_duplicate(obj, row, row["_order"] in same) for row in rows.iter_rows(named=True)]
    keep = pl.Series([False] * clean.height).scatter(kept.get_column("_order"), True)
    return clean.filter(keep), copies


def _duplicate(obj: SenseiObject, row: dict, identical: bool) -> Reject:
    if identical:
        message = (f"{obj.name} {row[SOURCE_REF]}: id {row[PRIMARY_KEY]} is an identical copy of a record "
                   "received in the same batch; collapsed into it")
        reason = DUPLICATE_IDENTICAL
    else:
        message = (f"{obj.name} {row[SOURCE_REF]}: id {row[PRIMARY_KEY]} appears again in the same batch with an "
                   f"equal or later {MODIFIED_AT} and other values; the later copy was kept")
        reason = DUPLICATE_PRIMARY_KEY
    return Reject(obj.name, row[PRIMARY_KEY], row[SOURCE_REF], reason, PRIMARY_KEY, message, row[RAW],
                  row[MODIFIED_AT])


@dataclass
class Extraction:
    """A lazily read extraction of one object over one modification window: batches stream into DuckDB.

    ``source_count`` is what the source itself says it holds for this window (the API's ``total_count``; an
    export's row count when the window is unbounded), or None when the source cannot say; when known, a run shows
    whether received = landed + rejected matches it.
    """

    object: str
    source: Literal["api", "export"]
    batches: Iterable[Batch]
    source_count: int | None = None
