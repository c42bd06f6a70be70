"""Staged frames into Dataverse, parents first, and what Dataverse holds afterwards. Pure: no Dagster.

The shaping, sending and reading back shared by the sample migration (:func:`load_staged`) and the
``dataverse/<object>`` writers (:mod:`.writer`, which adds the ledger, the audit log and state last):

* :func:`entity_sets` names every table's entity set: standard ones from Microsoft's reference, custom ones from
  ``EntityDefinitions`` (never a guessed plural).
* :func:`load_staged` upserts each staged object by ``smig_sourcesystemid`` in the registry's ``load_order()``, so a
  child's ``@odata.bind`` always finds its parent by alternate key. A routed object (``_table``) is split per table.
  A lookup to a row of the *same* frame (a patient's policyholder, a ledger correction) can't be bound before that
  row exists: pass 1 leaves such in-frame references out, pass 2 upserts just those lookups. A table without the
  source-id key (``annotation``) gets a deterministic primary id (uuid5 of table and source id), so a re-run
  updates the row it created instead of creating another.
* Owners: staged ``_owner_user_id`` is a Sensei user id. With an :class:`OwnerMap` (staging/owners.py resolution)
  the table's owner lookup is bound to that system user's GUID; without one the owner is left to Dataverse's
  default (the calling application user) - issue 6 wires owners. Lookups to users hold a Sensei user's e-mail,
  and ``systemuser`` has no e-mail alternate key [memory]: those columns are bound by GUID when the owner map
  resolves the e-mail, and left out otherwise.
* :func:`read_back` / :func:`build_readback` read the loaded rows back by source id for ``field_diff``.

Logs and errors carry table names, counts and codes only.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

from senseimig_dagster.dataverse.batch import MAX_REQUESTS, BatchRequest
from senseimig_dagster.dataverse.client import record_segment
from senseimig_dagster.dataverse.errors import DataverseError
from senseimig_dagster.dataverse.loader import STANDARD_ENTITY_SETS, BulkLoader, LoadResult, RowFailure
from senseimig_dagster.dataverse.payload import (
    SOURCE_KEY,
    PayloadBuilder,
)
from senseimig_dagster.mapping.model import FieldMapFile
from senseimig_dagster.mapping.sample import READ_AS, Readback
from senseimig_dagster.mapping.targets import TargetCatalog
from senseimig_dagster.objects import load_order

if TYPE_CHECKING:
    from senseimig_dagster.dataverse.client import DataverseClient
    from senseimig_dagster.dataverse.metadata import DataverseMetadata

log = logging.getLogger("senseimig.dataverse.load")

SOURCE_ID, TABLE, OWNER_USER = "_source_id", "_table", "_owner_user_id"
SYSTEMUSER = "systemuser"
READ_CHUNK = 50  # source ids per read-back query: keeps the $filter URL well under Dataverse's URL limit
# Read-back queries in flight at once: well under the client's pool and x-ms-dop-hint, so reads never crowd out the
# loader's senders; a read throttled anyway waits out its Retry-After in the client.
READ_PARALLEL = 8
# Tables without the source-id key go as continue-on-error $batch es of this many PATCHes, this many at a time (the
# loader's chunk size; few enough in flight that their parts are not throttled: such a part would fail as 429).
BY_ID_PIECE, BY_ID_PARALLEL = 100, 4
# Activities share activitypointer's primary key (Microsoft's entity reference); other tables use <logical>id.
ACTIVITY_TABLES = frozenset({"appointment", "email", "fax", "letter", "phonecall", "task"})
# Tables the schema gives no source-id key (annotation can't carry one, dataverse/schema.py).
UNKEYED_TABLES = frozenset({"annotation"})
CREATE_ONLY_COLUMNS = ("overriddencreatedon",)  # IsValidForUpdate False (reference §9)
STATE_COLUMNS = ("statecode", "statuscode")  # not valid for create on contact and appointment (reference §9)
_ID_NAMESPACE = uuid.UUID("6f1f6e1c-58a4-4c1e-9a57-5e6d3c1a0b42")  # senseimig's uuid5 namespace for primary ids


class LoadError(ValueError):
    """The environment can't take the load (a table missing: the schema asset has not run)."""


