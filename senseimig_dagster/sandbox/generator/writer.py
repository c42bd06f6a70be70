"""Streaming JSONL writer: one open file per registry object, counted and hashed as it is written.

Rows arrive as dicts of native values (str, int, Decimal, date, aware datetime, list/dict); each is encoded
with ``wire.to_json_value`` in registry field order. Nothing is kept after a row is buffered except counters,
so memory does not grow with the tenant. Document rows wait (in order) for their content hash; the few large
ones are hashed on a worker thread, since hashlib releases the GIL and the machine has a second core.
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from senseimig_dagster.objects import REGISTRY, SenseiObject
from senseimig_dagster.sandbox.documents import iter_document_bytes
from senseimig_dagster.sandbox.generator.manifest import DEFECTS_FILE, NULL_LOCATION
from senseimig_dagster.sensei.wire import to_json_value

_FLUSH_ROWS = 4096
_CONVERTED = frozenset({"decimal", "date", "datetime"})  # the other wire types travel as the native value
# Only the few multi-megabyte documents are hashed on the worker thread, each in one hashlib call: the thread
# needs the GIL between calls, and contention for it would cost more than hashing small files inline does.
_INLINE_HASH_BYTES = 4 * 1024 * 1024
_HASH_CHUNK = 16 * 1024 * 1024
_MAX_PENDING_DOCS = 256


class _File:
    """One JSONL output: buffered lines, a running sha256 and a row count."""

    def __init__(self, path: Path) -> None:
        self.name = path.name
        self._fh = path.open("wb")
        self._buf: list[bytes] = []
        self._sha = hashlib.sha256()
        self.rows = 0

    def append(self, line: bytes) -> None:
        self._buf.append(line)
        self.rows += 1
        if len(self._buf) >= _FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            data = b"".join(self._buf)
            self._buf.clear()
            self._fh.write(data)
            self._sha.update(data)

    def close(self) -> str:
        self.flush()
        self._fh.close()
        return self._sha.hexdigest()


class _Table(_File):
    def __init__(self, out: Path, obj: SenseiObject) -> None:
        super().__init__(out / f"{obj.endpoint}.jsonl")
        self.order = obj.field_names
        self.converted = tuple((f.name, f.type) for f in obj.fields if f.type in _CONVERTED)
        self.names = frozenset(obj.field_names)
        self.location_field = obj.location_field
        self.by_location: Counter[str] = Counter()

    def write(self, row: dict[str, Any]) -> None:
        if not self.names.issuperset(row):
            raise KeyError(f"unknown fields for {self.name}: {sorted(set(row) - self.names)}")
        get = row.get
        encoded = {name: get(name) for name in self.order}  # registry order; absent fields are null
        for name, type_ in self.converted:
            value = encoded[name]
            if value is not None:
                encoded[name] = to_json_value(type_, value)
        self.append(orjson.dumps(encoded) + b"\n")
        if self.location_field is not None:
            self.by_location[row.get(self.location_field) or NULL_LOCATION] += 1


def document_sha256(seed: int, document_id: str, size: int, mime_type: str) -> str:
    sha = hashlib.sha256()
    for chunk in iter_document_bytes(seed, document_id, size, mime_type, chunk_size=_HASH_CHUNK):
        sha.update(chunk)
    return sha.hexdigest()


class TenantWriter:
    def __init__(self, out: Path, seed: int) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.seed = seed
        self.tables = {obj.name: _Table(out, obj) for obj in REGISTRY}
        self.defects = _File(out / DEFECTS_FILE)
        self.defect_counts: Counter[str] = Counter()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="doc-sha")
        self._pending: deque[tuple[dict[str, Any], Future[str]]] = deque()

    def write(self, obj: str, row: dict[str, Any]) -> None:
        self.tables[obj].write(row)

    def write_document(self, row: dict[str, Any]) -> None:
        """A document row; its sha256 is filled in from the content before the row is written, in order."""
        args = (self.seed, row["id"], row["size_bytes"], row["mime_type"])
        if row["size_bytes"] <= _INLINE_HASH_BYTES:
            future: Future[str] = Future()
            future.set_result(document_sha256(*args))
        else:
            future = self._pool.submit(document_sha256, *args)
        self._pending.append((row, future))
        self._drain(wait=len(self._pending) > _MAX_PENDING_DOCS)

    def _drain(self, wait: bool = False) -> None:
        while self._pending and (wait or self._pending[0][1].done()):
            row, future = self._pending.popleft()
            row["sha256"] = future.result()
            self.write("document", row)
            wait = wait and len(self._pending) > _MAX_PENDING_DOCS // 2

    def defect(
        self,
        kind: str,
        obj: str,
        id_: str,
        field: str | None = None,
        detail: str | None = None,
        of: str | None = None,
    ) -> None:
        record: dict[str, str] = {"kind": kind, "object": obj, "id": id_}
        for key, value in (("field", field), ("detail", detail), ("of", of)):
            if value is not None:
                record[key] = value
        self.defects.append(orjson.dumps(record) + b"\n")
        self.defect_counts[kind] += 1

    def close(self) -> dict[str, str]:
        """Flush everything; the sha256 of every file written, by file name."""
        while self._pending:
            self._drain(wait=True)
        self._pool.shutdown()
        hashes = {t.name: t.close() for t in self.tables.values()}
        hashes[self.defects.name] = self.defects.close()
        return hashes
