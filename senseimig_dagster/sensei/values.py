"""How source text becomes typed values: the one parser the extraction's caster (``records.cast_series``) and
staging's cleaners (``staging/values``) share.

Each parser is a Polars expression giving a struct ``{value, variant}``: ``value`` is null when the text is not a
value of the type (the caller names the reason), ``variant`` names how the text departed from the wire's canonical
form (``sensei/wire.py``) when it was still read without doubt, and is null for canonical text. Variants are counted
in the extraction's metadata; none changes a value: money is exact (never rounded), a time with an offset is the
same instant in UTC.

| type     | read besides the canonical form                                                                        |
|----------|--------------------------------------------------------------------------------------------------------|
| decimal  | ``$1,234.56`` (currency symbol, thousands separators), ``(12.00)`` (accounting negative), ``+5``, up  |
|          | to 6 decimals exactly (``more_than_two_decimals``: staging holds it back, a person decides)            |
| int      | ``+12``, ``1,234``, ``12.0``                                                                           |
| bool     | true/false, yes/no, y/n, t/f, 1/0 in any case                                                          |
| date     | ISO ``2025-05-06`` and US ``05/06/2025`` on both paths                                                 |
| datetime | ISO 8601 with a fraction or an offset, a space for ``T``, no zone (UTC), epoch seconds or milliseconds |
"""

from __future__ import annotations

from typing import Literal

import polars as pl

from senseimig_dagster.sensei.wire import CSV_DATE_FORMAT, CSV_FALSE, CSV_TRUE, DATETIME_FORMAT, EXACT_DECIMAL

Flavor = Literal["json", "csv"]
VALUE, VARIANT = "value", "variant"
ISO_DATE_FORMAT = "%Y-%m-%d"

_TRUE = ("true", "yes", "y", "t", "1")
_FALSE = ("false", "no", "n", "f", "0")
_CURRENCY = r"[$€£]"


def _variant(*labels: tuple[pl.Expr, str]) -> pl.Expr:
    """The labels whose mask holds, joined with ``+``; null when none does."""
    parts = [pl.when(mask.fill_null(False)).then(pl.lit(label)) for mask, label in labels]
    joined = pl.concat_str(parts, separator="+", ignore_nulls=True)
    return pl.when(joined != "").then(joined)


def _result(value: pl.Expr, variant: pl.Expr) -> pl.Expr:
    return pl.struct(value.alias(VALUE), pl.when(value.is_not_null()).then(variant).cast(pl.String).alias(VARIANT))


def decimal(text: pl.Expr) -> pl.Expr:
    """An exact decimal (``EXACT_DECIMAL``) from the renderings in the module's table; anything ambiguous (``1,23``,
    ``1e3``, more than 6 decimals) is not a value."""
    t = text.str.strip_chars()
    parens = t.str.contains(r"^\(.*\)$")
    inner = pl.when(parens).then(t.str.strip_prefix("(").str.strip_suffix(")")).otherwise(t).str.strip_chars()
    symbol = inner.str.contains(_CURRENCY)
    bare = inner.str.replace_all(_CURRENCY, "").str.replace_all(r"\s", "")
    grouped = bare.str.contains(",")
    digits = bare.str.replace_all(",", "")
    exact = digits.str.replace(r"(\.\d*?)0+$", "$1").str.strip_suffix(".")  # 12.3400 is 12.34
    well_formed = (exact.str.contains(r"^[-+]?\d{1,12}(\.\d{1,6})?$")
                   & (~grouped | bare.str.contains(r"^[-+]?\d{1,3}(,\d{3})+(\.\d+)?$"))
                   & ~(parens & exact.str.contains(r"^[-+]")))
    signed = pl.when(parens).then(pl.lit("-") + exact).otherwise(exact.str.strip_prefix("+"))
    value = pl.when(well_formed).then(signed).cast(EXACT_DECIMAL, strict=False)
    variant = _variant((parens, "accounting_negative"), (symbol, "currency_symbol"),
                       (grouped, "thousands_separator"), (bare.str.starts_with("+"), "leading_plus"),
                       (exact.str.contains(r"\.\d{3,}$"), "more_than_two_decimals"))
    return _result(value, variant)


def integer(text: pl.Expr) -> pl.Expr:
    t = text.str.strip_chars()
    grouped = t.str.contains(r"^[-+]?\d{1,3}(,\d{3})+$")
    whole = t.str.contains(r"^[-+]?\d+\.0*$")
    digits = pl.when(grouped).then(t.str.replace_all(",", "")).when(whole).then(t.str.replace(r"\.0*$", "")
                                                                                ).otherwise(t)
    value = digits.str.strip_prefix("+").cast(pl.Int64, strict=False)
    variant = _variant((grouped, "thousands_separator"), (whole, "decimal_point"),
                       (t.str.starts_with("+"), "leading_plus"))
    return _result(value, variant)