@dataclass(frozen=True)
class OwnerMap:
    """Who owns what: Sensei user id -> systemuserid, and lower-cased e-mail -> systemuserid for lookups to users
    (staged as e-mails). Team owners come with issue 6."""

    by_user_id: Mapping[str, str]
    by_email: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_resolution(cls, owners: pl.DataFrame, users: pl.DataFrame) -> OwnerMap:
        """From ``OwnerResolution.owners`` (user_id, owner_id, owner_type) and the raw users (id, email)."""
        matched = owners.filter((pl.col("owner_type") == SYSTEMUSER) & pl.col("owner_id").is_not_null())
        by_user = dict(matched.select("user_id", "owner_id").iter_rows())
        emails = users.select(pl.col("id").cast(pl.String).alias("user_id"),
                              pl.col("email").cast(pl.String).str.strip_chars().str.to_lowercase().alias("email"))
        by_email = dict(emails.join(matched, on="user_id").select("email", "owner_id").drop_nulls().iter_rows())
        return cls(by_user, by_email)

    @classmethod
    def from_owners_table(cls, owners: pl.DataFrame, users: pl.DataFrame) -> OwnerMap:
        """From ``staging.owners`` (user_id, systemuserid, owner_id, owner_type: the fallback included) and the raw
        users (id, email): owners as whole references (``/systemusers(..)`` or ``/teams(..)``), so a team can own;
        lookups to users only where the Sensei user matched a system user (never the fallback)."""
        owned = owners.filter(pl.col("owner_id").is_not_null() & pl.col("owner_type").is_in([SYSTEMUSER, "team"]))
        by_user = {u: f"/{'teams' if t == 'team' else 'systemusers'}({o})"
                   for u, o, t in owned.select("user_id", "owner_id", "owner_type").iter_rows()}
        emails = users.select(pl.col("id").cast(pl.String).alias("user_id"),
                              pl.col("email").cast(pl.String).str.strip_chars().str.to_lowercase().alias("email"))
        matched = owners.filter(pl.col("systemuserid").is_not_null()).select("user_id", "systemuserid")
        by_email = dict(emails.join(matched, on="user_id").select("email", "systemuserid").drop_nulls().iter_rows())
        return cls(by_user, by_email)


# -- names ---------------------------------------------------------------------------------------------------------
def entity_sets(meta: DataverseMetadata, tables: Iterable[str]) -> dict[str, str]:
    """Entity set per table: the standard ones, plus each other table's ``EntitySetName`` from metadata."""
    out = dict(STANDARD_ENTITY_SETS)
    wanted = sorted(set(tables) - out.keys())
    # One metadata GET per table; sent together (every writer step and check asks for all of them).
    with ThreadPoolExecutor(max(1, min(READ_PARALLEL, len(wanted))), thread_name_prefix="dataverse-meta") as pool:
        definitions = list(pool.map(meta.find_table, wanted))
    for table, found in zip(wanted, definitions, strict=True):
        if not found or not found.get("EntitySetName"):
            raise LoadError(f"table {table} is not in this Dataverse environment: run dataverse/schema first")
        out[table] = found["EntitySetName"]
    return out


def primary_id(table: str) -> str:
    return "activityid" if table in ACTIVITY_TABLES else f"{table}id"


def deterministic_id(table: str, source_id: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"{table}:{source_id}"))


def tables_of(fmap: FieldMapFile, objects: Iterable[str]) -> set[str]:
    return {t for name in objects if name in fmap.objects for t in fmap.objects[name].tables}


def owner_navigation(table: str, catalog: TargetCatalog) -> str | None:
    """The table's owner lookup: ``ownerid`` (contact, account, custom tables), ``ownerid_<table>`` (activities)."""
    return next((nav for nav in ("ownerid", f"ownerid_{table}") if catalog.lookup(table, nav) is not None), None)


# -- shaping for the wire ----------------------------------------------------------------------------------------
def resolve_users(frame: pl.DataFrame, tables: Sequence[str], catalog: TargetCatalog,
                  owners: OwnerMap | None = None) -> pl.DataFrame:
    """Lookups to users as system user GUIDs (or left out), and the owner lookup from ``_owner_user_id`` when
    ``owners`` is given; see the module docstring. ``field_diff`` should see this frame: it is what is sent."""
    user_columns = [c for c in frame.columns if not c.startswith("_") and any(
        (lk := catalog.lookup(t, c)) is not None and SYSTEMUSER in lk.targets for t in tables)]
    if owners is None:
        return frame.drop(user_columns)
    by_email, by_user = dict(owners.by_email), dict(owners.by_user_id)
    if OWNER_USER in frame.columns:  # the owner comes from the owner map (fallback included), not the e-mail match
        owner_navs = {owner_navigation(t, catalog) for t in tables}
        frame = frame.drop([c for c in user_columns if c in owner_navs])
        user_columns = [c for c in user_columns if c not in owner_navs]
    exprs = [pl.col(c).cast(pl.String).str.strip_chars().str.to_lowercase()
             .replace_strict(by_email, default=None, return_dtype=pl.String).alias(c) for c in user_columns]
    if OWNER_USER in frame.columns:
        owner = pl.col(OWNER_USER).cast(pl.String).replace_strict(by_user, default=None, return_dtype=pl.String)
        for table in tables:
            nav = owner_navigation(table, catalog)
            if nav is None or nav in frame.columns or any(e.meta.output_name() == nav for e in exprs):
                continue
            routed = TABLE in frame.columns and len(tables) > 1
            exprs.append((pl.when(pl.col(TABLE) == table).then(owner) if routed else owner).alias(nav))
    return frame.with_columns(exprs) if exprs else frame


