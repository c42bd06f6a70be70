"""The writers' load: one object's staged frame into Dataverse with the load journal and the audit log.

:func:`write_object` compares each row with the journal (unchanged bodies are not sent), writes what changed with an
audit intent before and an outcome after (the record's ``versionnumber`` after our write: rollback's "changed by a
person" test, and the before-image of updates), binds in-frame lookups in a second pass, sends ``overriddencreatedon``
on create only, activity parties inline with an activity's create, and ``statecode``/``statuscode`` last (closed
activities are read-only: a changed one is re-opened first). It shares the wire shaping (:mod:`.frames`), the
read-back (:mod:`.read_back`) and the by-id batches (:mod:`.by_id`) with the unaudited load (:mod:`.upsert`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from senseimig_dagster.audit.log import AuditLog, AuditOutcome, before_image
from senseimig_dagster.dataverse.batch import BatchRequest
from senseimig_dagster.dataverse.bulk import BulkLoader, LoadResult, RowFailure
from senseimig_dagster.dataverse.client import record_segment
from senseimig_dagster.dataverse.standard_tables import is_activity, primary_id
from senseimig_dagster.load.by_id import batch_rows, upsert_by_id
from senseimig_dagster.load.frames import (
    CREATE_ONLY_COLUMNS,
    SOURCE_ID,
    STATE_COLUMNS,
    deterministic_id,
    in_frame_lookups,
    resolve_users,
    split_tables,
    unkeyed,
)
from senseimig_dagster.load.journal import JournalEntry, RecordOutcome
from senseimig_dagster.load.owners import OwnerMap
from senseimig_dagster.load.payload import (
    ACTIVITY_PARTIES,
    PARTY_USER,
    SOURCE_KEY,
    PayloadBuilder,
    parties_key,
)
from senseimig_dagster.load.read_back import read_back
from senseimig_dagster.mapping.model import ObjectMap
from senseimig_dagster.mapping.targets import TargetCatalog
from senseimig_dagster.objects import get
from senseimig_dagster.privacy.encryption import keyed_digest

log = logging.getLogger("senseimig.load.writer")

# Rows per audit intent / write round: bounds what a crash can leave pending. Three full rounds of the loader's
# default 16 senders x 100-row requests (1000 rows were 10 requests for 16 slots, then a read-back with the slots
# idle; 5000 left a round of 2 requests at the end of every chunk).
AUDIT_CHUNK = 4800
# A completed or cancelled activity is read-only: a changed one is re-opened (state 0 and Open's default status, 1 on
# every activity in Microsoft's metadata) before its update and closed again after.
OPEN_STATUS = 1


@dataclass
class WriteContext:
    """What :func:`write_object` writes with: ``previous`` is the journal by (table, source id); ``audited(table)``
    the source ids the audit log holds any write of (a crash may have left them in Dataverse, unjournaled)."""

    loader: BulkLoader
    catalog: TargetCatalog
    entity_sets: Mapping[str, str]
    audit: AuditLog
    run_id: str
    asset: str
    previous: Mapping[tuple[str, str], JournalEntry]
    audited: Any = None  # Callable[[str], set[str]]
    # The HMAC key of the column digests (privacy.encryption.digest_key, from the stores' key): a short value such
    # as an SSN's last four or a birth date cannot be recovered from its digest by trying every candidate.
    digest_key: bytes | None = None


def digest(value: Any, key: bytes | None = None) -> str:
    return keyed_digest(json.dumps(value, sort_keys=True, default=str).encode(), key)[:16]


def body_hash(digests: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(sorted(digests.items())).encode()).hexdigest()


def write_object(ctx: WriteContext, om: ObjectMap, frame: pl.DataFrame, *,
                 owners: OwnerMap | None = None) -> list[RecordOutcome]:
    """Upsert one staged object (``om``: its part of the map) by source id with its journal and audit trail; see
    :func:`_write_table`. An object declaring a ``time_order`` is sorted by it and sent in rounds (:func:`_rounds`):
    the n-th row of each parent in round n, so a parent's trail is created in time order while each round's
    requests run in parallel."""
    order = get(om.name).time_order
    by = _staged_column(om, order.by) if order else None
    if by is not None and by in frame.columns:
        frame = frame.sort(by, SOURCE_ID, nulls_last=True)
    within = _staged_column(om, order.within) if order else None
    frame = resolve_users(_party_users(frame, om.tables, owners), om.tables, ctx.catalog, owners)
    out: list[RecordOutcome] = []
    for table, part in split_tables(frame, om.tables, ctx.catalog):
        out += _write_table(ctx, om.name, table, part, within if within in part.columns else None)
    return out


def _staged_column(om: ObjectMap, field: str) -> str | None:
    """The staged column a Sensei field is written to (its first target), None when the map doesn't write it."""
    fm = om.fields.get(field)
    return fm.targets[0] if fm is not None and fm.written and fm.targets else None