def boolean(text: pl.Expr, flavor: Flavor) -> pl.Expr:
    t = text.str.strip_chars()
    lower = t.str.to_lowercase()
    value = pl.when(lower.is_in(_TRUE)).then(True).when(lower.is_in(_FALSE)).then(False).otherwise(None)
    canonical = (CSV_TRUE, CSV_FALSE) if flavor == "csv" else ("true", "false")
    return _result(value.cast(pl.Boolean), _variant((~t.is_in(canonical), "other_rendering")))


def date(text: pl.Expr, flavor: Flavor) -> pl.Expr:
    t = text.str.strip_chars()
    iso = t.str.to_date(ISO_DATE_FORMAT, strict=False)
    us = t.str.to_date(CSV_DATE_FORMAT, strict=False)
    value = pl.coalesce(iso, us)
    other = us.is_not_null() if flavor == "json" else iso.is_not_null() & us.is_null()
    return _result(value, _variant((other, "iso_date" if flavor == "csv" else "us_date")))


def datetime(text: pl.Expr) -> pl.Expr:
    """An instant in UTC: ISO 8601 (a fraction, an offset, a space for ``T``, no zone: UTC), epoch seconds or
    milliseconds."""
    t = text.str.strip_chars()
    fast = t.str.to_datetime(DATETIME_FORMAT, time_zone="UTC", strict=False)
    iso = t.str.replace(r"^(\d{4}-\d{2}-\d{2}) ", "${1}T")
    zoned = iso.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%#z", time_zone="UTC", strict=False)
    naive = iso.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False).dt.replace_time_zone("UTC")
    seconds = t.str.contains(r"^\d{9,10}$")
    millis = t.str.contains(r"^\d{12,13}$")
    epoch = pl.when(seconds).then(t.cast(pl.Int64, strict=False) * 1_000_000).when(millis).then(
        t.cast(pl.Int64, strict=False) * 1_000).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    value = pl.coalesce(fast, zoned, naive, epoch)
    slow = fast.is_null()
    variant = _variant((slow & zoned.is_not_null() & t.str.contains(r"[+-]\d{2}:?\d{2}$"), "utc_offset"),
                       (slow & t.str.contains(r"^\d{4}-\d{2}-\d{2} "), "space_separator"),
                       (slow & zoned.is_null() & naive.is_not_null(), "no_time_zone"),
                       (slow & seconds, "epoch_seconds"), (slow & millis, "epoch_milliseconds"))
    return _result(value, variant)


def _canonical(type_: str, text: pl.Series, flavor: Flavor) -> pl.Series:
    """The wire's own form only, read fast; null for anything else (the general parser reads that)."""
    if type_ == "decimal":
        return text.set(~text.str.contains(r"^-?\d{1,12}\.\d{2}$").fill_null(False), None).cast(EXACT_DECIMAL)
    if type_ == "int":
        return text.set(~text.str.contains(r"^-?\d{1,18}$").fill_null(False), None).cast(pl.Int64, strict=False)
    if type_ == "bool":
        true, false = (CSV_TRUE, CSV_FALSE) if flavor == "csv" else ("true", "false")
        return text.replace_strict({true: True, false: False}, default=None, return_dtype=pl.Boolean)
    if type_ == "date":
        return text.str.to_date(CSV_DATE_FORMAT if flavor == "csv" else ISO_DATE_FORMAT, strict=False)
    return text.str.to_datetime(DATETIME_FORMAT, time_zone="UTC", strict=False)


def parse(type_: str, text: pl.Series, flavor: Flavor) -> tuple[pl.Series, pl.Series | None]:
    """A column of trimmed source text as ``type_`` (decimal, int, bool, date, datetime) and the variant of each
    value (None when every value was canonical). The canonical form is read first, vectorised; the general parser
    runs only on what that did not read."""
    fast = _canonical(type_, text, flavor)
    rest = (fast.is_null() & text.is_not_null()).arg_true()
    if rest.is_empty():
        return fast, None
    general = {"decimal": decimal, "int": integer, "date": lambda e: date(e, flavor),
               "bool": lambda e: boolean(e, flavor), "datetime": datetime}[type_]
    parsed = text.gather(rest).to_frame("t").select(general(pl.col("t"))).to_series()
    value = fast.scatter(rest, parsed.struct.field(VALUE).cast(fast.dtype))
    variant = pl.Series(VARIANT, [None] * text.len(), pl.String).scatter(rest, parsed.struct.field(VARIANT))
    return value, variant
