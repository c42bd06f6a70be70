"""``make demo``'s bookkeeping: a failed check or phase makes the demo fail (exit 1), and the per-table summary
counts each record once, by its latest outcome, leaving failed writes out."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from senseimig_dagster.cli.demo import DemoRun, records_per_table


def test_a_failed_check_fails_the_demo_even_when_every_phase_succeeded() -> None:
    run = DemoRun()
    with run.phase("load + verify"):
        pass
    run.checks += [("dataverse/patient", "dataverse_counts", True), ("dataverse/patient", "dataverse_fields", False)]

    assert run.failures == [] and run.ok is False


def test_a_phase_that_raises_is_recorded_as_failed() -> None:
    run = DemoRun()
    with pytest.raises(RuntimeError), run.phase("stage"):
        raise RuntimeError("boom")

    assert run.failures == ["stage"] and not run.ok
    assert run.phases[0].ended >= run.phases[0].started


def test_records_per_table_counts_each_record_once_by_its_latest_outcome(tmp_path: Path) -> None:
    database = str(tmp_path / "db.duckdb")
    with duckdb.connect(database) as conn:
        conn.execute('CREATE SCHEMA load; CREATE TABLE load.journal ("table" VARCHAR, source_id VARCHAR, '
                     'outcome VARCHAR, "at" TIMESTAMP)')
        conn.executemany("INSERT INTO load.journal VALUES (?, ?, ?, ?)", [
            ["contact", "p1", "created", "2026-01-01 10:00"], ["contact", "p1", "updated", "2026-01-02 10:00"],
            ["contact", "p2", "created", "2026-01-01 10:00"], ["contact", "p2", "unchanged", "2026-01-02 10:00"],
            ["contact", "p3", "failed", "2026-01-01 10:00"],  # never landed: not in Dataverse
            ["account", "l1", "created", "2026-01-01 10:00"]])

    assert records_per_table(database) == [("account", 1, 1, 0), ("contact", 2, 2, 1)]
