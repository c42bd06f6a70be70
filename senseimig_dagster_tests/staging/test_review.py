"""The review list: one row per quarantined or rejected record, reasons and field names, never a value."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import polars as pl

from senseimig_dagster.cli.review import write_review
from senseimig_dagster.staging.review import review_list, review_values

QUARANTINE = pl.DataFrame({
    "object": ["ledger_transaction"] * 3 + ["patient"],
    "source_id": ["t1", "t1", "t2", "p1"],
    "field": ["amount", "patient_id", "comment", "mobile_phone"],
    "rule": ["amount_precision", "orphan_reference", "control_characters", "invalid_phone"],
    "severity": ["row", "field", "warning", "field"],
    "raw_value": ["12.345", "p-typo", "a\x07b", "555-SECRET"]})
REJECTS = pl.DataFrame({
    "object": ["patient", "patient", "patient", "patient"], "source_id": [None, "p9", "p1", "p5"],
    "source_ref": ["line 7", "line 9", "line 3", "line 12"],
    "reason": ["malformed_row", "invalid_encoding", "wrong_type", "duplicate_identical"],
    "field": [None, None, "date_of_birth", "id"], "raw": ["Jane,,", "J\\xe9", "x", "y"]})


def test_one_row_per_record_with_reasons_and_fields_and_no_value() -> None:
    listed = review_list(QUARANTINE, REJECTS, {"patient": {"p1"}})
    assert listed.select("kind", "object", "record_id", "place", "reasons", "fields").rows() == [
        ("quarantined", "ledger_transaction", "t1", None, "amount_precision; orphan_reference", "amount; patient_id"),
        ("quarantined", "patient", "p1", None, "invalid_phone", "mobile_phone"),
        ("rejected", "patient", "p9", "line 9", "invalid_encoding", None),
        ("rejected", "patient", None, "line 7", "malformed_row", None)]
    text = listed.write_csv()
    assert all(v not in text for v in ("12.345", "p-typo", "555-SECRET", "Jane", "xe9"))


def test_the_values_go_only_to_an_owner_only_file(tmp_path: Path) -> None:
    database = tmp_path / "m.duckdb"
    with duckdb.connect(str(database)) as conn:
        conn.execute("CREATE SCHEMA staging; CREATE SCHEMA raw")
        conn.register("q", QUARANTINE)
        conn.register("r", REJECTS)
        conn.execute("CREATE TABLE staging.quarantine AS SELECT * FROM q")
        conn.execute("CREATE TABLE raw._rejects AS SELECT * FROM r")
        conn.execute("CREATE TABLE raw.patient AS SELECT 'p1' AS id")
        listed = write_review(conn, tmp_path / "review.csv", tmp_path / "values.csv")
    assert listed.height == 4 and "555-SECRET" not in (tmp_path / "review.csv").read_text()
    assert os.stat(tmp_path / "values.csv").st_mode & 0o777 == 0o600
    assert "555-SECRET" in (tmp_path / "values.csv").read_text()
    assert review_values(QUARANTINE, REJECTS).height == 6  # the warning and the collapsed copy are not listed
