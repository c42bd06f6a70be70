"""The throughput engine: load many rows into one Dataverse table as fast as service protection allows, without
losing a row (Microsoft's 'Service protection API limits', 'Use bulk operation messages', 'Execute batch operations').

    loader = BulkLoader([client_a, client_b], chunk_size=100, max_parallel=16)
    result = loader.create("contact", rows)                 # CreateMultiple, or $batch where unsupported
    result = loader.upsert("contact", rows, ["smig_sourcesystemid"])   # UpsertMultiple by alternate key
    result.succeeded, result.failed, result.ids, result.throttled, result.requests, result.seconds

How (and why):

* Rows are streamed from the iterable into chunks of ``chunk_size`` through a bounded queue, so memory holds a
  few chunks per sender whatever the input size (``ids`` keeps one slot per row: the contract asks for them).
* Each client is one application user; service protection counts per user, so several clients
  multiply the ceiling. Every client has ``max_parallel`` worker threads sharing one :class:`_UserGate`: a request
  is sent only while the user's gate has a free slot. The gate's width starts at ``min(max_parallel,
  x-ms-dop-hint)`` (Microsoft: use the hint as the degree of parallelism) and follows the hint as it changes.
* On a 429 the gate closes for *all* of that user's senders until ``Retry-After`` has elapsed (Microsoft: "the
  duration before any new requests from the user can be processed"; the emulator extends the block for every
  request pushed before then), halves its width, then widens again by one slot per window of successful requests
  (additive increase), back up to the hint. Other users keep going. Requests already in flight when the 429
  arrives were sent before it and are not recalled.
* Bulk support per (table, message) is asked once through ``sdkmessagefilters`` and cached on the loader. Without
  bulk, a chunk goes as one ``$batch`` with ``Prefer: odata.continue-on-error`` and one independent part per row
  (not a change set: a change set is all-or-nothing like a bulk call, while independent parts give every row its
  own status in one round trip, Microsoft's recommended fallback for tables without bulk messages).
* A bulk chunk is all-or-nothing on standard tables. When it fails with a record-level error (4xx), the chunk is
  bisected: halves that succeed land through the bulk message, halves that fail are split again, and pieces of at
  most ``per_row_below`` rows go as a continue-on-error ``$batch`` so each bad row comes back with Dataverse's own
  status, code and message. Request-level failures (timeouts, 5xx after the client's retries) fail the chunk's rows
  with that error instead: every input row ends in ``succeeded`` or ``failed``.
* Logs carry table names, counts, statuses and codes only; :attr:`RowFailure.message` is Dataverse's text and may
  quote a value (PHI): callers must not log it above DEBUG.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from senseimig_dagster.dataverse.batch import MAX_REQUESTS, BatchRequest, BatchResponse
from senseimig_dagster.dataverse.client import DataverseClient, key_segment
from senseimig_dagster.dataverse.errors import DataverseError, DataverseThrottled
from senseimig_dagster.dataverse.standard_tables import primary_id, standard_entity_sets

log = logging.getLogger("senseimig.dataverse.bulk")

# Statuses at which a failed all-or-nothing bulk request points at its rows (a bad value, a duplicate key, a missing
# bind target, too large a payload): worth isolating. Anything else is about the request, not a row.
_ROW_LEVEL = frozenset({400, 403, 404, 409, 412, 413, 422})
_DEFAULT_RETRY_AFTER = 1.0  # a 429 without Retry-After (not expected from Dataverse)
_MAX_THROTTLED_ROUNDS = 100  # per chunk: a row still throttled after this many waits fails as 429
_PENDING, _LANDED, _FAILED = 0, 1, 2


@dataclass(frozen=True)
class RowFailure:
    """A row that did not land. ``status`` is the HTTP status (``None`` when there was no response, or the row was
    refused before sending), ``code`` Dataverse's error code, ``message`` Dataverse's text (may hold PHI)."""

    index: int
    status: int | None
    code: str | None
    message: str | None

    def __repr__(self) -> str:  # keep the message (possibly PHI) out of reprs that end up in logs
        return f"RowFailure(index={self.index}, status={self.status}, code={self.code!r})"


@dataclass
class LoadResult:
    """Outcome of one load. ``ids`` has one slot per input row, in row order, ``None`` where unknown (failed rows,
    and rows written by UpsertMultiple, which returns no ids)."""

    succeeded: int = 0
    ids: list[str | None] = field(default_factory=list)
    failed: list[RowFailure] = field(default_factory=list)
    throttled: int = 0  # 429 responses seen (whole requests and $batch parts)
    requests: int = 0  # HTTP requests sent (a $batch or bulk call is one)
    seconds: float = 0.0
    requests_per_client: list[int] = field(default_factory=list)


class _Stopped(Exception):
    """The load is being abandoned (the row source failed)."""


class _UserGate:
    """The senders of one application user: a width (allowed concurrent requests) and a pause shared by all."""

    def __init__(self, client: DataverseClient, max_parallel: int, clock: Callable[[], float]):
        self.client, self.max_parallel, self._clock = client, max_parallel, clock
        self._cond = threading.Condition()
        self.width = self._target()
        self.in_flight = 0
        self.paused_until = -math.inf
        self._successes = 0
        self._cut = False  # after a 429 the width is earned back slowly; before it, it follows the hint at once

    def _target(self) -> int:
        return max(1, min(self.max_parallel, self.client.dop_hint or self.max_parallel))

    def acquire(self, stop: threading.Event) -> None:
        with self._cond:
            while True:
                if stop.is_set():
                    raise _Stopped
                wait = self.paused_until - self._clock()
                if wait > 0:
                    self._cond.wait(wait)
                elif self.in_flight < self.width:
                    self.in_flight += 1
                    return
                else:
                    self._cond.wait(0.5)

    def release(self, succeeded: bool = False) -> None:
        """Free the slot; ``succeeded`` (a 2xx) lets the width grow back towards the hint."""
        with self._cond:
            self.in_flight -= 1
            if succeeded:
                target = self._target()
                if not self._cut:
                    self.width = target
                else:
                    self._successes += 1
                    if self._successes >= self.width and self.width < target:
                        self.width += 1  # about one more slot per round of successful requests
                        self._successes = 0
                self.width = min(self.width, target)
            self._cond.notify_all()

    def pause(self, retry_after: float | None) -> None:
        """A 429: no sender of this user may send before ``retry_after`` seconds from now."""
        with self._cond:
            now = self._clock()
            if self.paused_until <= now:  # the first 429 of an episode halves the width, later ones don't
                self.width = max(1, self.width // 2)
                self._successes = 0
            self._cut = True
            self.paused_until = max(self.paused_until, now + (retry_after or _DEFAULT_RETRY_AFTER))
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


@dataclass
class _Chunk:
    start: int  # index of its first row in the input
    rows: list[dict[str, Any]]


class _Load:
    """State of one :meth:`BulkLoader.create`/:meth:`BulkLoader.upsert` call, shared by its worker threads."""

    def __init__(self, loader: BulkLoader, logical_name: str, entity_set: str, key_columns: Sequence[str] | None,
                 bulk: bool):
        self.loader, self.logical_name, self.entity_set = loader, logical_name, entity_set
        self.key_columns, self.bulk = key_columns, bulk
        self.result = LoadResult(requests_per_client=[0] * len(loader.clients))
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.done_reading = threading.Event()
        self.outcome = bytearray()  # per row: _PENDING, _LANDED or _FAILED; proves no row is lost
        self.queue: queue.Queue[_Chunk] = queue.Queue(maxsize=max(2, len(loader.clients) * 2))
        self.gates = [_UserGate(c, loader.max_parallel, loader.clock) for c in loader.clients]

    # -- outcomes -------------------------------------------------------------------------------------------
    def landed(self, indexes: Sequence[int], ids: Sequence[str | None] | None = None) -> None:
        with self.lock:
            self.result.succeeded += len(indexes)
            for index in indexes:
                self.outcome[index] = _LANDED
            if ids is not None:
                for index, record_id in zip(indexes, ids, strict=True):
                    self.result.ids[index] = record_id

    def failed(self, index: int, status: int | None, code: str | None, message: str | None) -> None:
        with self.lock:
            self.result.failed.append(RowFailure(index, status, code, message))
            self.outcome[index] = _FAILED

    # -- sending ----------------------------------------------------------------------------------------------
    def call(self, user: int, send: Callable[[], Any], held: bool = False) -> Any:
        """``send()`` under the user's gate; a 429 closes the gate for every sender of that user, then retries."""
        gate = self.gates[user]
        for _ in range(_MAX_THROTTLED_ROUNDS):
            if not held:
                gate.acquire(self.stop)
            held = False
            with self.lock:
                self.result.requests += 1
                self.result.requests_per_client[user] += 1
            try:
                response = send()
            except DataverseThrottled as e:
                with self.lock:
                    self.result.throttled += 1
                log.debug("dataverse %s: 429 %s for user %d, pausing its senders %.2f s", self.entity_set,
                          e.code or "-", user, e.retry_after or _DEFAULT_RETRY_AFTER)
                gate.pause(e.retry_after)  # before freeing the slot: no sender slips in between
                gate.release()
                continue
            except BaseException:
                gate.release()
                raise
            gate.release(succeeded=True)
            return response
        raise DataverseThrottled(429, None, None, self.entity_set, "load", cause="still throttled")

    def throttle(self, user: int, retry_after: float | None) -> None:
        """A throttled ``$batch`` part: pause the user's senders as for a throttled request."""
        with self.lock:
            self.result.throttled += 1
        self.gates[user].pause(retry_after)


