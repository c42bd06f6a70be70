"""The load journal: appended per run, read back as each record's latest state; a store from before the journal was
renamed keeps its history."""

from __future__ import annotations

import duckdb

from senseimig_dagster.load.journal import (
    JOURNAL,
    RecordOutcome,
    append_outcomes,
    ensure_journal,
    mark_rolled_back,
    previous_entries,
)


def _outcome(sid: str, outcome: str, dvid: str | None = "g1") -> RecordOutcome:
    return RecordOutcome("patient", "contact", sid, dvid, None if outcome == "failed" else "h", {"c": "d"}, outcome,
                         500 if outcome == "failed" else None, "0x1" if outcome == "failed" else None)


def test_the_latest_entry_per_record_is_what_the_next_run_compares() -> None:
    conn = duckdb.connect()
    ensure_journal(conn)
    append_outcomes(conn, [_outcome("a", "created"), _outcome("b", "failed", None)], "run-1")
    append_outcomes(conn, [_outcome("b", "created", "g2")], "run-2")
    previous = previous_entries(conn, "patient")
    assert previous[("contact", "a")].body_hash == "h" and not previous[("contact", "a")].failed
    assert previous[("contact", "b")].dataverse_id == "g2" and not previous[("contact", "b")].failed
    assert conn.execute("SELECT count(*) FROM load.failures").fetchone()[0] == 1


def test_rolled_back_records_are_sent_again() -> None:
    conn = duckdb.connect()
    ensure_journal(conn)
    append_outcomes(conn, [_outcome("a", "created")], "run-1")
    assert mark_rolled_back(conn, [("contact", "g1")], "rollback-run") == 1
    assert previous_entries(conn, "patient") == {}


def test_a_store_from_before_the_rename_keeps_its_history() -> None:
    conn = duckdb.connect()
    conn.execute("""CREATE SCHEMA load; CREATE TABLE load.ledger (object VARCHAR NOT NULL, "table" VARCHAR NOT NULL,
        source_id VARCHAR NOT NULL, dataverse_id VARCHAR, body_hash VARCHAR, digests JSON, outcome VARCHAR NOT NULL,
        run_id VARCHAR NOT NULL, "at" TIMESTAMP NOT NULL)""")
    conn.execute("INSERT INTO load.ledger VALUES ('patient', 'contact', 'a', 'g1', 'h', '{}', 'created', 'r', now())")
    ensure_journal(conn)
    assert conn.execute(f"SELECT count(*) FROM {JOURNAL}").fetchone()[0] == 1
    assert ("contact", "a") in previous_entries(conn, "patient")
