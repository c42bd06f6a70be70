"""Staged frames upserted into Dataverse parents first, with no record state and no audit log: the sample
migration's load (into the sample environment, never the migration's). Every write into the migration's environment,
the billing reconciliation's repair included, goes through the writers' load (record state, audit log, changed
columns only): :mod:`.writer`.

* :func:`load_staged` upserts each staged object by ``smig_sourcesystemid`` in the registry's ``load_order()``, so a
  child's ``@odata.bind`` always finds its parent by alternate key. A routed object (``_table``) is split per table.
  A lookup to a row of the *same* frame (a patient's policyholder, a ledger correction) can't be bound before that
  row exists: pass 1 leaves such in-frame references out, pass 2 upserts just those lookups. A table without the
  source-id key (``annotation``) gets a deterministic primary id (uuid5 of table and source id), so a re-run
  updates the row it created instead of creating another.
* Owners: staged ``_owner_user_id`` is a Sensei user id. With an :class:`~.owners.OwnerMap` the table's owner lookup
  is bound to that system user's GUID; without one the owner is left to Dataverse's default (the calling
  application user).

Logs and errors carry table names, counts and codes only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import polars as pl

from senseimig_dagster.dataverse.bulk import BulkLoader, LoadResult, RowFailure
from senseimig_dagster.dataverse.standard_tables import primary_id
from senseimig_dagster.load.by_id import upsert_by_id
from senseimig_dagster.load.frames import (
    CREATE_ONLY_COLUMNS,
    SOURCE_ID,
    STATE_COLUMNS,
    TABLE,
    deterministic_id,
    in_frame_lookups,
    resolve_users,
    split_tables,
    unkeyed,
)
from senseimig_dagster.load.owners import OwnerMap
from senseimig_dagster.load.payload import SOURCE_KEY, PayloadBuilder
from senseimig_dagster.load.read_back import read_back
from senseimig_dagster.mapping.model import FieldMapFile
from senseimig_dagster.mapping.targets import TargetCatalog
from senseimig_dagster.objects import load_order

log = logging.getLogger("senseimig.load.upsert")


def load_staged(loader: BulkLoader, staged: Mapping[str, pl.DataFrame], fmap: FieldMapFile,
                catalog: TargetCatalog, entity_sets: Mapping[str, str], *,
                owners: OwnerMap | None = None) -> dict[str, LoadResult]:
    """Upsert every staged object, parents first; one :class:`LoadResult` per object whose ``failed`` indexes are
    rows of that object's staged frame (a row failing either pass counts once)."""
    results: dict[str, LoadResult] = {}
    for obj in load_order():
        frame = staged.get(obj.name)
        if frame is None or frame.is_empty() or obj.name not in fmap.objects:
            continue
        tables = fmap.objects[obj.name].tables
        frame = resolve_users(frame, tables, catalog, owners).with_row_index("_row")
        total = LoadResult(ids=[None] * frame.height)
        failures: dict[int, RowFailure] = {}
        for table, part in split_tables(frame, tables, catalog):
            _load_table(loader, table, part, catalog, entity_sets, total, failures)
        total.failed = [failures[i] for i in sorted(failures)]
        total.succeeded = frame.height - len(failures)
        results[obj.name] = total
        log.info("dataverse load %s: %d rows, %d failed", obj.name, frame.height, len(failures))
    return results


def _load_table(loader: BulkLoader, table: str, part: pl.DataFrame, catalog: TargetCatalog,
                entity_sets: Mapping[str, str], total: LoadResult, failures: dict[int, RowFailure]) -> None:
    """Pass 1: the rows without their in-frame references and state (new rows with, existing rows without their
    create-only columns); pass 2: those references and the state, on the rows that have them (state last: a
    completed or cancelled activity is read-only)."""
    key = primary_id(table) if unkeyed(table) else SOURCE_KEY
    if SOURCE_KEY not in part.columns:
        part = part.with_columns(pl.col(SOURCE_ID).cast(pl.String).alias(SOURCE_KEY))
    if key != SOURCE_KEY:
        part = part.with_columns(pl.col(SOURCE_ID).cast(pl.String).map_elements(
            lambda s: deterministic_id(table, s), return_dtype=pl.String).alias(key))
    deferred = in_frame_lookups(part, table, catalog)
    own = part.get_column(SOURCE_ID).cast(pl.String)
    states = [c for c in STATE_COLUMNS if c in part.columns]
    first = part.drop(states).with_columns(
        pl.when(pl.col(c).cast(pl.String).is_in(own)).then(None).otherwise(pl.col(c)).alias(c) for c in deferred)
    # Rows already there are updated: create-only columns (overriddencreatedon) would be refused, so left out.
    there = pl.col(SOURCE_ID).cast(pl.String).is_in(sorted(read_back(
        loader.clients[0], entity_sets[table], table, own.to_list(), [SOURCE_KEY])))
    _send(loader, table, first.filter(~there), key, catalog, entity_sets, total, failures)
    updates = first.filter(there).drop([c for c in CREATE_ONLY_COLUMNS if c in first.columns])
    _send(loader, table, updates, key, catalog, entity_sets, total, failures)
    later = [*deferred, *states]
    if later:
        second = part.select("_row", SOURCE_ID, key, *later).filter(
            pl.any_horizontal(pl.col(c).is_not_null() for c in later) & ~pl.col("_row").is_in(list(failures)))
        _send(loader, table, second, key, catalog, entity_sets, total, failures)


def _send(loader: BulkLoader, table: str, frame: pl.DataFrame, key: str, catalog: TargetCatalog,
          entity_sets: Mapping[str, str], total: LoadResult, failures: dict[int, RowFailure]) -> None:
    if frame.is_empty():
        return
    rows = frame.get_column("_row").to_list()
    if key == SOURCE_KEY:
        result = loader.upsert(table, PayloadBuilder(table, frame.columns, catalog, entity_sets).bodies(frame), [key])
    else:
        builder = PayloadBuilder(table, [c for c in frame.columns if c != key], catalog, entity_sets)
        result = upsert_by_id(loader.clients[0], entity_sets[table], frame.get_column(key).to_list(),
                               builder.bodies(frame))
    for i, landed in enumerate(result.ids):
        if landed is not None:
            total.ids[rows[i]] = landed
    for f in result.failed:
        failures.setdefault(rows[f.index], RowFailure(rows[f.index], f.status, f.code, f.message))
    total.throttled += result.throttled
    total.requests += result.requests
    total.seconds += result.seconds


def landed_per_table(staged: Mapping[str, pl.DataFrame], results: Mapping[str, LoadResult],
                     fmap: FieldMapFile) -> dict[str, int]:
    """Rows that landed, per Dataverse table."""
    out: dict[str, int] = {}
    for name, result in results.items():
        frame = staged[name]
        failed = [f.index for f in result.failed]
        ok = frame.with_row_index("_row").filter(~pl.col("_row").is_in(failed))
        tables = ok.get_column(TABLE).to_list() if TABLE in ok.columns else [fmap.objects[name].tables[0]] * ok.height
        for table in tables:
            out[table] = out.get(table, 0) + 1
    return dict(sorted(out.items()))
