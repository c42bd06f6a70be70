"""Staged frames into Dataverse, parents first, and what Dataverse holds afterwards. Pure: no Dagster.

The product's load path (the sample migration today, issue 6's ``dataverse/<object>`` writers next):

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

import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

from senseimig_dagster.dataverse.batch import MAX_REQUESTS, BatchRequest
from senseimig_dagster.dataverse.client import record_segment
from senseimig_dagster.dataverse.errors import DataverseError
from senseimig_dagster.dataverse.loader import STANDARD_ENTITY_SETS, BulkLoader, LoadResult, RowFailure
from senseimig_dagster.dataverse.payload import (
    ACTIVITY_PARTIES,
    PARTY_USER,
    SOURCE_KEY,
    PayloadBuilder,
    parties_key,
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


def _in_frame_lookups(part: pl.DataFrame, table: str, catalog: TargetCatalog) -> list[str]:
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
    deferred = _in_frame_lookups(part, table, catalog)
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
        result = _upsert_by_id(loader.clients[0], entity_sets[table], frame.get_column(key).to_list(),
                               builder.bodies(frame))
    for i, landed in enumerate(result.ids):
        if landed is not None:
            total.ids[rows[i]] = landed
    for f in result.failed:
        failures.setdefault(rows[f.index], RowFailure(rows[f.index], f.status, f.code, f.message))
    total.throttled += result.throttled
    total.requests += result.requests
    total.seconds += result.seconds


def _upsert_by_id(client: DataverseClient, entity_set: str, ids: Sequence[str],
                  bodies: Iterable[dict[str, Any]]) -> LoadResult:
    """``PATCH <set>(<id>)`` per row (upsert by primary key, reference §1), as continue-on-error ``$batch`` es:
    for tables without the source-id key. Rows whose part is throttled fail with 429 (small tables only)."""
    requests = [BatchRequest("PATCH", entity_set + record_segment(i), body=b) for i, b in zip(ids, bodies, strict=True)]
    return _batch_rows(client, requests, list(ids))


def _batch_rows(client: DataverseClient, requests: Sequence[BatchRequest], ids: Sequence[str | None]) -> LoadResult:
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


# -- the writers' load (issue 6): ledger, audit, create-only columns, state last ------------------------------------
# Activities whose Completed/Canceled states are read-only: a changed one is re-opened (state 0 and this status)
# before its update and closed again after (Microsoft's standard_tables.json: Open's default status is 1).
OPEN_STATUS = {"phonecall": 1, "email": 1, "appointment": 1}
# Objects whose rows are created in time order (item 5: a claim's status trail), by this staged column.
TIME_ORDERED = {"claim_status_event": "smig_occurredat"}
# ... under this parent (the lookup to it): within an audit chunk the rows go in rounds, the n-th row of each parent
# in round n, so a parent's trail is created in time order while the rounds' requests run in parallel (one sender
# for the whole object capped it at one request's worth of records per modelled second).
TIME_ORDERED_UNDER = {"claim_status_event": "smig_ClaimId"}
# Appointment statuses that end a visit: the custom table's Inactive state (1, status 2; custom tables have only
# Active/Inactive), the text status stays in smig_status. Future/scheduled visits stay Active.
CLOSED_APPOINTMENT = frozenset({"Completed", "Cancelled", "Canceled", "NoShow", "No-Show", "Rescheduled"})
# Rows per audit intent / write round: bounds what a crash can leave pending. Three full rounds of the loader's
# default 16 senders x 100-row requests (1000 rows were 10 requests for 16 slots, then a read-back with the slots
# idle; 5000 left a round of 2 requests at the end of every chunk).
AUDIT_CHUNK = 4800


def closed_states(name: str, frame: pl.DataFrame, source_status: pl.DataFrame | None = None) -> pl.DataFrame:
    """``statecode``/``statuscode`` for finished work, sent last by :func:`write_object` (reference §9).

    Appointments (``smig_appointment``) that ended become Inactive (1, 2). Communications take Sensei's
    ``status`` (``source_status``: ``_source_id``, ``status``; the map skips it so the load closes them):
    phone calls Completed as Made (2) when outbound, Received (4) when inbound, Canceled (2, 3) when Failed;
    e-mails Completed as Sent (3) or Received (4), Canceled (2, 5) when Failed. Pairs from Microsoft's
    phonecall/email metadata (standard_tables.json), which the fact sheet lists as [memory]."""
    if name == "appointment" and "smig_status" in frame.columns:
        closed = pl.col("smig_status").is_in(sorted(CLOSED_APPOINTMENT))
        return frame.with_columns(pl.when(closed).then(pl.lit(1)).otherwise(None).alias("statecode"),
                                  pl.when(closed).then(pl.lit(2)).otherwise(None).alias("statuscode"))
    if name != "communication" or source_status is None or TABLE not in frame.columns:
        return frame
    status = source_status.select(pl.col(SOURCE_ID).cast(pl.String), pl.col("status").cast(pl.String))
    out = frame.with_columns(pl.col(SOURCE_ID).cast(pl.String)).join(status, on=SOURCE_ID, how="left")
    failed = pl.col("status") == "Failed"
    outbound = pl.col("directioncode").fill_null(True) if "directioncode" in out.columns else pl.lit(True)
    phone = pl.col(TABLE) == "phonecall"
    known = pl.col("status").is_not_null()
    state = pl.when(~known).then(None).when(failed).then(pl.lit(2)).otherwise(pl.lit(1))
    code = (pl.when(~known).then(None)
            .when(phone & failed).then(pl.lit(3)).when(phone & outbound).then(pl.lit(2)).when(phone).then(pl.lit(4))
            .when(failed).then(pl.lit(5)).when(outbound).then(pl.lit(3)).otherwise(pl.lit(4)))
    return out.with_columns(state.alias("statecode"), code.alias("statuscode")).drop("status")


@dataclass(frozen=True)
class LedgerEntry:
    """What the load ledger knows of a row: its id, and the digests of the body last sent in full (``failed``:
    the latest attempt failed, so the row is sent again)."""

    dataverse_id: str | None
    body_hash: str | None
    digests: Mapping[str, str] = field(default_factory=dict)
    failed: bool = False


@dataclass
class LedgerRow:
    """One row's outcome in this run: created, updated, unchanged or failed (Dataverse's status and code)."""

    object: str
    table: str
    source_id: str
    dataverse_id: str | None
    body_hash: str | None
    digests: dict[str, str]
    outcome: str
    status: int | None = None
    code: str | None = None


@dataclass
class WriteContext:
    """What :func:`write_object` writes with: ``previous`` is the ledger by (table, source id); ``audited(table)``
    the source ids the audit log holds any write of (a crash may have left them in Dataverse unledgered)."""

    loader: BulkLoader
    catalog: TargetCatalog
    entity_sets: Mapping[str, str]
    audit: Any  # audit.log.AuditLog
    run_id: str
    asset: str
    previous: Mapping[tuple[str, str], LedgerEntry]
    audited: Any = None  # Callable[[str], set[str]]


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def body_hash(digests: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(sorted(digests.items())).encode()).hexdigest()


def write_object(ctx: WriteContext, name: str, frame: pl.DataFrame, tables: Sequence[str], *,
                 owners: OwnerMap | None = None) -> list[LedgerRow]:
    """Upsert one staged object by source id with its ledger and audit trail; see :func:`_write_table`."""
    if name in TIME_ORDERED and TIME_ORDERED[name] in frame.columns:
        frame = frame.sort(TIME_ORDERED[name], SOURCE_ID, nulls_last=True)
    frame = resolve_users(_party_users(frame, tables, owners), tables, ctx.catalog, owners)
    out: list[LedgerRow] = []
    for table, part in split_tables(frame, tables, ctx.catalog):
        out += _write_table(ctx, name, table, part)
    return out


def _party_users(frame: pl.DataFrame, tables: Sequence[str], owners: OwnerMap | None) -> pl.DataFrame:
    """:data:`PARTY_USER` for communications: the Sensei user's system user matched by e-mail (``by_email``), never
    the fallback owner, so a call made by someone who left the practice names no staff party instead of a wrong
    one (the owner still shows who holds the record). A matched but disabled user stays a party: only owners must be
    enabled (reference §10; parties of disabled users [memory])."""
    navs = [f"ownerid_{t}" for t in tables if t in ACTIVITY_PARTIES and f"ownerid_{t}" in frame.columns]
    if not navs or owners is None:
        return frame
    email = pl.coalesce([pl.col(c).cast(pl.String) for c in navs]).str.strip_chars().str.to_lowercase()
    return frame.with_columns(email.replace_strict(dict(owners.by_email), default=None, return_dtype=pl.String)
                              .alias(PARTY_USER))


@dataclass
class _Row:
    sid: str
    desired: dict[str, Any]
    digests: dict[str, str]
    dataverse_id: str | None = None
    changed: set[str] = field(default_factory=set)
    create: bool = False
    failure: tuple[int | None, str | None] | None = None
    sent: bool = False  # some write of this row landed in this run


def _write_table(ctx: WriteContext, name: str, table: str, part: pl.DataFrame) -> list[LedgerRow]:
    """Rows whose digests equal the ledger's are not sent. The others go in passes, each audited (intent before,
    outcome after): creates (with ``overriddencreatedon``: valid for create only), updates of the changed columns
    (before-images read first), in-frame lookups (``link``), then ``statecode``/``statuscode`` (``state``; a
    closed activity is re-opened first). A row not in the ledger but in the audit log is looked up by key: a
    crash may have left it written."""
    unkeyed = table in UNKEYED_TABLES
    if SOURCE_KEY not in part.columns:
        part = part.with_columns(pl.col(SOURCE_ID).cast(pl.String).alias(SOURCE_KEY))
    builder = PayloadBuilder(table, part.columns, ctx.catalog, ctx.entity_sets, parties=True)
    party = parties_key(table) if table in ACTIVITY_PARTIES else None
    deferred = {builder.body_key(c) for c in _in_frame_lookups(part, table, ctx.catalog)}
    states = {c for c in STATE_COLUMNS if c in part.columns}
    rows: list[_Row] = []
    for record in part.iter_rows(named=True):
        desired = builder.body(record, send_nulls=True)
        sid = str(record[SOURCE_ID])
        rows.append(_Row(sid, desired, {k: digest(v) for k, v in desired.items() if k != SOURCE_KEY}))
    ledger_out: dict[str, str] = {}
    unknown: list[_Row] = []
    for row in rows:
        prev = ctx.previous.get((table, row.sid))
        if prev and not prev.failed and prev.body_hash == body_hash(row.digests):
            row.dataverse_id = prev.dataverse_id
            ledger_out[row.sid] = "unchanged"
        elif prev and prev.dataverse_id:
            row.dataverse_id = prev.dataverse_id
            row.changed = {k for k, d in row.digests.items() if prev.failed or prev.digests.get(k) != d}
        else:
            unknown.append(row)
    audited = ctx.audited(table) if ctx.audited else set()
    suspects = [r for r in unknown if r.sid in audited or (table, r.sid) in ctx.previous]
    found = read_back(ctx.loader.clients[0], ctx.entity_sets[table], table, [r.sid for r in suspects],
                      [primary_id(table)]) if suspects else {}
    for row in unknown:
        if row.sid in found:
            row.dataverse_id, row.changed = found[row.sid][primary_id(table)], set(row.digests)
        else:
            row.create = True
    restore = builder.restore_lookups(ctx.catalog)
    under = TIME_ORDERED_UNDER.get(name)
    sender = _Sender(ctx, table, unkeyed, restore,
                     builder.body_key(under) if under is not None and under in part.columns else None)
    creates = [r for r in rows if r.create]
    sender.send("create", [(r, {k: v for k, v in r.desired.items() if v is not None and k not in deferred
                                and k not in states}) for r in creates])
    updates = [r for r in rows if not r.create and r.sid not in ledger_out]
    main = [(r, {k: r.desired[k] for k in sorted(r.changed - deferred - states - set(CREATE_ONLY_COLUMNS) - {party})})
            for r in updates]
    main = [(r, b) for r, b in main if b]
    # A changed activity's parties are replaced (PUT, reference §9) only when they changed; created ones went inline.
    moved = [(r, {party: r.desired[party] or []}) for r in updates if party in r.changed] if party else []
    closed: set[str] = set()
    if table in OPEN_STATUS and (main or moved):
        touched = list({r.sid: r for r, _ in [*main, *moved]}.values())
        current = sender.read([r.sid for r in touched], ["statecode"])
        closed = {sid for sid, rec in current.items() if rec.get("statecode") in (1, 2)}
        sender.send("state", [(r, {"statecode": 0, "statuscode": OPEN_STATUS[table]}) for r in touched
                              if r.sid in closed], read_before=True)
    sender.send("update", [(r, {**b, **({SOURCE_KEY: r.sid} if not unkeyed else {})}) for r, b in main],
                read_before=True)
    sender.send("update", moved, read_before=True)
    later = [r for r in rows if r.sid not in ledger_out and r.failure is None]
    links = [(r, {k: r.desired[k] for k in sorted(deferred) if (r.desired[k] is not None if r.create
                                                                else k in r.changed)}) for r in later]
    sender.send("link", [(r, b) for r, b in links if b], read_before=True)
    state_rows = [(r, {k: r.desired[k] for k in sorted(states) if r.desired[k] is not None
                       and (r.create or k in r.changed or r.sid in closed)}) for r in later if r.failure is None]
    sender.send("state", [(r, b) for r, b in state_rows if b and not (r.create and _initial_state(b))],
                read_before=True)
    out = []
    for row in rows:
        if row.failure is not None:
            outcome = "failed"
        else:
            outcome = ledger_out.get(row.sid) or ("created" if row.create else "updated" if row.sent
                                                  else "unchanged")  # only create-only columns differed
        out.append(LedgerRow(name, table, row.sid, row.dataverse_id,
                             None if outcome == "failed" else body_hash(row.digests), row.digests, outcome,
                             *(row.failure or (None, None))))
    log.info("dataverse write %s/%s: %s", name, table, ", ".join(
        f"{o} {sum(1 for r in out if r.outcome == o)}" for o in ("created", "updated", "unchanged", "failed")))
    return out


def _initial_state(body: Mapping[str, Any]) -> bool:
    """State 0 with its default status 1: where every new record starts (contact, account, custom tables,
    phonecall, email: Microsoft's state/status metadata), so a create needs no state write for it."""
    return body.get("statecode", 0) == 0 and body.get("statuscode", 1) == 1


class _Sender:
    """One audited write pass at a time: intent (with before-images read by source id) -> write -> outcome with
    the record's id and ``versionnumber`` read back (rollback's "changed by a person" test)."""

    def __init__(self, ctx: WriteContext, table: str, unkeyed: bool, restore: Mapping[str, tuple[str, str]],
                 ordered_under: str | None = None):
        self.ctx, self.table, self.unkeyed, self.restore = ctx, table, unkeyed, restore
        self.ordered_under = ordered_under  # body key of the parent whose rows go in order (TIME_ORDERED_UNDER)
        self.entity_set = ctx.entity_sets[table]
        self.client = ctx.loader.clients[0]
        self.party = parties_key(table) if table in ACTIVITY_PARTIES else None

    def read(self, sids: Sequence[str], columns: Iterable[str]) -> dict[str, dict[str, Any]]:
        return read_back(self.client, self.entity_set, self.table, sids, sorted(columns)) if sids else {}

    def _columns_of(self, bodies: Iterable[Mapping[str, Any]]) -> set[str]:
        keys = {k for b in bodies for k in b if k != SOURCE_KEY and k != self.party}
        return {self.restore[k][0] if k in self.restore else k for k in keys}

    def send(self, op: str, items: Sequence[tuple[_Row, dict[str, Any]]], *, read_before: bool = False) -> None:
        """Chunk by chunk: intent, write, then the landed rows' ids and versions read back while the next chunk
        is written (the read waited on its own round trips with the senders idle); outcomes recorded in order."""
        from senseimig_dagster.audit.log import before_image

        items = [(r, b) for r, b in items if r.failure is None]
        previous: tuple | None = None
        with ThreadPoolExecutor(1, thread_name_prefix="dataverse-after") as after_reads:
            try:
                for start in range(0, len(items), AUDIT_CHUNK):
                    chunk = items[start:start + AUDIT_CHUNK]
                    sids = [r.sid for r, _ in chunk]
                    current = self.read(sids, self._columns_of(b for _, b in chunk)) if read_before else {}
                    intents = [(r.sid, "create") if op == "create" else
                               (r.sid, op, r.dataverse_id,
                                # Parties can't be $select ed: a rollback restores an activity's columns, not its
                                # parties.
                                before_image(current.get(r.sid, {}), {k: v for k, v in b.items()
                                                                      if k not in (SOURCE_KEY, self.party)},
                                             self.restore))
                               for r, b in chunk]
                    batch = self.ctx.audit.intend(self.ctx.run_id, self.ctx.asset, self.table, self.entity_set,
                                                  intents)
                    result = self._write(chunk, op)
                    failed = {f.index: f for f in result.failed}
                    landed = [r.sid for i, (r, _) in enumerate(chunk) if i not in failed]
                    after = after_reads.submit(self.read, landed, [primary_id(self.table), "versionnumber"])
                    if previous is not None:
                        self._record(op, *previous)
                    previous = (batch, chunk, result, failed, after)
                if previous is not None:
                    self._record(op, *previous)
            except BaseException:
                if previous is not None:  # the chunk before keeps its outcomes when it can (else: pending)
                    with contextlib.suppress(Exception):
                        self._record(op, *previous)
                raise

    def _record(self, op: str, batch: Any, chunk: Sequence[tuple[_Row, dict[str, Any]]], result: LoadResult,
                failed: Mapping[int, RowFailure], after: Future) -> None:
        from senseimig_dagster.audit.log import AuditOutcome

        versions = after.result()
        outcomes = []
        for i, (row, _) in enumerate(chunk):
            if i in failed:
                f = failed[i]
                row.failure = (f.status, f.code)
                outcomes.append(AuditOutcome(row.sid, row.dataverse_id, op, "failed",  # type: ignore[arg-type]
                                             error_code=f.code or (str(f.status) if f.status else None)))
                continue
            found, row.sent = versions.get(row.sid, {}), True
            row.dataverse_id = found.get(primary_id(self.table)) or row.dataverse_id or result.ids[i]
            version = found.get("versionnumber")
            outcomes.append(AuditOutcome(row.sid, row.dataverse_id, op, "ok",  # type: ignore[arg-type]
                                         after_version=None if version is None else str(version)))
        self.ctx.audit.record(batch, outcomes)

    def _write(self, chunk: Sequence[tuple[_Row, dict[str, Any]]], op: str) -> LoadResult:
        if self.party is not None and op == "create":
            # Deep insert (an activity with its parties) is documented for POST only, not for UpsertMultiple or an
            # upsert PATCH (L/webapi/create-entity-web-api; the emulator refuses those).
            requests = [BatchRequest("POST", self.entity_set, body={**b, SOURCE_KEY: r.sid}) for r, b in chunk]
            return _batch_rows(self.client, requests, [None] * len(requests))
        if self.party is not None and any(self.party in b for _, b in chunk):
            requests = [BatchRequest("PUT", self.entity_set + record_segment(
                r.dataverse_id or {SOURCE_KEY: r.sid}) + f"/{self.party}", body={"value": b[self.party]})
                for r, b in chunk]
            return _batch_rows(self.client, requests, [r.dataverse_id for r, _ in chunk])
        if self.ordered_under is None:
            return self._write_round(chunk)
        total = LoadResult(ids=[None] * len(chunk))
        for indexes in _rounds([r.desired.get(self.ordered_under) or ("", r.sid) for r, _ in chunk]):
            result = self._write_round([chunk[i] for i in indexes])
            for i, landed in zip(indexes, result.ids, strict=True):
                total.ids[i] = landed
            total.failed += [RowFailure(indexes[f.index], f.status, f.code, f.message) for f in result.failed]
            total.succeeded += result.succeeded
            total.requests += result.requests
            total.throttled += result.throttled
        return total

    def _write_round(self, chunk: Sequence[tuple[_Row, dict[str, Any]]]) -> LoadResult:
        if not self.unkeyed:
            bodies = [{**b, SOURCE_KEY: r.sid} for r, b in chunk]
            return self.ctx.loader.upsert(self.table, bodies, [SOURCE_KEY])
        ids = [r.dataverse_id or deterministic_id(self.table, r.sid) for r, _ in chunk]
        return _upsert_by_id(self.client, self.entity_set, ids, [b for _, b in chunk])


def _rounds(lanes: Sequence[Any]) -> list[list[int]]:
    """Indexes in rounds: the n-th occurrence of each lane in round n, in input order within a round."""
    seen: dict[Any, int] = {}
    rounds: list[list[int]] = []
    for index, lane in enumerate(lanes):
        n = seen.get(lane, 0)
        seen[lane] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(index)
    return rounds


__all__ = ["LedgerEntry", "LedgerRow", "LoadError", "OwnerMap", "WriteContext", "body_hash", "build_readback",
           "closed_states", "digest", "entity_sets", "landed_per_table", "load_staged", "primary_id", "read_back",
           "readback_columns", "resolve_users", "source_id_filter", "split_tables", "write_object"]
