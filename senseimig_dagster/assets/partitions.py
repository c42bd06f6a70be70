"""Partitions of source modification time: the first full load is one single-run backfill over all days, a delta
window (e.g. the last two days of cutover) is a partition range."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import polars as pl
from dagster import AssetExecutionContext, DailyPartitionsDefinition, TimeWindow
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from senseimig_dagster import settings
from senseimig_dagster.objects import MODIFIED_AT
from senseimig_dagster.staging.delta import Window, window_rows

HISTORY_START = settings.history_start()

# end_offset=1 makes today a partition, so changes made during cutover can be picked up the same day.
modification_days = DailyPartitionsDefinition(start_date=HISTORY_START.isoformat(), end_offset=1, timezone="UTC")

# Rows modified before the first partition belong to it (clamped), so a window delete/select in DuckDB matches
# exactly the rows that the window's extraction landed.
PARTITION_EXPR = f"greatest(timezone('UTC', {MODIFIED_AT}), TIMESTAMP '{HISTORY_START.isoformat()}')"


def source_window(window: TimeWindow) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The ``modified_since``/``modified_before`` to ask the source for. The first partition is open-ended
    backwards so nothing older than the partitions is left behind; the newest is open-ended forwards so a
    future-dated row is received (and rejected as outside the window, counted) rather than never seen."""
    first = window.start.date() <= HISTORY_START
    newest = window.end >= modification_days.get_last_partition_window().end
    return (None if first else window.start.astimezone(dt.UTC)), (None if newest else window.end.astimezone(dt.UTC))


# Delta pickup: unpartitioned staging and writers in the same run as raw partitions read the run's partition range
# from its tags, so one launch over "the last two days" stages and sends exactly that window.
def run_window(tags: Mapping[str, str]) -> Window | None:
    """The source window of a run over modification-day partitions; ``None`` for an unpartitioned run (a full
    migration) or a range covering every partition."""
    start, end = tags.get(ASSET_PARTITION_RANGE_START_TAG), tags.get(ASSET_PARTITION_RANGE_END_TAG)
    if start is None or end is None:
        start = end = tags.get(PARTITION_NAME_TAG)
    if start is None or end is None:
        return None
    first = modification_days.time_window_for_partition_key(start)
    last = modification_days.time_window_for_partition_key(end)
    since, before = source_window(TimeWindow(first.start, last.end))
    return None if since is None and before is None else Window(since, before)


def in_run_window(context: AssetExecutionContext, staged: pl.DataFrame,
                  failed_ids: set[str]) -> tuple[pl.DataFrame, dict]:
    """The staged rows a writer sends: all of them, or in a run over modification-day partitions only those
    modified in that window and those whose last attempt failed (``failed_ids``); with the window's metadata."""
    window = run_window(context.run.tags)
    if window is None:
        return staged, {}
    picked = window_rows(staged, window, failed_ids)
    return picked.frame, {"window": window.describe(), "rows_in_window": picked.in_window,
                          "failed_rows_retried": picked.retried, "rows_outside_window_not_sent": picked.outside}


def range_tags(first: str | None = None, last: str | None = None) -> dict[str, str]:
    """Run tags materializing modification-day partitions ``first``..``last`` (default: all of them) in one run, as
    the single-run backfill policy allows: the first full load, or a delta window."""
    keys = modification_days.get_partition_keys()
    return {ASSET_PARTITION_RANGE_START_TAG: first or keys[0], ASSET_PARTITION_RANGE_END_TAG: last or keys[-1]}
