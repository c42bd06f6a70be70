"""Vectorised value cleaners: each returns a Polars struct expression ``{value, reason}``.

``value`` is the cleaned value (typed for Dataverse) and ``reason`` a quarantine reason code from
:mod:`senseimig_dagster.staging.quarantine`, null when the value is fine. When a value has several problems the most
severe one is reported (a cleaner lists its checks in that order). Cleaners never drop rows and never read values
into Python one by one, except phones and e-mails, whose libraries are per-value: those map over the column's
*distinct* values and hash-join the results back (cost O(n) + O(distinct × parse)).

Apply them with :func:`senseimig_dagster.staging.values.check.run_checks`, which turns reasons into quarantine
rows and nulls fields or quarantines rows by each reason's severity. Evaluate cleaners in a lazy query
(``frame.lazy().select(...).collect()``, as ``run_checks`` does): their when/then chains reuse subexpressions,
which only the lazy engine computes once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl

VALUE, REASON = "value", "reason"


def cleaned(value: pl.Expr, reason: pl.Expr) -> pl.Expr:
    """The ``{value, reason}`` struct every cleaner returns."""
    return pl.struct(value.alias(VALUE), reason.cast(pl.String).alias(REASON))


def first_reason(*checks: tuple[pl.Expr, str]) -> pl.Expr:
    """The code of the first check whose mask is true, else null (a null mask counts as false)."""
    expr: pl.Expr = pl.lit(None, pl.String)
    for mask, code in reversed(checks):
        expr = pl.when(mask.fill_null(False)).then(pl.lit(code)).otherwise(expr)
    return expr


def map_distinct(values: pl.Expr, parse: Callable[[str], tuple[Any, str | None]], value_dtype: pl.DataType
                 ) -> pl.Expr:
    """A per-value Python parser made columnar: ``parse`` runs once per distinct non-null string and the results
    are hash-joined back, so 1M rows with 100k distinct values cost 100k parses plus a join."""

    def batch(column: pl.Series) -> pl.Series:
        distinct = column.drop_nulls().unique()
        parsed = [parse(v) for v in distinct]
        table = pl.DataFrame({"_key": distinct, VALUE: [p[0] for p in parsed], REASON: [p[1] for p in parsed]},
                             schema={"_key": pl.String, VALUE: value_dtype, REASON: pl.String})
        joined = column.alias("_key").to_frame().join(table, on="_key", how="left", maintain_order="left")
        return joined.select(pl.struct(VALUE, REASON)).to_series()

    struct_type = pl.Struct({VALUE: value_dtype, REASON: pl.String})
    # Not elementwise: the engine must hand over the whole column, or each chunk would parse its own distinct set.
    return values.cast(pl.String).map_batches(batch, return_dtype=struct_type)
