"""The document journal: DuckDB table ``load.documents``, one row per document per run (outcome, route, reason, size,
SHA-256, ids, and the stored file name: PHI, so it stays in DuckDB), beside the load journal's row for the same
document (so rollback's ``rolled_back`` marks and the deletions report see documents too). A document already
uploaded with the same hash and note columns is not sent again (its note-columns digest compared unkeyed when it was
journaled before the store was encrypted: ``load/journal.py``)."""

from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl

from senseimig_dagster.audit.log import insert_columns
from senseimig_dagster.audit.rollback import GRAPH_FILES
from senseimig_dagster.load.document_writer import DocumentResult, PreviousDocument
from senseimig_dagster.load.journal import JOURNAL, RecordOutcome, append_outcomes, ensure_journal

NOTES_TABLE = "annotation"
DOCUMENTS = "load.documents"
OUTCOMES = ("note", "note_blocks", "sharepoint", "unchanged", "failed")
_DDL = f"""
CREATE SCHEMA IF NOT EXISTS load;
CREATE TABLE IF NOT EXISTS {DOCUMENTS} (source_id VARCHAR NOT NULL, outcome VARCHAR NOT NULL, route VARCHAR,
    reason VARCHAR, size_bytes BIGINT, sha256 VARCHAR, meta_hash VARCHAR, stored_name VARCHAR, note_id VARCHAR,
    location_id VARCHAR, item_id VARCHAR, verified BOOLEAN, status INTEGER, run_id VARCHAR NOT NULL,
    "at" TIMESTAMP NOT NULL, seconds DOUBLE);
ALTER TABLE load.documents ADD COLUMN IF NOT EXISTS seconds DOUBLE;
"""
VALUE_SCHEMA = {"source_id": pl.String, "outcome": pl.String, "route": pl.String, "reason": pl.String,
                "size_bytes": pl.Int64, "sha256": pl.String, "note_id": pl.String, "location_id": pl.String,
                "item_id": pl.String, "verified": pl.Boolean, "run_id": pl.String}


def previous_documents(conn: duckdb.DuckDBPyConnection, name: str) -> dict[str, PreviousDocument]:
    """The last successful upload of each document of object ``name``, unless rollback undid it since
    (``rolled_back`` in the load journal) or its latest attempt failed."""
    conn.execute(_DDL)
    ensure_journal(conn)
    rows = conn.execute(f"""
        WITH latest AS (
            SELECT source_id, arg_max(outcome, "at") AS last, max("at") FILTER (WHERE outcome <> 'failed') AS sent,
                   arg_max(COLUMNS(* EXCLUDE (source_id, run_id, "at")), "at") FILTER (WHERE outcome <> 'failed')
            FROM {DOCUMENTS} GROUP BY source_id),
        undone AS (SELECT source_id FROM {JOURNAL} WHERE object = ? GROUP BY source_id
                   HAVING arg_max(outcome, "at") = 'rolled_back')
        SELECT source_id, route, sha256, meta_hash, stored_name, note_id, location_id, item_id,
               coalesce(sent <= (SELECT max("before") FROM load.unkeyed_digests), false)
        FROM latest WHERE last <> 'failed' AND source_id NOT IN (SELECT source_id FROM undone)""",
                        [name]).fetchall()
    return {sid: PreviousDocument(route, sha, meta, stored, note, location, item, unkeyed)
            for sid, route, sha, meta, stored, note, location, item, unkeyed in rows}


# Failures that only a change at the source can cure: a window run retries them only when the document itself is
# in the window (a full run re-attempts every document anyway).
SOURCE_FAULTS = ("zero_byte_file", "missing_at_source", "source_hash_mismatch")


def failed_documents(conn: duckdb.DuckDBPyConnection) -> set[str]:
    """Documents whose latest attempt failed for a reason a retry may cure (a window run tries them again)."""
    conn.execute(_DDL)
    return {r[0] for r in conn.execute(
        f"""SELECT source_id FROM {DOCUMENTS} GROUP BY source_id
            HAVING arg_max(outcome, "at") = 'failed' AND NOT list_has_any(
                string_split(coalesce(arg_max(reason, "at"), ''), ';'), ?)""", [list(SOURCE_FAULTS)]).fetchall()}


def record(conn: duckdb.DuckDBPyConnection, name: str, results: list[DocumentResult], run_id: str) -> pl.DataFrame:
    """``load.documents`` and the load journal for this run; returns the asset value (no file names)."""
    at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    conn.execute(_DDL)
    columns = {
        "source_id": ("VARCHAR", [r.source_id for r in results]), "outcome": ("VARCHAR", [r.outcome for r in results]),
        "route": ("VARCHAR", [r.route for r in results]), "reason": ("VARCHAR", [r.reason for r in results]),
        "size_bytes": ("BIGINT", [r.size for r in results]), "sha256": ("VARCHAR", [r.sha256 for r in results]),
        "meta_hash": ("VARCHAR", [r.meta_hash for r in results]),
        "stored_name": ("VARCHAR", [r.stored_name for r in results]),
        "note_id": ("VARCHAR", [r.note_id for r in results]),
        "location_id": ("VARCHAR", [r.location_id for r in results]),
        "item_id": ("VARCHAR", [r.item_id for r in results]), "verified": ("BOOLEAN", [r.verified for r in results]),
        "status": ("INTEGER", [r.status for r in results]), "run_id": ("VARCHAR", [run_id] * len(results)),
        "at": ("TIMESTAMP", [at] * len(results)), "seconds": ("DOUBLE", [r.seconds for r in results])}
    if results:
        conn.execute("BEGIN")
        try:
            insert_columns(conn, DOCUMENTS, columns)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    append_outcomes(conn, [_outcome(name, r) for r in results], run_id)
    return pl.DataFrame({k: v for k, (_, v) in columns.items() if k in VALUE_SCHEMA}, schema=VALUE_SCHEMA)


def _outcome(name: str, r: DocumentResult) -> RecordOutcome:
    outcome = {"failed": "failed", "unchanged": "unchanged"}.get(r.outcome, "created")
    table, record_id = (GRAPH_FILES, r.item_id) if r.route == "sharepoint" else (NOTES_TABLE, r.note_id)
    code = r.reason if r.outcome == "failed" else None
    return RecordOutcome(name, table, r.source_id, record_id, r.sha256 if outcome != "failed" else None, {},
                         outcome, r.status, code)
