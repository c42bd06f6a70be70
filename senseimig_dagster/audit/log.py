"""The audit log: append-only DuckDB table ``audit.writes``, one row per write to Dataverse.

Writers call it around every HTTP write, in batches:

    log = AuditLog(conn)                                  # conn from AuditStore.connect()
    batch = log.intend(run_id, "dataverse/patient", "contact", "contacts", [("p1", "create"), ("p2", "update")])
    ...HTTP write...
    log.record(batch, [AuditOutcome("p1", id1, "create", "ok", after_version="1043"),
                       AuditOutcome("p2", id2, "update", "ok", before={"lastname": "Ng"}, after_version="1044")])

Crash safety: :meth:`AuditLog.intend` writes ``pending`` rows *before* the request, so a create that reached
Dataverse but whose outcome was never recorded is still known (rollback finds it by its alternate key). An outcome
is a new row, never an UPDATE: the state of a write is its latest row (highest ``seq``) for (batch, source id,
operation). The class has no method that updates or deletes rows, and none is ever issued against the table.

``before`` holds the previous values of the columns an update changes, as a PATCH body that restores them (lookups
as ``nav@odata.bind``): PHI, so the log lives in the encrypted audit store and is exported only on request.
``after_version`` is the record's ``versionnumber`` right after our write: rollback leaves records whose version
moved on since (a person changed them) unless forced.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import duckdb

from senseimig_dagster.privacy.export import FORMULA_STARTS, PRIVATE_MODE, private_file

Operation = Literal["create", "update", "link", "delete", "state", "schema", "undo_delete", "undo_restore"]
Outcome = Literal["ok", "failed", "pending"]
OPERATIONS: frozenset[str] = frozenset(Operation.__args__)  # type: ignore[attr-defined]
OUTCOMES: frozenset[str] = frozenset(Outcome.__args__)  # type: ignore[attr-defined]
TABLE = "audit.writes"
COLUMNS = ("seq", "batch", "run_id", "asset", "table", "entity_set", "operation", "source_id", "dataverse_id", "at",
           "outcome", "error_code", "before", "after_version")

_DDL = f"""
CREATE SCHEMA IF NOT EXISTS audit;
CREATE SEQUENCE IF NOT EXISTS audit.writes_seq;
CREATE SEQUENCE IF NOT EXISTS audit.batch_seq;
CREATE TABLE IF NOT EXISTS {TABLE} (
    seq BIGINT NOT NULL PRIMARY KEY, batch BIGINT NOT NULL, run_id VARCHAR NOT NULL, asset VARCHAR NOT NULL,
    "table" VARCHAR NOT NULL, entity_set VARCHAR NOT NULL, operation VARCHAR NOT NULL, source_id VARCHAR,
    dataverse_id VARCHAR, "at" TIMESTAMP NOT NULL, outcome VARCHAR NOT NULL, error_code VARCHAR, "before" JSON,
    after_version VARCHAR);