class BulkLoader:
    """Loads rows into Dataverse through one or more clients (one per application user). Thread-safe per call;
    each :meth:`create`/:meth:`upsert` runs its own worker threads and returns when every row has an outcome.

    ``chunk_size`` rows per bulk request (or ``$batch``); ``max_parallel`` concurrent requests per client at most
    (also capped by the client's ``x-ms-dop-hint``); ``per_row_below``: a failed bulk piece of at most this many
    rows is retried row by row (one continue-on-error ``$batch``) instead of bisected further; ``entity_sets``
    maps logical names to entity set names for tables outside the standard ones."""

    def __init__(self, clients: Sequence[DataverseClient], *, chunk_size: int = 100, max_parallel: int = 16,
                 per_row_below: int = 8, entity_sets: Mapping[str, str] | None = None,
                 use_bulk: bool = True, clock: Callable[[], float] = time.monotonic):
        if not clients:
            raise ValueError("at least one client is required")
        if chunk_size < 1 or max_parallel < 1 or per_row_below < 1:
            raise ValueError("chunk_size, max_parallel and per_row_below must be >= 1")
        self.clients = list(clients)
        self.chunk_size, self.max_parallel, self.per_row_below = chunk_size, max_parallel, per_row_below
        self.use_bulk = use_bulk
        self.clock = clock
        self._entity_sets = {**standard_entity_sets(), **(entity_sets or {})}
        self._support: dict[tuple[str, str], bool] = {}
        self._support_lock = threading.Lock()
        for client in self.clients:
            if client.pool_size < max_parallel:
                log.warning("dataverse client pool holds %d connections for up to %d parallel requests",
                            client.pool_size, max_parallel)

    # -- public ---------------------------------------------------------------------------------------------
    def create(self, logical_name: str, rows: Iterable[Mapping[str, Any]]) -> LoadResult:
        """Create every row (``CreateMultiple``, or ``$batch`` where the table lacks it); ids in row order."""
        return self._run(logical_name, rows, None, "CreateMultiple")

    def upsert(self, logical_name: str, rows: Iterable[Mapping[str, Any]],
               key_columns: Sequence[str]) -> LoadResult:
        """Upsert every row by the alternate key made of ``key_columns`` (values taken from each row).
        ``UpsertMultiple`` returns no ids (their slots stay ``None``); the ``$batch`` fallback does."""
        if not key_columns:
            raise ValueError("key_columns must name the alternate key's columns")
        return self._run(logical_name, rows, list(key_columns), "UpsertMultiple")

    def bulk_supported(self, logical_name: str, message: str) -> bool:
        """Whether the table supports the bulk message; asked once per (table, message) and cached."""
        with self._support_lock:
            if (logical_name, message) not in self._support:
                self._support[(logical_name, message)] = self.clients[0].bulk_supported(logical_name, message)
            return self._support[(logical_name, message)]

    def entity_set(self, logical_name: str) -> str:
        """The table's entity set name: configured, standard, or read once from its metadata."""
        if logical_name not in self._entity_sets:
            try:
                found = self.clients[0].retrieve("EntityDefinitions", {"LogicalName": logical_name},
                                                 select=["EntitySetName"]).get("EntitySetName")
            except DataverseError as e:
                raise ValueError(f"entity set of {logical_name} unknown (HTTP {e.status}); pass entity_sets=") \
                    from None
            if not isinstance(found, str):
                raise ValueError(f"entity set of {logical_name} unknown; pass entity_sets=")
            self._entity_sets[logical_name] = found
        return self._entity_sets[logical_name]

    # -- one load -------------------------------------------------------------------------------------------
    def _run(self, logical_name: str, rows: Iterable[Mapping[str, Any]], key_columns: list[str] | None,
             message: str) -> LoadResult:
        started = self.clock()
        entity_set = self.entity_set(logical_name)
        bulk = self.use_bulk and self.bulk_supported(logical_name, message)
        load = _Load(self, logical_name, entity_set, key_columns, bulk)
        workers = [threading.Thread(target=self._worker, args=(load, user), daemon=True,
                                    name=f"dataverse-load-{user}-{n}")
                   for user in range(len(self.clients)) for n in range(self.max_parallel)]
        for worker in workers:
            worker.start()
        try:
            for chunk in self._chunks(rows, load):
                while True:
                    try:
                        load.queue.put(chunk, timeout=0.5)
                        break
                    except queue.Full:
                        if not any(w.is_alive() for w in workers):
                            raise RuntimeError("every loader worker has stopped") from None
        except BaseException:
            load.stop.set()
            raise
        finally:
            load.done_reading.set()
            for gate in load.gates:
                gate.wake()
            for worker in workers:
                worker.join()
        if not load.stop.is_set():  # a safety net: a row without an outcome is reported, never dropped
            self._fail_unresolved(load, range(len(load.outcome)), "no outcome recorded")
        result = load.result
        result.failed.sort(key=lambda f: f.index)
        result.seconds = self.clock() - started
        log.info("dataverse %s %s: %d rows, %d landed, %d failed, %d requests, %d throttled, %.1f s",
                 entity_set, "bulk" if bulk else "$batch", len(result.ids), result.succeeded, len(result.failed),
                 result.requests, result.throttled, result.seconds)
        return result

    def _chunks(self, rows: Iterable[Mapping[str, Any]], load: _Load) -> Iterator[_Chunk]:
        iterator, start = iter(rows), 0
        while chunk := [dict(row) for row in islice(iterator, self.chunk_size)]:
            with load.lock:
                load.result.ids.extend([None] * len(chunk))
                load.outcome.extend(bytes(len(chunk)))
            yield _Chunk(start, chunk)
            start += len(chunk)

    def _worker(self, load: _Load, user: int) -> None:
        gate = load.gates[user]
        while True:
            try:
                gate.acquire(load.stop)  # take work only when this user may send
            except _Stopped:
                return
            try:
                chunk = load.queue.get(timeout=0.1)
            except queue.Empty:
                gate.release()
                if load.done_reading.is_set() and load.queue.empty():
                    return
                continue
            indexes = list(range(chunk.start, chunk.start + len(chunk.rows)))
            try:
                self._load_chunk(load, user, indexes, chunk.rows)
            except _Stopped:
                return
            except Exception as e:  # a bug must not lose rows: they fail with a value-free description
                log.exception("dataverse %s: chunk at row %d failed unexpectedly", load.entity_set, chunk.start)
                self._fail_unresolved(load, indexes, f"internal error ({type(e).__name__})")

    @staticmethod
    def _fail_unresolved(load: _Load, indexes: Iterable[int], why: str) -> None:
        with load.lock:
            pending = [i for i in indexes if load.outcome[i] == _PENDING]
        for index in pending:
            load.failed(index, None, None, why)

    # -- a chunk --------------------------------------------------------------------------------------------
    def _load_chunk(self, load: _Load, user: int, indexes: list[int], rows: list[dict[str, Any]]) -> None:
        if load.key_columns is not None:
            indexes, rows = self._valid_keys(load, indexes, rows)
            if not rows:
                load.gates[user].release()
                return
        if load.bulk:
            self._bulk(load, user, indexes, rows, held=True)
        else:
            load.gates[user].release()
            self._per_row(load, user, indexes, rows)

    def _valid_keys(self, load: _Load, indexes: list[int], rows: list[dict[str, Any]]
                    ) -> tuple[list[int], list[dict[str, Any]]]:
        keep_indexes, keep_rows = [], []
        for index, row in zip(indexes, rows, strict=True):
            try:
                key_segment({c: row[c] for c in load.key_columns or ()})
            except KeyError as e:
                load.failed(index, None, None, f"key column {e.args[0]} missing")
            except ValueError as e:  # names the column, never the value
                load.failed(index, None, None, str(e))
            else:
                keep_indexes.append(index)
                keep_rows.append(row)
        return keep_indexes, keep_rows

    def _bulk(self, load: _Load, user: int, indexes: list[int], rows: list[dict[str, Any]],
              held: bool = False) -> None:
        client = self.clients[user]
        try:
            if load.key_columns is None:
                ids = load.call(user, lambda: client.create_multiple(load.entity_set, load.logical_name, rows,
                                                                      retry_throttled=False), held)
                load.landed(indexes, ids)
            else:
                load.call(user, lambda: client.upsert_multiple(load.entity_set, load.logical_name, rows,
                                                               load.key_columns, retry_throttled=False), held)
                load.landed(indexes)
        except DataverseError as e:
            if e.status not in _ROW_LEVEL:
                for index in indexes:
                    load.failed(index, e.status, e.code, e.message or e.cause)
                return
            log.debug("dataverse %s: bulk piece of %d rows failed (HTTP %s %s); isolating", load.entity_set,
                      len(rows), e.status, e.code or "-")
            if len(rows) <= self.per_row_below:
                self._per_row(load, user, indexes, rows)
                return
            middle = len(rows) // 2
            self._bulk(load, user, indexes[:middle], rows[:middle])
            self._bulk(load, user, indexes[middle:], rows[middle:])

    def _per_row(self, load: _Load, user: int, indexes: list[int], rows: list[dict[str, Any]]) -> None:
        """Every row as its own part of continue-on-error ``$batch`` es (at most 1000 parts each); throttled parts
        are sent again after the pause."""
        pending = list(zip(indexes, rows, strict=True))
        for _ in range(_MAX_THROTTLED_ROUNDS):
            if not pending:
                return
            retry: list[tuple[int, dict[str, Any]]] = []
            wait: float | None = None
            for start in range(0, len(pending), MAX_REQUESTS):
                piece = pending[start:start + MAX_REQUESTS]
                requests = [self._row_request(load, row) for _, row in piece]
                try:
                    result = load.call(user, lambda r=requests: self.clients[user].batch(
                        r, continue_on_error=True, retry_throttled=False))
                except DataverseError as e:
                    for index, _ in piece:
                        load.failed(index, e.status, e.code, e.message or e.cause)
                    continue
                for (index, row), response in zip(piece, result.responses, strict=True):
                    if response is not None and response.status == 429:
                        retry.append((index, row))
                        wait = max(wait or 0.0, response.retry_after or _DEFAULT_RETRY_AFTER)
                    else:
                        self._row_outcome(load, index, response)
            if retry:
                load.throttle(user, wait)
            pending = retry
        for index, _ in pending:
            load.failed(index, 429, None, "still throttled")

    def _row_request(self, load: _Load, row: dict[str, Any]) -> BatchRequest:
        if load.key_columns is None:
            return BatchRequest("POST", load.entity_set, body=row)
        key = {c: row[c] for c in load.key_columns}
        body = {k: v for k, v in row.items() if k not in key}
        # Addressed by key, an upsert answers OData-EntityId in the key's form, not the id
        # (https://learn.microsoft.com/power-apps/developer/data-platform/use-upsert-insert-update-record):
        # the id is asked for in the body instead, in the same request (no second round trip), primary key only.
        return BatchRequest("PATCH", f"{load.entity_set}{key_segment(key)}?$select={primary_id(load.logical_name)}",
                            body=body, headers={"Prefer": "return=representation"})

    @staticmethod
    def _row_outcome(load: _Load, index: int, response: BatchResponse | None) -> None:
        if response is None:
            load.failed(index, None, None, "no response for this row in the $batch answer")
        elif response.ok:
            load.landed([index], [_record_id(load, response)])
        else:
            load.failed(index, response.status, response.code, response.message)


def _record_id(load: _Load, response: BatchResponse) -> str | None:
    """A create's id from its ``OData-EntityId``; an upsert's from the representation it asked for."""
    if load.key_columns is None:
        return response.entity_id
    return response.selected_id(primary_id(load.logical_name))


__all__ = ["BulkLoader", "LoadResult", "RowFailure"]