def split_tables(frame: pl.DataFrame, tables: Sequence[str], catalog: TargetCatalog
                 ) -> Iterator[tuple[str, pl.DataFrame]]:
    """Per table, its rows (``_table`` for routed objects) with only the columns that table has; a column another
    table of the route owns is dropped when empty here, and left for the payload to refuse when not."""
    for table in tables:
        part = frame.filter(pl.col(TABLE) == table) if TABLE in frame.columns else frame
        if part.is_empty():
            continue
        foreign = [c for c in part.columns if not c.startswith("_") and catalog.column(table, c) is None
                   and catalog.lookup(table, c) is None and part.get_column(c).null_count() == part.height]
        yield table, part.drop(foreign)
        if TABLE not in frame.columns:
            return


def in_frame_lookups(part: pl.DataFrame, table: str, catalog: TargetCatalog) -> list[str]:
    """Lookups of ``table`` to ``table`` whose values name rows of ``part`` itself."""
    own = part.get_column(SOURCE_ID).cast(pl.String)
    return [c for c in part.columns if not c.startswith("_") and (lk := catalog.lookup(table, c)) is not None
            and lk.targets == (table,) and part.get_column(c).cast(pl.String).is_in(own).any()]


# -- loading -------------------------------------------------------------------------------------------------------
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
    completed or cancelled activity is read-only, reference §9)."""
    key = primary_id(table) if table in UNKEYED_TABLES else SOURCE_KEY
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


def upsert_by_id(client: DataverseClient, entity_set: str, ids: Sequence[str],
                  bodies: Iterable[dict[str, Any]]) -> LoadResult:
    """``PATCH <set>(<id>)`` per row (upsert by primary key, reference §1), as continue-on-error ``$batch`` es:
    for tables without the source-id key. Rows whose part is throttled fail with 429 (small tables only)."""
    requests = [BatchRequest("PATCH", entity_set + record_segment(i), body=b) for i, b in zip(ids, bodies, strict=True)]
    return batch_rows(client, requests, list(ids))


def batch_rows(client: DataverseClient, requests: Sequence[BatchRequest], ids: Sequence[str | None]) -> LoadResult:
    """One request per row as continue-on-error ``$batch`` es; a row's id is ``ids[i]`` or its ``OData-EntityId``."""
    result = LoadResult(ids=[None] * len(ids))
    starts = range(0, len(requests), BY_ID_PIECE)

    def send(start: int) -> Any:
        return client.batch(requests[start:start + BY_ID_PIECE], continue_on_error=True)

    if len(starts) <= 1:
        answers = [send(s) for s in starts]
    else:  # independent pieces: one 1000-part $batch at a time held the writer for its whole modelled time
        with ThreadPoolExecutor(min(BY_ID_PARALLEL, len(starts)), thread_name_prefix="dataverse-by-id") as pool:
            answers = list(pool.map(send, starts))
    for start, answer in zip(starts, answers, strict=True):
        result.requests += 1
        for offset, response in enumerate(answer.responses):
            index = start + offset
            if response is not None and response.ok:
                result.ids[index] = ids[index] or response.entity_id
                result.succeeded += 1
            else:
                result.failed.append(RowFailure(index, response.status if response else None,
                                                response.code if response else None,
                                                response.message if response else None))
    return result


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


# -- reading back --------------------------------------------------------------------------------------------------
def source_id_filter(source_ids: Sequence[str]) -> str:
    """``smig_sourcesystemid eq 'a' or smig_sourcesystemid eq 'b'`` (quotes doubled inside literals)."""
    return " or ".join(f"{SOURCE_KEY} eq '{s.replace(chr(39), chr(39) * 2)}'" for s in source_ids)


