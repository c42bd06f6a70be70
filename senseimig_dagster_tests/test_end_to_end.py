"""The whole migration through Dagster, then a delta window, then the rollback job: a generated tenant
(60 patients) served by the Sensei simulator over HTTP, the Dataverse emulator over HTTPS with tokens from the Entra
stand-in. extract -> inventory -> confirmed map -> stage -> schema -> owners -> writers -> verification checks ->
go_live_ready (ledger reconciliation); then the simulator serves the tenant's day 2 (``generate_day2``: new
patients, edits, checked-out appointments, payments, soft deletes) and one run over the last two modification-day
partitions goes raw -> staging -> writers -> checks -> deletions report -> go_live_ready, writing exactly the
day-2 records; then ``rollback`` with ``remove_schema`` puts the emulator back exactly as it was (records of every
table and the custom schema, ``modifiedon``/``versionnumber``/ETags aside). The same after a migration that failed
halfway: every write to one table is refused by a fault injected in front of the emulator, the run fails, rollback
still restores the snapshot."""

from __future__ import annotations

import re
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from dagster import AssetKey, AssetSelection, DagsterInstance, Definitions, define_asset_job, materialize

from senseimig_dagster.assets.audit import rollback
from senseimig_dagster.assets.dataverse_schema import dataverse_schema
from senseimig_dagster.assets.go_live import GO_LIVE_KEY, go_live_ready
from senseimig_dagster.assets.inventory import inventory
from senseimig_dagster.assets.keys import DELETIONS
from senseimig_dagster.assets.mapping import mapping_state
from senseimig_dagster.assets.owners import staging_owners
from senseimig_dagster.assets.partitions import modification_days, range_tags
from senseimig_dagster.assets.raw import raw_assets
from senseimig_dagster.assets.staging import staging_assets
from senseimig_dagster.assets.writers import WRITER_KEYS, dataverse_assets, writer_checks
from senseimig_dagster.load.document_journal import DOCUMENTS, SOURCE_FAULTS
from senseimig_dagster.load.journal import JOURNAL
from senseimig_dagster.resources import SenseiSource
from senseimig_dagster.sandbox.dataverse_emulator import DataverseEmulator, RecordStore
from senseimig_dagster.sandbox.generator import generate
from senseimig_dagster.sandbox.generator.day2 import generate_day2, read_changes
from senseimig_dagster.sandbox.sensei_sim import SenseiSimulator, serve
from senseimig_dagster.verify.billing import CHECK_NAME
from senseimig_dagster_tests.support.constants import SEED_TEAM
from senseimig_dagster_tests.support.dataverse_state import diff, snapshot
from senseimig_dagster_tests.support.environments import Sandbox, fast_tmp, open_emulator, sandbox
from senseimig_dagster_tests.support.maps import confirmed_map

pytestmark = pytest.mark.slow
PATIENTS, SEED = 60, 23
BLOCKS_LIMIT = 20_000_000  # maxuploadfilesize (base64 bytes) of the full scenario: over-4-MB notes exist
FAULTY_SET = "smig_treatmentplans"  # dataverse/treatment_plan: its children are never reached
MIGRATION = [dataverse_schema, staging_assets, staging_owners, *dataverse_assets, go_live_ready]
MIGRATE = define_asset_job("e2e_migrate", selection=AssetSelection.assets(*(k for a in MIGRATION for k in a.keys)))
# The delta window: raw partitions of the window, staging, owners, writers (and their checks), deletions, go-live.
DELTA_ASSETS = [*raw_assets, staging_assets, staging_owners, *dataverse_assets, go_live_ready]  # + deletions
DELTA = define_asset_job("e2e_delta", selection=AssetSelection.assets(*(k for a in DELTA_ASSETS for k in a.keys)))


@dataclass
class World:
    work: Path
    served: Sandbox
    instance: DagsterInstance
    extracted: Path  # the DuckDB file after extract + inventory (copied by each scenario)
    mapping: Path

    def emulator(self, name: str) -> tuple[RecordStore, DataverseEmulator]:
        store, app = open_emulator(self.work / f"{name}.sqlite", journaled=True)
        self.served.use(app)
        return store, app

    def resources(self, name: str) -> dict:
        database = self.work / f"{name}.duckdb"
        shutil.copy(self.extracted, database)
        return self.served.resources(database, mapping=self.mapping, audit=self.work / f"{name}-audit.duckdb")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with fast_tmp(tmp_path_factory.mktemp("e2e")) as work:
        yield from _world(work)


