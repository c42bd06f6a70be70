"""Delta pickup: which staged rows a modification window sends, and what it deleted. Pure Polars.

How a window flows through the layers:

* **raw** keeps every version it received: a record modified on day 2 lands in day 2's partition while its
  day-1 copy stays in its old partition (a window replaces only its own days). ``store.latest_sql`` is the one
  read of a raw table everything downstream uses: the newest version per id.
* **staging** stages the *whole* tenant from those latest versions: deduplication, provider resolution and the
  lookups need the context, and a child's parent is bound in Dataverse by alternate key, so nothing is lost by
  staging everything. :func:`stamp_modified` adds the bookkeeping column ``_modified_at``: when the source last
  changed anything that row is made of (its own ``updated_at``; for a patient also its merged duplicates' and
  its merged policies' and referrals', deleted ones included since a deletion empties merged columns, and those
  of the insurance plans its policies hold: a renamed plan re-sends every patient holding it).
* **writers** in a windowed run (:func:`window_rows`) send only rows whose ``_modified_at`` falls in the window,
  plus rows whose last attempt failed (a failure must not wait for the next full run); the load journal's body
  hashes then skip rows whose Dataverse body did not change. A row outside the window is never sent, even when
  context made its body differ (a re-clustered duplicate): that drift is counted in metadata and a full
  ``migrate`` run sends it.
* **deletions**: Sensei soft-deletes (``is_deleted``). :func:`deletions` lists the records deleted in the window
  with their Dataverse id from the load journal; nothing is deleted in Dataverse.

Not covered: chart duplicates collapsed into a kept row (notes, readings, plan lines) do not re-stamp it, and an
edit that makes deduplication pick another survivor changes which source id a person is loaded under; a full
``migrate`` run (no window) compares every staged row with the load journal and sends such drift.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from senseimig_dagster.mapping.model import FieldMapFile
from senseimig_dagster.objects import MODIFIED_AT, PATIENT, PRIMARY_KEY

MODIFIED = "_modified_at"  # staged bookkeeping column (underscore: never sent to Dataverse)
SOURCE_ID = "_source_id"
DELETION_SCHEMA = {"object": pl.String, "source_id": pl.String, "deleted_at": pl.Datetime("us", "UTC"),
                   "table": pl.String, "dataverse_id": pl.String, "in_dataverse": pl.Boolean}


@dataclass(frozen=True)
class Window:
    """Source modification window ``[since, before)`` in UTC; ``None`` ends are open."""

    since: dt.datetime | None
    before: dt.datetime | None

    def contains(self, column: str = MODIFIED) -> pl.Expr:
        col = pl.col(column).cast(pl.Datetime("us", "UTC"))
        cond = pl.lit(True)
        if self.since is not None:
            cond = cond & (col >= pl.lit(self.since.astimezone(dt.UTC)).cast(pl.Datetime("us", "UTC")))
        if self.before is not None:
            cond = cond & (col < pl.lit(self.before.astimezone(dt.UTC)).cast(pl.Datetime("us", "UTC")))
        return cond.fill_null(False)

    def describe(self) -> str:
        fmt = "%Y-%m-%dT%H:%MZ"
        return (f"[{self.since.strftime(fmt) if self.since else 'beginning'}, "
                f"{self.before.strftime(fmt) if self.before else 'now'})")


def _utc(frame: pl.DataFrame, column: str = MODIFIED_AT) -> pl.Expr:
    """``column`` as a UTC instant, whatever the frame holds (DuckDB's TIMESTAMPTZ, naive UTC, ISO text)."""
    dtype, col = frame.schema.get(column), pl.col(column)
    if isinstance(dtype, pl.Datetime):
        col = col.dt.convert_time_zone("UTC") if dtype.time_zone else col.dt.replace_time_zone("UTC")
    elif dtype == pl.String:
        col = col.str.to_datetime(time_zone="UTC", strict=False)
    else:
        return pl.lit(None, dtype=pl.Datetime("us", "UTC"))
    return col.cast(pl.Datetime("us", "UTC"))


def _own_times(raw: pl.DataFrame) -> pl.DataFrame:
    return raw.select(pl.col(PRIMARY_KEY).cast(pl.String).alias(SOURCE_ID), _utc(raw).alias(MODIFIED))


def stamp_modified(staged: Mapping[str, pl.DataFrame], raw: Mapping[str, pl.DataFrame], fmap: FieldMapFile,
                   merge_map: pl.DataFrame | None = None) -> dict[str, pl.DataFrame]:
    """Every staged frame with ``_modified_at`` (see the module doc)."""
    out = {}
    for name, frame in staged.items():
        if name not in raw or SOURCE_ID not in frame.columns or MODIFIED_AT not in raw[name].columns:
            out[name] = frame
            continue
        times = _own_times(raw[name])
        merged_into = any(om.merge is not None and om.merge.into == name for om in fmap.objects.values())
        if name == PATIENT.name or merged_into:
            times = _root_times(name, times, raw, fmap, merge_map if name == PATIENT.name else None)
        stamped = frame.drop(MODIFIED, strict=False).with_columns(pl.col(SOURCE_ID).cast(pl.String))
        out[name] = stamped.join(times.group_by(SOURCE_ID).agg(pl.col(MODIFIED).max()), on=SOURCE_ID, how="left",
                                 maintain_order="left")
    return out


def _root_times(root: str, times: pl.DataFrame, raw: Mapping[str, pl.DataFrame], fmap: FieldMapFile,
                merge_map: pl.DataFrame | None) -> pl.DataFrame:
    """A row changes when any row merged into it does, and (a deduplicated patient) when a duplicate folded into
    it changes."""
    parts = [times]
    if merge_map is not None and not merge_map.is_empty():
        dup = merge_map.select(pl.col("duplicate_id").cast(pl.String).alias(SOURCE_ID),
                               pl.col("survivor_id").cast(pl.String).alias("_survivor"))
        parts.append(times.join(dup, on=SOURCE_ID).select(pl.col("_survivor").alias(SOURCE_ID), MODIFIED))
    for name, om in fmap.objects.items():
        merge = om.merge
        if merge is None or name not in raw or MODIFIED_AT not in raw[name].columns:
            continue
        rows = raw[name]
        if merge.into == root and merge.via in rows.columns:  # a policy, a referral: patient_id
            parts.append(rows.select(pl.col(merge.via).cast(pl.String).alias(SOURCE_ID),
                                     _utc(rows).alias(MODIFIED)).drop_nulls(SOURCE_ID))
        elif "." in merge.via:  # an insurance plan, through the policies holding it: every such patient
            holder, field = merge.via.split(".", 1)
            held = fmap.objects.get(holder)
            link = raw.get(holder)
            if held is None or held.merge is None or held.merge.into != root or link is None \
                    or field not in link.columns or held.merge.via not in link.columns:
                continue
            link = link.select(pl.col(field).cast(pl.String).alias("_via"),
                               pl.col(held.merge.via).cast(pl.String).alias(SOURCE_ID))
            times = rows.select(pl.col(PRIMARY_KEY).cast(pl.String).alias("_via"), _utc(rows).alias(MODIFIED))
            parts.append(link.join(times, on="_via").select(SOURCE_ID, MODIFIED).drop_nulls(SOURCE_ID))
    every = pl.concat(parts)
    if merge_map is not None and not merge_map.is_empty():  # merged rows of a duplicate count for its survivor
        survivor = dict(zip(merge_map.get_column("duplicate_id").cast(pl.String),
                            merge_map.get_column("survivor_id").cast(pl.String), strict=True))
        every = every.with_columns(pl.col(SOURCE_ID).replace(survivor))
    return every


@dataclass(frozen=True)
class Picked:
    """What a windowed writer sends: ``frame``; counts for its metadata."""

    frame: pl.DataFrame
    in_window: int
    retried: int  # outside the window, but their last attempt failed
    outside: int  # staged rows left alone


def window_rows(staged: pl.DataFrame, window: Window, failed_ids: set[str]) -> Picked:
    """The staged rows a windowed run sends: modified in the window, or failed last time."""
    if staged.is_empty():
        return Picked(staged, 0, 0, 0)
    if MODIFIED not in staged.columns:
        raise ValueError(f"staged rows have no {MODIFIED}: materialize staging again before a delta window")
    inside = window.contains()
    retry = pl.col(SOURCE_ID).cast(pl.String).is_in(sorted(failed_ids)) & ~inside
    marked = staged.with_columns(inside.alias("_in"), retry.alias("_retry"))
    picked = marked.filter(pl.col("_in") | pl.col("_retry"))
    n_in, n_retry = int(marked.get_column("_in").sum()), int(marked.get_column("_retry").sum())
    return Picked(picked.drop("_in", "_retry"), n_in, n_retry, staged.height - picked.height)


def deletions(raw: Mapping[str, pl.DataFrame], window: Window | None, journal: pl.DataFrame) -> pl.DataFrame:
    """Records whose latest version says ``is_deleted`` (modified in ``window`` when given), with the Dataverse
    table and id the load journal knows for them (``journal``: object, table, source_id, dataverse_id; latest)."""
    found = []
    for name, frame in raw.items():
        if "is_deleted" not in frame.columns or MODIFIED_AT not in frame.columns or frame.is_empty():
            continue
        rows = frame.filter(pl.col("is_deleted").fill_null(False)).select(
            pl.lit(name).alias("object"), pl.col(PRIMARY_KEY).cast(pl.String).alias("source_id"),
            _utc(frame).alias("deleted_at"))
        if window is not None:
            rows = rows.filter(window.contains("deleted_at"))
        found.append(rows)
    if not found:
        return pl.DataFrame(schema=DELETION_SCHEMA)
    deleted = pl.concat(found)
    known = journal.select(pl.col("object").cast(pl.String), pl.col("source_id").cast(pl.String),
                          pl.col("table").cast(pl.String), pl.col("dataverse_id").cast(pl.String))
    joined = deleted.join(known, on=["object", "source_id"], how="left")
    return joined.with_columns(pl.col("dataverse_id").is_not_null().alias("in_dataverse")).select(
        list(DELETION_SCHEMA)).cast(DELETION_SCHEMA).sort("object", "source_id")