"""


@dataclass(frozen=True)
class AuditBatch:
    """One :meth:`AuditLog.intend` call: the writes of one request (or chunk) to one table."""

    id: int
    run_id: str
    asset: str
    table: str
    entity_set: str


@dataclass(frozen=True)
class AuditOutcome:
    source_id: str | None
    dataverse_id: str | None
    operation: Operation
    outcome: Outcome
    error_code: str | None = None
    before: Mapping[str, Any] | None = None
    after_version: str | None = None

    def __repr__(self) -> str:  # the before-image is PHI: never in reprs that reach logs
        return (f"AuditOutcome(source_id={self.source_id!r}, dataverse_id={self.dataverse_id!r}, "
                f"operation={self.operation!r}, outcome={self.outcome!r}, error_code={self.error_code!r})")


@dataclass(frozen=True)
class Write:
    """The latest state of one audited write (see :meth:`AuditLog.writes`)."""

    seq: int
    batch: int
    run_id: str
    asset: str
    table: str
    entity_set: str
    operation: str
    source_id: str | None
    dataverse_id: str | None
    outcome: str
    error_code: str | None
    before: dict[str, Any] | None
    after_version: str | None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)  # stored as UTC


class AuditLog:
    """Appends to and reads ``audit.writes`` on ``conn`` (the table is created if missing)."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn
        exists = conn.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                              "AND schema_name = 'audit' AND table_name = 'writes'").fetchone()
        if not exists or not exists[0]:  # a read-only store can't run DDL, even IF NOT EXISTS
            conn.execute(_DDL)

    # -- writing (INSERT only) ------------------------------------------------------------------------------------
    def intend(self, run_id: str, asset: str, table: str, entity_set: str,
               rows: Sequence[tuple[Any, ...]]) -> AuditBatch:
        """``pending`` rows for writes about to be sent; call before the HTTP request. Each row is
        ``(source_id, operation)`` or, for an update, ``(source_id, operation, dataverse_id, before)``: the
        before-image goes in with the intent, so an update whose outcome is never recorded can still be undone."""
        batch = AuditBatch(self._next("audit.batch_seq"), run_id, asset, table, entity_set)
        intents = []
        for row in rows:
            source_id, operation, dataverse_id, before = (*row, None, None)[:4]
            intents.append(AuditOutcome(source_id, dataverse_id, operation, "pending", before=before))
        self._append(batch, intents)
        return batch

    def record(self, batch: AuditBatch, results: Sequence[AuditOutcome]) -> None:
        """The outcome of each write of ``batch`` (``ok`` or ``failed``), as new rows."""
        for result in results:
            if result.outcome == "pending":
                raise ValueError("record() takes outcomes; pending rows come from intend()")
        self._append(batch, results)

    def _append(self, batch: AuditBatch, results: Sequence[AuditOutcome]) -> None:
        if not results:
            return
        for r in results:
            if r.operation not in OPERATIONS or r.outcome not in OUTCOMES:
                raise ValueError(f"unknown operation {r.operation!r} or outcome {r.outcome!r}")
        n, at = len(results), _now()
        self.conn.execute("BEGIN")
        try:
            # Reserve the block of seqs and hand them out in row order: the latest row of a write is its highest seq.
            seqs = sorted(int(v) for (v,) in self.conn.execute(
                "SELECT nextval('audit.writes_seq') FROM range(?)", [n]).fetchall())
            insert_columns(self.conn, TABLE, {
                "seq": ("BIGINT", seqs), "batch": ("BIGINT", [batch.id] * n),
                "run_id": ("VARCHAR", [batch.run_id] * n), "asset": ("VARCHAR", [batch.asset] * n),
                "table": ("VARCHAR", [batch.table] * n), "entity_set": ("VARCHAR", [batch.entity_set] * n),
                "operation": ("VARCHAR", [r.operation for r in results]),
                "source_id": ("VARCHAR", [r.source_id for r in results]),
                "dataverse_id": ("VARCHAR", [r.dataverse_id for r in results]),
                "at": ("TIMESTAMP", [at] * n), "outcome": ("VARCHAR", [r.outcome for r in results]),
                "error_code": ("VARCHAR", [r.error_code for r in results]),
                "before": ("VARCHAR", [None if r.before is None else json.dumps(r.before, default=str)
                                       for r in results]),
                "after_version": ("VARCHAR", [None if r.after_version is None else str(r.after_version)
                                              for r in results])})
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def _next(self, sequence: str) -> int:
        return int(self.conn.execute(f"SELECT nextval('{sequence}')").fetchone()[0])  # type: ignore[index]

    # -- reading --------------------------------------------------------------------------------------------------
    def count(self) -> int:
        return int(self.conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0])  # type: ignore[index]

    def writes(self, *, run_id: str | None = None, operations: Sequence[str] | None = None,
               table: str | None = None) -> list[Write]:
        """The latest row of every write (per batch, source id and operation), oldest write first."""
        clauses, params = [], []
        if run_id is not None:
            clauses.append("run_id = ?")
            params.append(run_id)
        if operations:
            clauses.append(f"operation IN ({', '.join('?' for _ in operations)})")
            params += list(operations)
        if table is not None:
            clauses.append('"table" = ?')
            params.append(table)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.conn.execute(f"""
            SELECT min(seq) OVER w AS first_seq, batch, run_id, asset, "table", entity_set, operation, source_id,
                   coalesce(dataverse_id, max(dataverse_id) OVER w) AS dataverse_id, outcome, error_code,
                   coalesce(CAST("before" AS VARCHAR), max(CAST("before" AS VARCHAR)) OVER w) AS "before",
                   coalesce(after_version, max(after_version) OVER w) AS after_version
            FROM {TABLE} {where}
            WINDOW w AS (PARTITION BY batch, coalesce(source_id, dataverse_id, ''), operation)
            QUALIFY row_number() OVER (PARTITION BY batch, coalesce(source_id, dataverse_id, ''), operation
                                       ORDER BY seq DESC) = 1
            ORDER BY first_seq""", params).fetchall()
        return [Write(int(r[0]), int(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10],
                      None if r[11] is None else json.loads(r[11]), r[12]) for r in rows]

    def source_ids(self, table: str, asset: str) -> set[str]:
        """Source ids of ``table`` that ``asset`` ever wrote (any outcome: a crash may have left one written)."""
        return {r[0] for r in self.conn.execute(
            f'SELECT DISTINCT source_id FROM {TABLE} WHERE "table" = ? AND asset = ? AND source_id IS NOT NULL',
            [table, asset]).fetchall()}

    def created(self, table: str, run_id: str | None = None) -> list[Write]:
        """Creates of ``table`` that landed (``ok``) or may have (``pending``: no outcome recorded)."""
        return [w for w in self.writes(run_id=run_id, operations=["create"], table=table)
                if w.outcome in ("ok", "pending")]

    def updated(self, table: str, run_id: str | None = None) -> list[Write]:
        """Updates (incl. state changes and links) of ``table`` that landed or may have (``pending`` with its
        before-image), with their before-images."""
        return [w for w in self.writes(run_id=run_id, operations=["update", "state", "link"], table=table)
                if w.outcome == "ok" or (w.outcome == "pending" and w.before is not None)]

    def undone(self) -> dict[tuple[str, str], int]:
        """(table, dataverse id or source id) -> seq of its last successful undo (``undo_delete``/``undo_restore``),
        so rollback skips writes older than that."""
        rows = self.conn.execute(f"""
            WITH done AS (SELECT "table", dataverse_id, source_id, seq FROM {TABLE}
                          WHERE operation IN ('undo_delete', 'undo_restore') AND outcome = 'ok')
            SELECT "table", dataverse_id, max(seq) FROM done WHERE dataverse_id IS NOT NULL GROUP BY ALL
            UNION ALL
            SELECT "table", source_id, max(seq) FROM done WHERE source_id IS NOT NULL GROUP BY ALL""").fetchall()
        out: dict[tuple[str, str], int] = {}
        for table, ident, seq in rows:
            out[(table, ident)] = max(int(seq), out.get((table, ident), 0))
        return out

    # -- export ---------------------------------------------------------------------------------------------------
    def export(self, path: str | Path, format: Literal["csv", "parquet"] = "csv") -> int:
        """Copy every row, oldest first, to a CSV or Parquet file (PHI: the caller chooses where); the row count.
        The file is created owner-only; CSV text cells are formula-safe (``privacy/export.py``)."""
        if format not in ("csv", "parquet"):
            raise ValueError("format must be csv or parquet")
        target = str(private_file(path)).replace("'", "''")
        options = "FORMAT csv, HEADER true" if format == "csv" else "FORMAT parquet"
        columns = self.conn.execute(f"SELECT column_name, data_type FROM information_schema.columns "
                                    f"WHERE table_schema || '.' || table_name = '{TABLE}' ORDER BY ordinal_position"
                                    ).fetchall()
        select = ", ".join(_formula_safe_sql(name) if format == "csv" and kind == "VARCHAR" else f'"{name}"'
                           for name, kind in columns)
        self.conn.execute(f"COPY (SELECT {select} FROM {TABLE} ORDER BY seq) TO '{target}' ({options})")
        os.chmod(path, PRIVATE_MODE)  # in case the writer replaced the file
        return self.count()