def _world(work: Path) -> Iterator[World]:
    generate(work / "tenant", patients=PATIENTS, seed=SEED)
    generate_day2(work / "tenant", work / "day2", seed=3)  # changes stamped in the 20 hours before now
    store, app = open_emulator(work / "unused.sqlite", journaled=True)
    with sandbox(work, tenant=work / "tenant", graph=True, app=app, fallback_owner=SEED_TEAM) as served, \
            DagsterInstance.ephemeral() as instance:
        mapping = confirmed_map(work / "mapping.yaml")
        res = served.resources(work / "extracted.duckdb", mapping=mapping, audit=work / "unused-audit.duckdb")
        tags = range_tags()
        assert materialize(raw_assets, resources=res, instance=instance, tags=tags).success
        counted = materialize([*raw_assets, inventory, mapping_state], resources=res, instance=instance,
                              selection=[*inventory.keys, mapping_state.key])
        assert counted.success
        gate = counted.asset_materializations_for_node(mapping_state.op.name)[0].metadata["gate_open"]
        assert gate.value is True  # the confirmed map opens the writers' gate
        yield World(work, served, instance, work / "extracted.duckdb", mapping)
    store.close()


def graph_items(world: World) -> int:
    """Files and folders in the SharePoint stand-in, the libraries' own roots aside."""
    with sqlite3.connect(world.work / "graph.sqlite") as conn:
        return conn.execute("SELECT count(*) FROM items WHERE parent_id IS NOT NULL").fetchone()[0]


def _writes_to(entity_set: str):
    """Requests that write to ``entity_set``: by path, or by a ``$batch`` part's request line (a bind to one of
    its records in another table's body is not a write to it)."""
    part = re.compile(rb"^(POST|PATCH|PUT|DELETE) (\S*/)?" + re.escape(entity_set.encode()) + rb"\b", re.MULTILINE)
    return lambda method, path, body: f"/{entity_set}" in path or bool(part.search(body.replace(b"\r\n", b"\n")))


def _migrate(world: World, res: dict):
    defs = Definitions(assets=[*raw_assets, inventory, mapping_state, *MIGRATION], asset_checks=writer_checks,
                       jobs=[MIGRATE], resources=res)  # the writers' blocking checks run after each writer
    return defs.resolve_job_def(MIGRATE.name).execute_in_process(instance=world.instance, raise_on_error=False)


def _delta(world: World, res: dict):
    """One run over the last two modification-day partitions, with the simulator serving day 2."""
    keys = modification_days.get_partition_keys()
    defs = Definitions(assets=[*DELTA_ASSETS, inventory, mapping_state, dataverse_schema],
                       asset_checks=writer_checks, jobs=[DELTA], resources=res)
    return defs.resolve_job_def(DELTA.name).execute_in_process(
        instance=world.instance, raise_on_error=False, tags=range_tags(keys[-2], keys[-1]))


def _rollback(world: World, res: dict):
    return rollback.execute_in_process(
        resources={k: res[k] for k in ("dataverse", "graph", "audit", "store")}, instance=world.instance,
        run_config={"ops": {"rollback_op": {"config": {"remove_schema": True}}}})