def readback_columns(table: str, columns: Iterable[str], catalog: TargetCatalog) -> list[str]:
    """What to ``$select`` for staged ``columns``: value columns as they are, lookups as ``_<attribute>_value``."""
    out = {primary_id(table), SOURCE_KEY}
    for c in columns:
        if c.startswith("_"):
            continue
        if (lk := catalog.lookup(table, c)) is not None:
            out.add(f"_{lk.attribute}_value")
        elif catalog.column(table, c) is not None:
            out.add(READ_AS.get(c, c))
    return sorted(out)


def read_back(client: DataverseClient, entity_set: str, table: str, source_ids: Sequence[str],
              columns: Sequence[str], *, chunk: int = READ_CHUNK, parallel: int = READ_PARALLEL
              ) -> dict[str, dict[str, Any]]:
    """The rows with these source ids, by source id, ``$select`` ing ``columns`` (see :func:`readback_columns`).

    One ``$filter`` of ``or`` ed ids per ``chunk`` ids, up to ``parallel`` of those queries at a time. A service
    that refuses that filter (400) is asked once per id instead, those queries sent together as one ``$batch``."""
    select = sorted({*columns, SOURCE_KEY, primary_id(table)})
    ids = sorted({str(s) for s in source_ids})
    pieces = [ids[start:start + chunk] for start in range(0, len(ids), chunk)]

    def fetch(piece: list[str]) -> list[dict[str, Any]]:
        try:
            return list(client.query(entity_set, select, filter=source_id_filter(piece)))
        except DataverseError as e:
            if e.status != 400:
                raise
            return _read_one_by_one(client, entity_set, select, piece)

    width = min(parallel, len(pieces), getattr(client, "pool_size", parallel))
    if width <= 1:
        answers: Iterable[list[dict[str, Any]]] = map(fetch, pieces)
    else:  # independent GETs: one at a time they left the writers waiting on round trips, not on Dataverse
        with ThreadPoolExecutor(width, thread_name_prefix="dataverse-read") as pool:
            answers = list(pool.map(fetch, pieces))
    out: dict[str, dict[str, Any]] = {}
    for rows in answers:
        for row in rows:
            out[str(row[SOURCE_KEY])] = row
    return out


def _read_one_by_one(client: DataverseClient, entity_set: str, select: Sequence[str],
                     source_ids: Sequence[str]) -> list[dict[str, Any]]:
    from urllib.parse import quote

    rows: list[dict[str, Any]] = []
    for start in range(0, len(source_ids), MAX_REQUESTS):
        requests = [BatchRequest("GET", f"{entity_set}?$select={','.join(select)}&$filter="
                                        + quote(source_id_filter([s]), safe="'"))
                    for s in source_ids[start:start + MAX_REQUESTS]]
        result = client.batch(requests, continue_on_error=True)
        for response in result.responses:
            if response is None or not response.ok:
                raise DataverseError(response.status if response else 0, response.code if response else None,
                                     None, entity_set, "read back")
            rows.extend((response.json() or {}).get("value") or [])
    return rows


def build_readback(client: DataverseClient, staged: Mapping[str, pl.DataFrame], fmap: FieldMapFile,
                   catalog: TargetCatalog, entity_sets: Mapping[str, str]) -> Readback:
    """Everything the staged rows wrote, read back per table (objects sharing a table read it together)."""
    wanted: dict[str, tuple[set[str], set[str]]] = {}  # table -> (source ids, columns)
    for name, frame in staged.items():
        if name not in fmap.objects or frame.is_empty():
            continue
        for table, part in split_tables(frame, fmap.objects[name].tables, catalog):
            ids, columns = wanted.setdefault(table, (set(), set()))
            ids.update(part.get_column(SOURCE_ID).cast(pl.String).to_list())
            columns.update(readback_columns(table, part.columns, catalog))
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    record_ids: dict[tuple[str, str], str] = {}
    for table, (ids, columns) in sorted(wanted.items()):
        rows[table] = read_back(client, entity_sets[table], table, sorted(ids), sorted(columns))
        for sid, row in rows[table].items():
            record_ids[table, sid] = row[primary_id(table)]
    return Readback(rows=rows, ids=record_ids)


__all__ = ["LoadError", "OwnerMap", "batch_rows", "build_readback", "entity_sets", "in_frame_lookups",
           "landed_per_table", "load_staged", "primary_id", "read_back", "readback_columns", "resolve_users",
           "source_id_filter", "split_tables", "upsert_by_id"]
