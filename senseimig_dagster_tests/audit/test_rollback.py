"""Rollback against the emulator: migrate, roll back, compare the store with its snapshot from before the migration
(records of every table and the custom schema) — identical after a clean run, after a run that died half-way, and
after a rollback that itself died half-way; a person's change is reported and kept; a second rollback writes
nothing; schema removal returns the metadata to its pre-migration state."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import httpx
import pytest

from senseimig_dagster.audit.log import AuditLog
from senseimig_dagster.audit.rollback import Rollback
from senseimig_dagster.audit.schema_changes import read_schema_changes
from senseimig_dagster.dataverse import DataverseClient
from senseimig_dagster.sandbox.dataverse_emulator import DataverseEmulator
from senseimig_dagster_tests.support.audited_migration import (
    TABLE_ORDER,
    Crash,
    Migration,
    connect,
    seed_existing,
    setup_schema,
)
from senseimig_dagster_tests.support.constants import SOURCE_KEY as KEY
from senseimig_dagster_tests.support.dataverse_state import diff, snapshot
from senseimig_dagster_tests.support.environments import open_emulator
from senseimig_dagster_tests.support.wire import counting_transport


@dataclass
class Env:
    emulator: DataverseEmulator
    client: DataverseClient
    log: AuditLog
    store: duckdb.DuckDBPyConnection  # Dagster's DuckDB store: audit.schema_changes
    existing: dict[str, str]

    def rollback(self, run_id: str = "run-rollback", client: DataverseClient | None = None, **options) -> Rollback:
        remove_schema = options.pop("remove_schema", False)
        rollback = Rollback(client or self.client, self.log, run_id, table_order=TABLE_ORDER, **options)
        rollback.run(read_schema_changes(self.store), remove_schema=remove_schema)
        return rollback


def _env(tmp_path: Path, with_schema: bool) -> Iterator[Env]:
    store, emulator = open_emulator(tmp_path / "dv.sqlite")
    client = connect(emulator)
    store = duckdb.connect()
    if with_schema:
        setup_schema(client, store)
    yield Env(emulator, client, AuditLog(duckdb.connect()), store, seed_existing(client) if with_schema else {})
    client.close()
    store.close()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from _env(tmp_path, with_schema=True)


def test_rollback_returns_the_store_to_its_state_before_the_migration(env: Env) -> None:
    before = snapshot(env.emulator)
    Migration(env.client, env.log, env.existing).run()
    assert diff(before, snapshot(env.emulator))  # the migration did change things

    report = env.rollback().report

    assert diff(before, snapshot(env.emulator)) == []
    assert len(report.deleted) == 3 + 1 + 4 + 3 and len(report.restored) == 2
    assert report.changed_by_person == [] and report.failed == []
    deleted_tables = [table for table, _ in report.deleted]  # children before parents
    assert deleted_tables == ["smig_appointment"] * 3 + ["contact"] * 5 + ["account"] * 3
    assert "| deleted | 11 |" in report.markdown()


def test_a_second_rollback_writes_nothing(env: Env) -> None:
    before = snapshot(env.emulator)
    Migration(env.client, env.log, env.existing).run()
    env.rollback()
    rows = env.log.count()
    transport, counts = counting_transport(env.emulator)

    report = env.rollback("run-rollback-2", client=connect(env.emulator, transport)).report

    assert report.writes == 0 and report.changed_by_person == []
    assert set(counts()) <= {"GET"}  # no POST, PATCH or DELETE
    assert env.log.count() == rows
    assert diff(before, snapshot(env.emulator)) == []


@pytest.mark.parametrize("stop_after", [1, 3, 6])
def test_a_migration_that_died_half_way_still_rolls_back_to_the_same_state(env: Env, stop_after: int) -> None:
    before = snapshot(env.emulator)
    with pytest.raises(Crash):
        Migration(env.client, env.log, env.existing, stop_after=stop_after).run()
    pending = [w for w in env.log.writes() if w.outcome == "pending"]
    assert pending  # intents without outcome: records that landed but were never recorded

    env.rollback()

    assert diff(before, snapshot(env.emulator)) == []


def test_a_rollback_killed_half_way_finishes_on_the_next_run(env: Env) -> None:
    before = snapshot(env.emulator)
    Migration(env.client, env.log, env.existing).run()
    inner = httpx.WSGITransport(app=env.emulator)
    deletes = 0

    class DiesAfterFiveDeletes(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            nonlocal deletes
            if request.method == "DELETE":
                deletes += 1
                if deletes > 5:
                    raise KeyboardInterrupt  # the process is stopped mid-run
            return inner.handle_request(request)

    with pytest.raises(KeyboardInterrupt):
        env.rollback(client=connect(env.emulator, DiesAfterFiveDeletes()))
    assert diff(before, snapshot(env.emulator))  # half done

    report = env.rollback("run-rollback-2").report

    assert diff(before, snapshot(env.emulator)) == []
    assert len(report.deleted) == 11 - 5  # the five already deleted are not counted (or sent) again


def test_records_a_person_changed_after_the_migration_are_reported_and_kept(env: Env) -> None:
    Migration(env.client, env.log, env.existing).run()
    patient = env.client.retrieve("contacts", {KEY: "pat-2"}, select=["contactid"])["contactid"]
    env.client.update("contacts", patient, {"telephone1": "555-0123"})  # a person, after the migration
    env.client.update("accounts", env.existing["account"], {"description": "edited by staff"})

    report = env.rollback().report

    assert sorted(report.changed_by_person) == sorted([("contact", patient), ("account", env.existing["account"])])
    assert env.client.retrieve("contacts", patient, select=["telephone1"])["telephone1"] == "555-0123"
    kept = env.client.retrieve("accounts", env.existing["account"], select=["description", "telephone1"])
    assert kept["description"] == "edited by staff" and kept["telephone1"] == "555-0111"  # not overwritten
    assert patient in report.markdown()  # ids only
    # With force they are undone too.
    forced = env.rollback("run-rollback-force", force=True).report
    assert ("contact", patient) in forced.deleted and ("account", env.existing["account"]) in forced.restored


def test_only_the_given_runs_writes_are_undone(env: Env) -> None:
    Migration(env.client, env.log, env.existing).run()
    env.client.create("accounts", {KEY: "loc-late", "name": "Later"})
    later = Migration(env.client, env.log, env.existing, run_id="run-later")
    later.create("dataverse/location", "account", "accounts", "accountid", [{KEY: "loc-9", "name": "Practice 9"}])

    report = env.rollback(only_run="run-later").report

    assert [t for t, _ in report.deleted] == ["account"] and report.restored == []
    assert env.client.retrieve("accounts", {KEY: "loc-0"}, select=["name"])["name"] == "Practice 0"


def test_schema_removal_returns_the_metadata_to_its_pre_migration_state(tmp_path: Path) -> None:
    for env in _env(tmp_path, with_schema=False):
        before = snapshot(env.emulator)
        setup_schema(env.client, env.store)
        env.existing.update(seed_existing(env.client))
        Migration(env.client, env.log, env.existing).run()
        assert env.emulator.catalog.table("smig_appointment")

        report = env.rollback(remove_schema=True).report

        # The pre-existing records remain (restored), so compare the schema and every record but those two.
        after = snapshot(env.emulator)
        seeded = {("account", env.existing["account"]), ("contact", env.existing["contact"])}
        assert {k: v for k, v in after["records"].items() if k not in seeded} == before["records"]
        assert after["schema"] == before["schema"] and after["relationships"] == before["relationships"]
        assert any(s.startswith("table smig_appointment") for s in report.schema_removed)
        assert any(s.startswith("publisher") for s in report.schema_removed)
        again = env.rollback("run-rollback-2", remove_schema=True).report
        assert again.writes == 0 and again.failed == []


def test_schema_removal_keeps_a_table_that_still_holds_records_nobody_migrated(env: Env) -> None:
    Migration(env.client, env.log, env.existing).run()
    env.client.create("smig_appointments", {"smig_name": "booked by staff"})

    report = env.rollback(remove_schema=True).report

    assert any(s.startswith("table smig_appointment: still holds 1 records") for s in report.schema_kept)
    assert env.emulator.catalog.table("smig_appointment")