def test_a_full_migration_verifies_reconciles_and_rolls_back_to_the_same_state(world: World) -> None:
    store, app = world.emulator("full")
    with world.served.dataverse().client() as client:  # 20 MB: large scans become block-uploaded notes
        org = next(client.query("organizations", ["organizationid"]))["organizationid"]
        client.update("organizations", org, {"maxuploadfilesize": BLOCKS_LIMIT})
    before = snapshot(app)
    res = world.resources("full")

    result = _migrate(world, res)

    assert result.success
    evaluations = result.get_asset_check_evaluations()
    checked = {(e.asset_key, e.check_name) for e in evaluations}
    assert {AssetKey(["dataverse", "patient"]), GO_LIVE_KEY} <= {k for k, _ in checked}
    assert (GO_LIVE_KEY, CHECK_NAME) in checked and len(evaluations) >= 3 * len(WRITER_KEYS) + 1
    assert [(e.asset_key, e.check_name) for e in evaluations if not e.passed] == []
    assert GO_LIVE_KEY in {e.asset_key for e in result.get_asset_materialization_events()}
    with duckdb.connect(res["store"].database, read_only=True) as conn:
        # The load journal reconciles with staging: one journal row per staged row of every object; the only failures
        # are documents whose file is bad at the source (zero bytes, missing, not matching its hash), each named.
        outcomes = dict(conn.execute(f"SELECT outcome, count(*) FROM {JOURNAL} GROUP BY ALL").fetchall())
        staged = sum(conn.execute(f'SELECT count(*) FROM staging."{k.path[-1]}"').fetchone()[0]
                     for k in WRITER_KEYS)
        failed = conn.execute(f"SELECT DISTINCT object FROM {JOURNAL} WHERE outcome = 'failed'").fetchall()
        reasons = [r for (r,) in conn.execute(f"SELECT reason FROM {DOCUMENTS} WHERE outcome = 'failed'").fetchall()]
        routes = dict(conn.execute(f"SELECT outcome, count(*) FROM {DOCUMENTS} GROUP BY ALL").fetchall())
    assert outcomes == {"created": staged - len(reasons), "failed": len(reasons)} and staged > 1000
    assert failed == [("document",)] and all(set(r.split(";")) & set(SOURCE_FAULTS) for r in reasons)
    # all three routes over HTTPS: notes in one request, notes by block upload, SharePoint files (DICOM)
    assert routes.get("note", 0) > 0 and routes.get("note_blocks", 0) > 0 and routes.get("sharepoint", 0) > 0
    assert graph_items(world) > 0
    migrated = snapshot(app)
    assert diff(before, migrated) != []

    changes = read_changes(world.work / "day2")
    with serve(SenseiSimulator(world.work / "day2", rate_limit=None)) as day2_url:
        delta = _delta(world, {**res, "sensei": SenseiSource(base_url=day2_url)})

    assert delta.success
    assert [(e.asset_key, e.check_name) for e in delta.get_asset_check_evaluations() if not e.passed] == []
    assert (GO_LIVE_KEY, CHECK_NAME) in {(e.asset_key, e.check_name) for e in delta.get_asset_check_evaluations()}
    with duckdb.connect(res["store"].database, read_only=True) as conn:
        window = set(conn.execute(f"SELECT object, source_id, outcome FROM {JOURNAL} WHERE run_id = ?",
                                  [delta.run_id]).fetchall())
        deletions = ".".join(f'"{part}"' for part in DELETIONS.path)
        reported = {r[0] for r in conn.execute(f"SELECT source_id FROM {deletions}").fetchall()}
    # exactly the day-2 records were written (created or updated), and only they; soft deletes are reported
    assert window == {(c.object, c.id, c.change) for c in changes if c.change != "deleted"} and len(window) > 10
    assert {c.id for c in changes if c.change == "deleted"} <= reported
    assert diff(migrated, snapshot(app)) != []

    undo = _rollback(world, res)

    assert undo.success
    assert diff(before, snapshot(app)) == [], undo.output_for_node("rollback_op")
    assert "| schema removed | 0 |" not in undo.output_for_node("rollback_op")
    assert graph_items(world) == 0  # SharePoint files and the folders the load made are gone too
    store.close()


def test_a_migration_that_failed_halfway_rolls_back_to_the_same_state(world: World) -> None:
    store, app = world.emulator("half")
    before = snapshot(app)
    res = world.resources("half")
    world.served.wire.fault = _writes_to(FAULTY_SET)
    try:
        result = _migrate(world, res)
    finally:
        world.served.wire.fault = None

    assert not result.success
    done = {e.asset_key for e in result.get_asset_materialization_events() if e.asset_key}
    assert AssetKey(["dataverse", "patient"]) in done  # parents landed before the fault
    assert AssetKey(["dataverse", "treatment_plan_item"]) not in done and GO_LIVE_KEY not in done
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert {e.asset_key for e in failed} == {AssetKey(["dataverse", "treatment_plan"])}
    assert diff(before, snapshot(app)) != []

    undo = _rollback(world, res)

    assert undo.success
    assert diff(before, snapshot(app)) == []
    store.close()