def _formula_safe_sql(column: str) -> str:
    """A text column as ``privacy.export.formula_safe`` writes it, in SQL (the export streams through DuckDB)."""
    starts = ", ".join(f"chr({ord(c)})" for c in FORMULA_STARTS)
    quoted = f'"{column}"'
    return f"CASE WHEN left({quoted}, 1) IN ({starts}) THEN chr(39) || {quoted} ELSE {quoted} END AS {quoted}"


def insert_columns(conn: duckdb.DuckDBPyConnection, table: str,
                   columns: Mapping[str, tuple[str, Sequence[Any]]]) -> None:
    """Append rows given column-wise (name -> (DuckDB type, values), equal lengths) in ONE statement,
    ``INSERT INTO table (cols) SELECT unnest(?::type[]), ...``: a per-row ``executemany`` dominated the writers'
    profile (~100x slower at 2,000 rows). Lists are bound as parameters rather than a registered Arrow frame so
    the whole write goes through ``execute`` (connection proxies and the append-only test see it); unnest keeps
    row order. The caller owns the transaction."""
    names = ", ".join(f'"{name}"' for name in columns)
    unnests = ", ".join(f"unnest(?::{type_}[])" for type_, _ in columns.values())
    conn.execute(f"INSERT INTO {table} ({names}) SELECT {unnests}", [list(values) for _, values in columns.values()])


def before_image(current: Mapping[str, Any], changes: Mapping[str, Any],
                 lookups: Mapping[str, tuple[str, str]] | None = None) -> dict[str, Any]:
    """The PATCH body that restores ``current`` for the columns ``changes`` touches. ``current`` is the record as
    retrieved (lookups as ``_x_value``); ``lookups`` maps a bind (``nav@odata.bind``) to (``_x_value`` column,
    target entity set), so a changed lookup is restored as a bind (or ``None`` to clear it)."""
    lookups = lookups or {}
    image: dict[str, Any] = {}
    for name in changes:
        if name.endswith("@odata.bind"):
            column, target_set = lookups[name]
            value = current.get(column)
            image[name] = None if value is None else f"/{target_set}({value})"
        elif not name.startswith("@"):
            image[name] = current.get(name)
    return image


__all__ = ["AuditBatch", "AuditLog", "AuditOutcome", "Operation", "Outcome", "Write", "before_image",
           "insert_columns"]
