"""The ``rollback`` and ``export_audit`` jobs, over HTTPS against the emulator with tokens from the Entra stand-in
(the one rollback test over real HTTP), and the ``senseimig rollback`` command line."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from dagster import DagsterInstance

from senseimig_dagster.assets.audit import export_audit, rollback, table_order
from senseimig_dagster.audit.log import AuditLog
from senseimig_dagster.cli import build_parser, commands
from senseimig_dagster.load.journal import ensure_journal, mark_rolled_back, previous_entries
from senseimig_dagster.resources import AuditStore, DataverseResource, GraphResource, StoreResource
from senseimig_dagster.sandbox.tls import TLSFiles
from senseimig_dagster_tests.support.audited_migration import Migration, seed_existing, setup_schema
from senseimig_dagster_tests.support.dataverse_state import diff, snapshot
from senseimig_dagster_tests.support.environments import sandbox


@pytest.fixture
def served(tmp_path: Path, tls_files: TLSFiles) -> Iterator[tuple[DataverseResource, object]]:
    with sandbox(tmp_path, tls=tls_files) as stand_ins:  # seeded, over HTTPS with Entra ID tokens
        yield stand_ins.dataverse(), stand_ins.emulator


def test_the_rollback_job_undoes_a_migration_over_https(served, tmp_path: Path) -> None:
    resource, emulator = served
    store_path, audit_path = str(tmp_path / "store.duckdb"), str(tmp_path / "audit.duckdb")
    audit = AuditStore(path=audit_path, key="job-test-key", allow_unsafe_crypto=True)
    with resource.client() as client:
        with duckdb.connect(store_path) as store:
            setup_schema(client, store)
        existing = seed_existing(client)
        before = snapshot(emulator)
        with audit.connect() as conn:
            Migration(client, AuditLog(conn), existing).run()
    resources = {"dataverse": resource, "graph": GraphResource(site_url=None), "audit": audit,
                 "store": StoreResource(database=store_path)}
    instance = DagsterInstance.ephemeral()

    result = rollback.execute_in_process(resources=resources, instance=instance)

    assert result.success and diff(before, snapshot(emulator)) == []
    assert "| deleted | 11 |" in result.output_for_node("rollback_op")
    again = rollback.execute_in_process(resources=resources, instance=instance)
    assert again.success and "| deleted | 0 |" in again.output_for_node("rollback_op")

    target = tmp_path / "export" / "audit.parquet"
    exported = export_audit.execute_in_process(
        resources={"audit": audit}, instance=instance,
        run_config={"ops": {"export_audit_op": {"config": {"path": str(target), "format": "parquet"}}}})
    assert exported.success
    undo = duckdb.sql(f"SELECT count(*) FROM read_parquet('{target}') WHERE operation = 'undo_delete' "
                      "AND outcome = 'ok'").fetchone()
    assert undo == (11,)


def test_children_tables_come_after_their_parents_in_the_registry_order() -> None:
    order = table_order()
    assert order.index("account") < order.index("contact") < order.index("smig_appointment")
    assert order.index("smig_treatmentplan") < order.index("smig_plannedprocedure")


def test_the_cli_takes_the_rollback_options() -> None:
    args = build_parser().parse_args(["rollback", "--remove-schema", "--force", "--run-id", "abc"])
    assert (args.remove_schema, args.force, args.run_id) == (True, True, "abc")
    assert getattr(commands, args.command_name) is commands.rollback
    defaults = build_parser().parse_args(["rollback"])
    assert (defaults.remove_schema, defaults.force, defaults.run_id) == (False, False, None)


def test_rollback_makes_the_load_journal_forget_what_it_undid() -> None:
    """Otherwise the next migration would find its old body hashes "unchanged" and send nothing."""
    with duckdb.connect() as conn:
        ensure_journal(conn)
        at = dt.datetime(2026, 11, 1)
        conn.execute("INSERT INTO load.journal VALUES ('patient', 'contact', 'p1', 'id-1', 'h1', '{}', 'created', 'r1', ?),"
                     "('patient', 'contact', 'p2', 'id-2', 'h2', '{}', 'created', 'r1', ?)", [at, at])
        assert set(previous_entries(conn, "patient")) == {("contact", "p1"), ("contact", "p2")}
        assert mark_rolled_back(conn, [("contact", "id-1")], "rollback-run") == 1
        assert set(previous_entries(conn, "patient")) == {("contact", "p2")}
        conn.execute("INSERT INTO load.journal VALUES ('patient', 'contact', 'p1', 'id-9', 'h1', '{}', 'created', "
                     "'r2', now()::TIMESTAMP + INTERVAL 1 MINUTE)")
        assert previous_entries(conn, "patient")[("contact", "p1")].dataverse_id == "id-9"  # loaded again
