"""go_live_ready's wiring: after every writer, a blocking reconciliation check, its inputs read from DuckDB."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl

from senseimig_dagster import mapping
from senseimig_dagster.assets.go_live import GO_LIVE_KEY, _read_ledger_inputs, go_live_ready
from senseimig_dagster.assets.metadata import markdown_table
from senseimig_dagster.assets.verification import checks_for
from senseimig_dagster.assets.writers import WRITER_KEYS
from senseimig_dagster.audit.log import AuditLog
from senseimig_dagster.dataverse import DataverseClient
from senseimig_dagster.resources import (
    AuditStore,
    DataverseResource,
    MappingResource,
    StagingResource,
    StoreResource,
)
from senseimig_dagster.sandbox.dataverse_emulator import DataverseEmulator
from senseimig_dagster.store import Store
from senseimig_dagster.verify.billing import (
    AMOUNT,
    CHECK_NAME,
    entry_type_labels,
    ledger_measures,
    sensei_rows,
)
from senseimig_dagster_tests.support.environments import in_process_client
from senseimig_dagster_tests.support.loaded_tenant import FMAP, PLAN, Loaded


def test_go_live_waits_for_every_writer_behind_a_blocking_reconciliation() -> None:
    assert set(go_live_ready.asset_deps[GO_LIVE_KEY]) == set(WRITER_KEYS) and len(WRITER_KEYS) > 10
    (spec,) = go_live_ready.check_specs
    assert (spec.name, spec.blocking) == (CHECK_NAME, True)
    checks = checks_for("patient")
    assert {s.name for s in checks.check_specs} == {"dataverse_counts", "dataverse_fields", "dataverse_conservation"}


def _ledger_database(loaded: Loaded, path: Path) -> Path:
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE SCHEMA raw; CREATE SCHEMA staging")
        for name in ("ledger_transaction", "claim", "location"):
            conn.register("frame", loaded.raw[name])  # with the lineage columns the raw layer adds
            conn.execute(f'CREATE TABLE raw."{name}" AS SELECT *, now() AS _extracted_at, '
                         f'row_number() OVER () AS _ordinal FROM frame')
        for name in ("ledger_transaction", "claim"):
            conn.register("frame", loaded.staging.staged[name])
            conn.execute(f'CREATE TABLE staging."{name}" AS SELECT * FROM frame')
        conn.register("frame", loaded.staging.quarantine)
        conn.execute("CREATE TABLE staging.quarantine AS SELECT * FROM frame")
    return path


def test_ledger_inputs_come_from_the_raw_staging_and_quarantine_tables(loaded: Loaded, tmp_path: Path) -> None:
    with duckdb.connect(str(_ledger_database(loaded, tmp_path / "m.duckdb"))) as conn:
        inputs, names = _read_ledger_inputs(Store(conn), ["claim", "ledger_transaction"])
    assert set(names) == set(loaded.raw["location"].get_column("id").cast(pl.String))
    assert inputs.staged["claim"].height == loaded.staging.staged["claim"].height
    held = inputs.quarantined_ids["ledger_transaction"]
    assert held and set(held) <= set(loaded.raw["ledger_transaction"].get_column("id").cast(pl.String))
    staged_ids = {k: v.get_column("_source_id").to_list() for k, v in inputs.staged.items()}
    rows = sensei_rows(inputs.raw, staged_ids, ledger_measures(FMAP), entry_type_labels(PLAN, FMAP),
                       inputs.quarantined_ids)
    assert rows.filter(pl.col("quarantined")).height > 0 and rows.get_column(AMOUNT).null_count() == 0


# -- checks_for through Dagster: resources, the staging metadata, blocking -------------------------------------------
_APP: list[DataverseEmulator] = []


class _InProcessDataverse(DataverseResource):
    """The emulator of this test, in process (no token endpoint)."""

    def client(self) -> DataverseClient:
        return in_process_client(_APP[0])


def _run(loaded: Loaded, database: Path, name: str) -> dg.ExecuteInProcessResult:
    counts = loaded.staging.counts

    @dg.asset(key=["staging", name])
    def staged() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"conservation": dg.MetadataValue.md(markdown_table(counts))})

    @dg.asset(key=["dataverse", name], deps=[staged])
    def writer() -> None:
        return None

    @dg.asset(key=["dataverse", "child"], deps=[writer])
    def child() -> None:
        return None

    with duckdb.connect(str(database)) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS staging")
        conn.register("frame", loaded.staging.staged[name])
        conn.execute(f'CREATE OR REPLACE TABLE staging."{name}" AS SELECT * FROM frame')
    return dg.materialize([staged, writer, child, checks_for(name)], raise_on_error=False,
                          resources={"store": StoreResource(database=str(database)), "mapping": MappingResource(
                              path=str(database.parent / "absent.yaml")), "dataverse": _InProcessDataverse()})


def test_checks_for_runs_in_dagster_and_blocks_children_when_a_row_is_missing(
        loaded: Loaded, emulator: DataverseEmulator, dv: DataverseClient, tmp_path: Path) -> None:
    _APP[:] = [emulator]
    result = _run(loaded, tmp_path / "m.duckdb", "payer")
    evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert evaluations == {"dataverse_counts": True, "dataverse_fields": True, "dataverse_conservation": True}
    assert dg.AssetKey(["dataverse", "child"]) in {e.asset_key for e in result.get_asset_materialization_events()}
    gone = loaded.staging.staged["payer"].get_column("_source_id").sort()[0]
    dv.delete("accounts", {"smig_sourcesystemid": gone})
    result = _run(loaded, tmp_path / "m2.duckdb", "payer")
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not evaluations["dataverse_counts"].passed and gone in evaluations["dataverse_counts"].description
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert dg.AssetKey(["dataverse", "child"]) not in materialized  # blocking: the child never loads


def _go_live(database: Path) -> dg.ExecuteInProcessResult:
    return dg.materialize([go_live_ready], raise_on_error=False, resources={
        "store": StoreResource(database=str(database)), "dataverse": _InProcessDataverse(),
        "mapping": MappingResource(path=str(database.parent / "absent.yaml")),
        "staging_rules": StagingResource(corrections_path=str(database.parent / "no_corrections.yaml")),
        "audit": AuditStore(path=str(database.parent / "audit.duckdb"))})


def test_go_live_ready_passes_with_the_table_and_fails_with_it_when_the_ledger_is_off(
        loaded: Loaded, emulator: DataverseEmulator, dv: DataverseClient, tmp_path: Path) -> None:
    _APP[:] = [emulator]
    database = _ledger_database(loaded, tmp_path / "m.duckdb")
    result = _go_live(database)
    assert result.success
    (evaluation,) = result.get_asset_check_evaluations()
    assert (evaluation.check_name, evaluation.passed) == (CHECK_NAME, True)
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert "### All locations" in metadata["reconciliation"].value and metadata["rerun"].value is False
    assert any(v != "0.00" for v in metadata["quarantined_by_location"].value.values())

    charge = loaded.staging.staged["ledger_transaction"].filter(pl.col("smig_entrytype") == 727000000).sort(
        "_source_id").row(0, named=True)
    dv.update("smig_billingledgers", {"smig_sourcesystemid": charge["_source_id"]},
              {"smig_amount": float(charge["smig_amount"]) + 5000})
    result = _go_live(database)  # the map is not confirmed here: no re-run, so it stays off
    assert not result.success and not result.get_asset_materialization_events()
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "does not reconcile" in failure.step_failure_data.user_failure_data.description
    assert "| NO |" in failure.step_failure_data.user_failure_data.description


def test_go_live_ready_reruns_the_ledger_once_under_a_confirmed_map(
        loaded: Loaded, emulator: DataverseEmulator, dv: DataverseClient, tmp_path: Path) -> None:
    _APP[:] = [emulator]
    database = _ledger_database(loaded, tmp_path / "m.duckdb")
    map_path = tmp_path / "mapping.yaml"
    shutil.copy(mapping.default_map_path(), map_path)
    mapping.confirm(map_path, by="test")
    gone = loaded.staging.staged["ledger_transaction"].get_column("_source_id").sort()[0]
    dv.delete("smig_billingledgers", {"smig_sourcesystemid": gone})
    result = dg.materialize([go_live_ready], resources={
        "store": StoreResource(database=str(database)), "dataverse": _InProcessDataverse(),
        "mapping": MappingResource(path=str(map_path)),
        "staging_rules": StagingResource(corrections_path=str(tmp_path / "no_corrections.yaml")),
        "audit": AuditStore(path=str(tmp_path / "audit.duckdb"))})
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["rerun"].value is True and metadata["reupserted_source_ids"].value == {"ledger_transaction": [gone]}
    assert "| NO |" in metadata["first_reconciliation"].value and "| NO |" not in metadata["reconciliation"].value
    back = dv.retrieve("smig_billingledgers", {"smig_sourcesystemid": gone}, ["smig_amount", "smig_billingledgerid"])
    # the repair is a write like the writers': in the audit log (rollback undoes it) and in the load journal
    with AuditStore(path=str(tmp_path / "audit.duckdb")).connect() as conn:
        writes = [(w.asset, w.source_id, w.operation, w.outcome, w.dataverse_id) for w in AuditLog(conn).writes()]
    assert writes == [(GO_LIVE_KEY.to_user_string(), gone, "create", "ok", back["smig_billingledgerid"])]
    with duckdb.connect(str(database)) as conn:
        journal = conn.execute("SELECT object, source_id, outcome, dataverse_id, run_id FROM load.journal").fetchall()
    assert journal == [("ledger_transaction", gone, "created", back["smig_billingledgerid"], result.run_id)]