def _party_users(frame: pl.DataFrame, tables: Sequence[str], owners: OwnerMap | None) -> pl.DataFrame:
    """:data:`PARTY_USER` for communications: the Sensei user's system user matched by e-mail (``by_email``), never
    the fallback owner, so a call made by someone who left the practice names no staff party instead of a wrong
    one (the owner still shows who holds the record). A matched but disabled user stays a party: only owners must be
    enabled (Dataverse refuses a disabled owner; parties of disabled users [memory])."""
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


def _write_table(ctx: WriteContext, name: str, table: str, part: pl.DataFrame,
                 ordered_within: str | None = None) -> list[RecordOutcome]:
    """Rows whose digests equal the journal's are not sent. The others go in passes, each audited (intent before,
    outcome after): creates (with ``overriddencreatedon``: valid for create only), updates of the changed columns
    (before-images read first), in-frame lookups (``link``), then ``statecode``/``statuscode`` (``state``; a
    closed activity is re-opened first). A row not in the journal but in the audit log is looked up by key: a
    crash may have left it written."""
    is_unkeyed = unkeyed(table)
    if SOURCE_KEY not in part.columns:
        part = part.with_columns(pl.col(SOURCE_ID).cast(pl.String).alias(SOURCE_KEY))
    builder = PayloadBuilder(table, part.columns, ctx.catalog, ctx.entity_sets, parties=True)
    party = parties_key(table) if table in ACTIVITY_PARTIES else None
    deferred = {builder.body_key(c) for c in in_frame_lookups(part, table, ctx.catalog)}
    states = {c for c in STATE_COLUMNS if c in part.columns}
    rows: list[_Row] = []
    for record in part.iter_rows(named=True):
        desired = builder.body(record, send_nulls=True)
        sid = str(record[SOURCE_ID])
        rows.append(_Row(sid, desired, {k: digest(v, ctx.digest_key) for k, v in desired.items()
                                         if k != SOURCE_KEY}))
    settled: dict[str, str] = {}
    unknown: list[_Row] = []
    for row in rows:
        prev = ctx.previous.get((table, row.sid))
        # compared as the journal made its digests: unkeyed ones from before the store had a key
        mine = ({k: digest(row.desired[k]) for k in row.digests} if prev and prev.unkeyed and ctx.digest_key
                else row.digests)
        if prev and not prev.failed and prev.body_hash == body_hash(mine):
            row.dataverse_id = prev.dataverse_id
            settled[row.sid] = "unchanged"
        elif prev and prev.dataverse_id:
            row.dataverse_id = prev.dataverse_id
            row.changed = {k for k, d in mine.items() if prev.failed or prev.digests.get(k) != d}
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
    sender = _Sender(ctx, table, is_unkeyed, restore,
                     builder.body_key(ordered_within) if ordered_within is not None else None)
    creates = [r for r in rows if r.create]
    sender.send("create", [(r, {k: v for k, v in r.desired.items() if v is not None and k not in deferred
                                and k not in states}) for r in creates])
    updates = [r for r in rows if not r.create and r.sid not in settled]
    main = [(r, {k: r.desired[k] for k in sorted(r.changed - deferred - states - set(CREATE_ONLY_COLUMNS) - {party})})
            for r in updates]
    main = [(r, b) for r, b in main if b]
    # A changed activity's parties are replaced (PUT of the collection, as Microsoft's 'Activity party' page shows) only when they changed; created ones went inline.
    moved = [(r, {party: r.desired[party] or []}) for r in updates if party in r.changed] if party else []
    closed: set[str] = set()
    if is_activity(table) and (main or moved):
        touched = list({r.sid: r for r, _ in [*main, *moved]}.values())
        current = sender.read([r.sid for r in touched], ["statecode"])
        closed = {sid for sid, rec in current.items() if rec.get("statecode") in (1, 2)}
        sender.send("state", [(r, {"statecode": 0, "statuscode": OPEN_STATUS}) for r in touched
                              if r.sid in closed], read_before=True)
    sender.send("update", [(r, {**b, **({SOURCE_KEY: r.sid} if not is_unkeyed else {})}) for r, b in main],
                read_before=True)
    sender.send("update", moved, read_before=True)
    later = [r for r in rows if r.sid not in settled and r.failure is None]
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
            outcome = settled.get(row.sid) or ("created" if row.create else "updated" if row.sent
                                                  else "unchanged")  # only create-only columns differed
        out.append(RecordOutcome(name, table, row.sid, row.dataverse_id,
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
        self.ordered_under = ordered_under  # body key of the parent whose rows go in time order (its rounds)
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
            return batch_rows(self.client, requests, [None] * len(requests))
        if self.party is not None and any(self.party in b for _, b in chunk):
            requests = [BatchRequest("PUT", self.entity_set + record_segment(
                r.dataverse_id or {SOURCE_KEY: r.sid}) + f"/{self.party}", body={"value": b[self.party]})
                for r, b in chunk]
            return batch_rows(self.client, requests, [r.dataverse_id for r, _ in chunk])
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
        return upsert_by_id(self.client, self.entity_set, ids, [b for _, b in chunk])


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


__all__ = ["WriteContext", "body_hash", "digest", "write_object"]
