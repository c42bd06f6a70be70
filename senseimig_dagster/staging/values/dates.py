"""Dates in a plausible range and local wall-clock times to UTC.

The API and export carry UTC datetimes (``sensei/wire.py``); :func:`local_to_utc` is for sources that give the
practice's wall-clock time, which only the location's IANA zone can place. All O(n); the per-zone conversion loops
over the few distinct zones, not over rows.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from senseimig_dagster.sensei import values
from senseimig_dagster.staging.values import REASON, VALUE, cleaned, first_reason

EARLIEST = dt.date(1900, 1, 1)
_ONE_HOUR = pl.duration(hours=1)


def years_after(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def default_range(today: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """1900-01-01 .. today + 2 years: birth dates, service dates and posting dates all fall inside."""
    return EARLIEST, years_after(today or dt.date.today(), 2)


def describe_range(earliest: dt.date, latest: dt.date) -> str:
    """The ``detail`` for a date_out_of_range message."""
    return f"{earliest.isoformat()}..{latest.isoformat()}"


def clean_date(day: pl.Expr, earliest: dt.date | None = None, latest: dt.date | None = None, *,
               dtype: pl.DataType | None = None) -> pl.Expr:
    """A Date within ``[earliest, latest]`` (defaults: :func:`default_range`).

    Accepts Date columns and text (ISO ``2025-05-06`` or the export's US ``05/06/2025``); text that is neither is
    ``invalid_date``. Out of range is ``date_out_of_range``; both leave the value null. ``dtype`` ``Date`` (the
    raw layer's type) skips the text round trip.
    """
    low, high = default_range()
    low, high = earliest or low, latest or high
    if dtype == pl.Date:
        parsed, invalid = day, pl.lit(False)
    else:
        text = day.cast(pl.String).str.strip_chars()
        parsed = values.date(text, "json").struct.field(values.VALUE)  # the extraction's parser
        invalid = text.is_not_null() & (text != "") & parsed.is_null()
    out_of_range = (parsed < low) | (parsed > high)
    reason = first_reason((invalid, "invalid_date"),
                          (out_of_range, "date_out_of_range"))
    return cleaned(pl.when(reason.is_null()).then(parsed), reason)


def _zone_to_utc(local: pl.Series, zone: str) -> tuple[pl.Series, pl.Series]:
    """UTC instants and a gap flag for naive wall-clock times in one zone. DST-ambiguous times (the repeated hour
    in autumn) take the earliest instant; times in the spring gap do not exist and move forward one hour, as
    zoneinfo's fold=0 does."""
    frame = local.to_frame("local").select(
        pl.col("local").dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null").alias("first"),
        (pl.col("local") + _ONE_HOUR).dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null")
        .alias("shifted"), pl.col("local").is_not_null().alias("present"))
    gap = frame.select(pl.col("present") & pl.col("first").is_null()).to_series()
    utc = frame.select(pl.coalesce("first", "shifted").dt.convert_time_zone("UTC")).to_series()
    return utc, gap


def _known_zone(zone: str) -> bool:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def local_to_utc(local: pl.Expr, zone: pl.Expr | str) -> pl.Expr:
    """Naive local datetimes to ``Datetime(us, UTC)`` using a fixed zone or a per-row zone column.

    Reasons: ``nonexistent_local_time`` (moved forward one hour, a warning), ``unknown_time_zone`` (value null).
    Already-aware input is converted to UTC as is.
    """
    zone_expr = pl.lit(zone) if isinstance(zone, str) else zone
    out_type = pl.Struct({VALUE: pl.Datetime("us", "UTC"), REASON: pl.String})

    def batch(pair: pl.Series) -> pl.Series:
        times, zones = pair.struct.field("local"), pair.struct.field("zone")
        if isinstance(times.dtype, pl.Datetime) and times.dtype.time_zone is not None:
            utc = times.dt.convert_time_zone("UTC").cast(pl.Datetime("us", "UTC"))
            return pl.select(cleaned(pl.lit(utc), pl.lit(None, pl.String))).to_series()
        times = times.cast(pl.Datetime("us"))
        value = pl.Series(VALUE, [None] * len(pair), pl.Datetime("us", "UTC"))
        reason = pl.Series(REASON, [None] * len(pair), pl.String)
        for name in zones.drop_nulls().unique():
            rows = (zones == name).arg_true()
            if not _known_zone(name):
                reason = reason.scatter(rows.filter(times.gather(rows).is_not_null()), "unknown_time_zone")
                continue
            utc, gap = _zone_to_utc(times.gather(rows), name)
            value = value.scatter(rows, utc)
            reason = reason.scatter(rows.filter(gap), "nonexistent_local_time")
        missing_zone = (zones.is_null() & times.is_not_null()).arg_true()
        reason = reason.scatter(missing_zone, "unknown_time_zone")
        return pl.DataFrame([value, reason]).to_struct()

    return pl.struct(local.alias("local"), zone_expr.cast(pl.String).alias("zone")).map_batches(
        batch, return_dtype=out_type, is_elementwise=True)
