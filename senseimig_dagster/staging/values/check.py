"""Apply cleaners to a frame: cleaned columns, quarantine rows, and rows in = rows out + rows quarantined.

O(n × checks): every check is one vectorised column expression; the Python loop runs over checks and the few
distinct reason codes each produces, never over rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import polars as pl

from senseimig_dagster.objects import PRIMARY_KEY
from senseimig_dagster.staging import quarantine as q
from senseimig_dagster.staging.values import REASON, VALUE


@dataclass(frozen=True)
class Check:
    """One field's cleaner. ``expr`` is a ``{value, reason}`` struct built on the frame's columns; ``value``
    replaces ``field``. ``detail`` fills the messages' ``{detail}`` (a limit, a range); ``severity`` overrides a
    reason's default for this field (e.g. ``{"orphan_reference": "row"}`` for a required parent)."""

    field: str
    expr: pl.Expr
    detail: str = ""
    severity: Mapping[str, q.Severity] = field(default_factory=dict)


@dataclass(frozen=True)
class RowRule:
    """A frame-level finding (``refs.orphans``, ``refs.duplicate_ids``): a mask over rows and the reason."""

    field: str
    code: str
    mask: pl.Series
    detail: str = ""
    severity: q.Severity | None = None


@dataclass(frozen=True)
class Staged:
    clean: pl.DataFrame  # rows that go on, cleaned
    quarantine: pl.DataFrame  # every finding, warnings included (QUARANTINE_SCHEMA)
    rows_in: int
    rows_quarantined: int  # rows with at least one ``row`` finding; never in ``clean``

    @property
    def conserved(self) -> bool:
        return self.rows_in == self.clean.height + self.rows_quarantined


def run_checks(frame: pl.DataFrame, obj: str, checks: Sequence[Check], rules: Sequence[RowRule] = (), *,
               id_column: str = PRIMARY_KEY, keep_row_index: bool = False) -> Staged:
    """Clean ``frame`` (rows of Sensei object ``obj``) with ``checks`` and frame-level ``rules``.

    Per finding, by its effective severity: ``warning`` keeps the cleaned value, ``field`` nulls the field,
    ``row`` moves the row out of ``clean``. Each finding is a quarantine row carrying the field's raw value.
    ``keep_row_index`` keeps a ``_row`` column (position in ``frame``) in the quarantine frame, for accounting.
    """
    indexed = frame.with_row_index("_row")
    # Lazy, so that common subexpressions inside the cleaners are computed once (about 6x faster than eager); one
    # query per check, because one select of every check measured 2x slower on 400k rows (benchmarks/staging.py).
    lazy = indexed.lazy()
    outcomes = pl.collect_all([lazy.select(c.expr.alias(f"_check{i}")) for i, c in enumerate(checks)])
    results = pl.concat([indexed.select("_row", pl.col(id_column)), *outcomes], how="horizontal")
    findings: list[pl.DataFrame] = []
    drop = pl.Series("_drop", [False] * frame.height, dtype=pl.Boolean)  # typed: an empty frame too
    replacements: list[pl.Series] = []
    field_nulls: list[tuple[str, pl.Series]] = []
    for i, check in enumerate(checks):
        outcome = results.get_column(f"_check{i}")
        value, reason = outcome.struct.field(VALUE), outcome.struct.field(REASON)
        nulled = pl.Series([False] * frame.height, dtype=pl.Boolean)
        for code in reason.drop_nulls().unique().sort():
            severity = check.severity.get(code, q.reason(code).severity)
            mask = (reason == code).fill_null(False)
            findings.append(_findings(indexed, obj, check.field, code, mask, check.detail, severity, id_column))
            if severity == "row":
                drop = drop | mask
            elif severity == "field":
                nulled = nulled | mask
        replacements.append(value.set(nulled, None).alias(check.field))
    for rule in rules:
        severity = rule.severity or q.reason(rule.code).severity
        findings.append(_findings(indexed, obj, rule.field, rule.code, rule.mask, rule.detail, severity, id_column))
        if severity == "row":
            drop = drop | rule.mask.fill_null(False)
        elif severity == "field" and rule.field in frame.columns:
            field_nulls.append((rule.field, rule.mask.fill_null(False)))
    cleaned_frame = frame.with_columns(replacements) if replacements else frame
    for name, mask in field_nulls:  # after the checks, which may have replaced the same column
        cleaned_frame = cleaned_frame.with_columns(cleaned_frame.get_column(name).set(mask, None))
    found = pl.concat(findings) if findings else q.empty().with_columns(pl.lit(None, pl.UInt32).alias("_row"))
    found = found.sort("_row", maintain_order=True)
    return Staged(cleaned_frame.filter(~drop), found if keep_row_index else found.drop("_row"), frame.height,
                  int(drop.sum()))


def _findings(indexed: pl.DataFrame, obj: str, field_name: str, code: str, mask: pl.Series, detail: str,
              severity: q.Severity, id_column: str) -> pl.DataFrame:
    rows = q.from_mask(indexed, obj, field_name, code, mask, id_column=id_column, detail=detail, severity=severity)
    return rows.with_columns(indexed.filter(mask.fill_null(False)).get_column("_row"))
