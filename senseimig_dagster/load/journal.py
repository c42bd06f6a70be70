"""The load journal: DuckDB table ``load.journal``, append-only, one row per record per writer run (object, table,
source id, Dataverse id, body hash, column digests, outcome, run id, time). A record's latest row is what the next
run compares against, so unchanged records are not sent again; failed rows also go to ``load.failures`` (ids, HTTP
status and Dataverse's code: never its message, which may quote a value).

Rollback marks what it undid ``rolled_back`` (:func:`mark_rolled_back`), so the next migration sends those records
again instead of trusting a body hash of a record that no longer exists. Outcomes: ``created``, ``updated``,
``unchanged``, ``failed``, ``rolled_back``.

Digests are keyed (HMAC) when the store has a key. A store encrypted after the fact (``senseimig store upgrade``)
holds unkeyed digests it cannot turn into keyed ones (the journal keeps digests, never values): the upgrade records
its time in ``load.unkeyed_digests`` (:func:`mark_unkeyed_digests`), and an entry older than that is compared with
the unkeyed digests of the body (:attr:`JournalEntry.unkeyed`), so the first keyed run resends only what changed and
journals keyed digests for the rest.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import duckdb
import polars as pl

from senseimig_dagster.audit.log import insert_columns

JOURNAL, FAILURES = "load.journal", "load.failures"
_DDL = f"""
CREATE SCHEMA IF NOT EXISTS load;
CREATE TABLE IF NOT EXISTS {JOURNAL} (object VARCHAR NOT NULL, "table" VARCHAR NOT NULL, source_id VARCHAR NOT NULL,
    dataverse_id VARCHAR, body_hash VARCHAR, digests JSON, outcome VARCHAR NOT NULL, run_id VARCHAR NOT NULL,
    "at" TIMESTAMP NOT NULL);
CREATE TABLE IF NOT EXISTS {FAILURES} (object VARCHAR NOT NULL, "table" VARCHAR NOT NULL, source_id VARCHAR NOT NULL,
    dataverse_id VARCHAR, status INTEGER, code VARCHAR, run_id VARCHAR NOT NULL, "at" TIMESTAMP NOT NULL);
CREATE TABLE IF NOT EXISTS load.unkeyed_digests ("before" TIMESTAMP NOT NULL);
"""
_EARLIER_NAME = "ledger"  # the journal's table before it was renamed: a store from then keeps its history
JOURNAL_SCHEMA = {"object": pl.String, "table": pl.String, "source_id": pl.String, "dataverse_id": pl.String,
                  "body_hash": pl.String, "outcome": pl.String, "run_id": pl.String, "at": pl.Datetime("us")}


@dataclass(frozen=True)
class JournalEntry:
    """What the journal knows of a record: its id, and the digests of the body last sent in full (``failed``: the
    latest attempt failed, so the record is sent again)."""

    dataverse_id: str | None
    body_hash: str | None
    digests: Mapping[str, str] = field(default_factory=dict)
    failed: bool = False
    unkeyed: bool = False  # its digests were made before the store had a key (plain SHA-256)


@dataclass
class RecordOutcome:
    """One record's outcome in this run: created, updated, unchanged or failed (Dataverse's status and code)."""

    object: str
    table: str
    source_id: str
    dataverse_id: str | None
    body_hash: str | None
    digests: dict[str, str]
    outcome: str
    status: int | None = None
    code: str | None = None


def _load_tables(conn: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables "
                                       "WHERE table_schema = 'load'").fetchall()}


def ensure_journal(conn: duckdb.DuckDBPyConnection) -> None:
    tables = _load_tables(conn)
    if _EARLIER_NAME in tables and "journal" not in tables:
        conn.execute(f"ALTER TABLE load.{_EARLIER_NAME} RENAME TO journal")
    conn.execute(_DDL)


def previous_entries(conn: duckdb.DuckDBPyConnection, name: str) -> dict[tuple[str, str], JournalEntry]:
    """The latest known state of each of the object's records: last id, last successful body, last outcome."""
    rows = conn.execute(f"""
        SELECT "table", source_id, arg_max(outcome, "at"),
               arg_max(dataverse_id, "at") FILTER (WHERE dataverse_id IS NOT NULL),
               arg_max(body_hash, "at") FILTER (WHERE outcome <> 'failed'),
               arg_max(CAST(digests AS VARCHAR), "at") FILTER (WHERE outcome <> 'failed'),
               coalesce(max("at") FILTER (WHERE outcome <> 'failed')
                        <= (SELECT max("before") FROM load.unkeyed_digests), false)
        FROM {JOURNAL} WHERE object = ? GROUP BY ALL""", [name]).fetchall()
    # A record rollback undid (``rolled_back``) is as good as never loaded: sent again in full.
    return {(table, sid): JournalEntry(dvid, hash_, json.loads(digests) if digests else {}, last == "failed",
                                       unkeyed)
            for table, sid, last, dvid, hash_, digests, unkeyed in rows if last != "rolled_back"}


