"""A failed check says in one line what failed, with counts (the header the UI shows), and no record values."""

from __future__ import annotations

import re

import polars as pl
from dagster import AssetCheckResult

from senseimig_dagster.assets import documents
from senseimig_dagster.assets.gate import gate_result
from senseimig_dagster.assets.inventory import inventory_checks
from senseimig_dagster.assets.keys import RECORD_COUNTS, staging_key, writer_key
from senseimig_dagster.assets.staging import _conservation_check
from senseimig_dagster.load.document_writer import DocumentResult
from senseimig_dagster.staging.pipeline import COUNT_COLUMNS


def assert_one_line_reason(result: AssetCheckResult, *expected: str) -> None:
    assert not result.passed, result.check_name
    reason = result.description or ""
    assert reason and "\n" not in reason, result.check_name
    assert re.search(r"\d", reason), reason  # a count
    for part in expected:
        assert part in reason, reason


def test_each_failed_inventory_check_names_objects_and_counts():
    counts = pl.DataFrame({"object": ["payer", "appointment", "patient"], "source_count": [12, 1952, 303],
                           "records": [0, 1946, 303], "rejected": [0, 4, 0], "duplicate_copies": [0, 0, 0],
                           "unaccounted": [12, 2, 0], "newer_version_rejected": [0, 0, 1]})
    empty, accounted, stale = inventory_checks(counts)
    assert_one_line_reason(empty, "1 objects", "12 rows", "payer")
    assert_one_line_reason(accounted, "14 source records", "2 objects", "payer (+12)", "appointment (+2)")
    assert_one_line_reason(stale, "1 landed records", "patient")


def test_passed_inventory_checks_say_what_passed():
    counts = pl.DataFrame({"object": ["payer"], "source_count": [12], "records": [12], "rejected": [0],
                           "duplicate_copies": [0], "unaccounted": [0], "newer_version_rejected": [0]})
    assert all(r.passed and r.description for r in inventory_checks(counts))


def test_a_failed_staging_conservation_names_the_gap():
    counts = pl.DataFrame({"object": ["patient"], **{c: [0] for c in COUNT_COLUMNS}}).with_columns(
        extracted=pl.lit(303), staged=pl.lit(290), merged=pl.lit(10), conserved=pl.lit(False))
    assert_one_line_reason(_conservation_check(staging_key("patient"), counts), "patient (+3 of 303 extracted)")


def test_failed_document_checks_count_what_failed():
    results = [DocumentResult("d1", "created", verified=False), DocumentResult("d2", "failed", reason="timeout")]
    verified, accounted = documents.checks(writer_key("document"), results, ["d1", "d2", "d3"])
    assert_one_line_reason(verified, "1 read back different", "d1")
    assert_one_line_reason(accounted, "1 without an outcome", "1 failed for a system reason")


def test_a_failed_map_gate_reason_is_one_line(tmp_path):
    assert_one_line_reason(gate_result(tmp_path / "absent.yaml", RECORD_COUNTS), "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("objects: [unclosed\n  - 1\n")
    assert_one_line_reason(gate_result(broken, RECORD_COUNTS), "invalid")