def mark_unkeyed_digests(conn: duckdb.DuckDBPyConnection) -> None:
    """Record that every digest journaled so far is unkeyed: the store is being encrypted after the fact."""
    ensure_journal(conn)
    conn.execute('INSERT INTO load.unkeyed_digests VALUES (?)', [dt.datetime.now(dt.UTC).replace(tzinfo=None)])


def append_outcomes(conn: duckdb.DuckDBPyConnection, rows: Sequence[RecordOutcome], run_id: str) -> pl.DataFrame:
    """Append this run's outcomes (and failures); returns the run's slice of the journal (no digests)."""
    at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    failed = [r for r in rows if r.outcome == "failed"]
    common = {"object": [r.object for r in rows], "table": [r.table for r in rows],
              "source_id": [r.source_id for r in rows], "dataverse_id": [r.dataverse_id for r in rows]}
    slice_ = pl.DataFrame({**common, "body_hash": [r.body_hash for r in rows], "outcome": [r.outcome for r in rows],
                           "run_id": [run_id] * len(rows), "at": [at] * len(rows)}, schema=JOURNAL_SCHEMA)
    conn.execute("BEGIN")
    try:  # one bulk INSERT per table: a per-row executemany dominated the writers' profile
        if rows:
            insert_columns(conn, JOURNAL, {
                **{name: ("VARCHAR", values) for name, values in common.items()},
                "body_hash": ("VARCHAR", slice_["body_hash"].to_list()),
                "digests": ("VARCHAR", [json.dumps(r.digests) for r in rows]),
                "outcome": ("VARCHAR", slice_["outcome"].to_list()), "run_id": ("VARCHAR", [run_id] * len(rows)),
                "at": ("TIMESTAMP", [at] * len(rows))})
        if failed:
            insert_columns(conn, FAILURES, {
                "object": ("VARCHAR", [r.object for r in failed]), "table": ("VARCHAR", [r.table for r in failed]),
                "source_id": ("VARCHAR", [r.source_id for r in failed]),
                "dataverse_id": ("VARCHAR", [r.dataverse_id for r in failed]),
                "status": ("INTEGER", [r.status for r in failed]), "code": ("VARCHAR", [r.code for r in failed]),
                "run_id": ("VARCHAR", [run_id] * len(failed)), "at": ("TIMESTAMP", [at] * len(failed))})
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return slice_


def run_outcomes(conn: duckdb.DuckDBPyConnection, name: str, run_id: str) -> pl.DataFrame | None:
    """``source_id``, ``outcome`` of the object's records in one run (None before any writer ran)."""
    if not _load_tables(conn) & {"journal", _EARLIER_NAME}:
        return None
    ensure_journal(conn)
    return conn.execute(f"SELECT source_id, outcome FROM {JOURNAL} WHERE object = ? AND run_id = ?",
                        [name, run_id]).pl()


def known_ids(conn: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Per record (object, table, source id) the last Dataverse id the journal holds."""
    ensure_journal(conn)
    return conn.sql(f"""SELECT object, "table", source_id,
        arg_max(dataverse_id, "at") FILTER (WHERE dataverse_id IS NOT NULL) AS dataverse_id
        FROM {JOURNAL} GROUP BY ALL""").pl()


def mark_rolled_back(conn: duckdb.DuckDBPyConnection, undone: Sequence[tuple[str, str]], run_id: str) -> int:
    """Mark every record rollback deleted or restored (``(table, dataverse id)``) as ``rolled_back``, so the next
    migration sends it again instead of finding its old body hash "unchanged" (the journal would otherwise still
    vouch for a record that no longer exists, or holds its before-image again)."""
    if not undone or not _load_tables(conn) & {"journal", _EARLIER_NAME}:
        return 0
    ensure_journal(conn)
    frame = pl.DataFrame(list(undone), schema={"table": pl.String, "dataverse_id": pl.String}, orient="row")
    conn.register("undone", frame)
    try:
        before = conn.execute(f"SELECT count(*) FROM {JOURNAL}").fetchone()[0]
        conn.execute(f"""INSERT INTO {JOURNAL} BY NAME
            SELECT DISTINCT l.object, l."table", l.source_id, NULL AS dataverse_id, NULL AS body_hash,
                   NULL AS digests, 'rolled_back' AS outcome, ? AS run_id, now()::TIMESTAMP AS "at"
            FROM {JOURNAL} l JOIN undone u ON l."table" = u."table" AND l.dataverse_id = u.dataverse_id""",
                     [run_id])
        return conn.execute(f"SELECT count(*) FROM {JOURNAL}").fetchone()[0] - before
    finally:
        conn.unregister("undone")
