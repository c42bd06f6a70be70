"""``make demo``: the whole migration on a sandbox tenant. Generate a tenant, serve it over HTTP (Sensei simulator),
start the Dataverse emulator, the Graph stand-in and the cockpit (``dagster dev`` on the demo's instance:
``cli/cockpit.py``), then launch through it the same jobs an engineer launches from the UI: extract, inventory,
confirm a copy of the default map, stage, schema, owners, load (the ``migrate`` job, whose verification checks run
after each writer), reconciliation (``go_live_check``), a delta window; print a summary and how to inspect and roll
back. Exit 1 when any job or check fails. Each run is tagged with its phase (``senseimig/phase``).

The emulator runs with service protection limits off by default (``--limits off``): the demo shows the migration,
not Microsoft's throttling, which ``benchmarks/migrate.py`` measures."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import Definitions

from senseimig_dagster import mapping, settings
from senseimig_dagster.assets.keys import GO_LIVE, OWNERS
from senseimig_dagster.assets.partitions import modification_days, range_tags
from senseimig_dagster.assets.writers import WRITER_KEYS
from senseimig_dagster.cli import cockpit, runs
from senseimig_dagster.cli.cockpit import DemoFolders
from senseimig_dagster.definitions import build_definitions
from senseimig_dagster.mapping.scope import written_objects
from senseimig_dagster.sandbox.export_writer import write_export
from senseimig_dagster.sandbox.generator import generate, read_manifest
from senseimig_dagster.sandbox.generator.day2 import generate_day2

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
DEMO_BY = "demo"


# -- running jobs and recording phases --------------------------------------------------------------------------------
@dataclass
class Phase:
    name: str
    seconds: float
    rows: int | None = None  # rows the phase produced or wrote
    ok: bool = True
    started: float = 0.0  # time.monotonic() bounds (benchmarks/migrate.py times throttling within them)
    ended: float = 0.0


@dataclass
class DemoRun:
    phases: list[Phase] = field(default_factory=list)
    checks: list[tuple[str, str, bool]] = field(default_factory=list)  # (asset, check, passed)
    reasons: dict[tuple[str, str], str] = field(default_factory=dict)  # a failed check's description: counts, ids
    reconciliation: str | None = None
    failures: list[str] = field(default_factory=list)
    # Built once the demo's environment is set (servers' URLs, files): resources read it when they are built.
    defs: Definitions | None = None
    # How jobs are launched: through the cockpit's webserver (the demo), or in this process (tests, benchmarks).
    launch: runs.Launcher | None = None

    @contextmanager
    def phase(self, name: str) -> Iterator[Phase]:
        phase = Phase(name, 0.0, started=time.monotonic())
        try:
            yield phase
        except BaseException:
            phase.ok = False
            raise
        finally:
            phase.ended = time.monotonic()
            phase.seconds = phase.ended - phase.started
            self.phases.append(phase)
            print(f"[{name}] {'ok' if phase.ok else 'FAILED'} in {phase.seconds:.1f} s"
                  + (f", {phase.rows:,} rows" if phase.rows is not None else ""), flush=True)
            if not phase.ok:
                self.failures.append(name)

    @property
    def ok(self) -> bool:
        return not self.failures and all(passed for _, _, passed in self.checks)


def run_job(run: DemoRun, name: str, asset_selection: list | None = None, run_config: dict | None = None,
            tags: dict[str, str] | None = None, *, phase: str) -> runs.RunOutcome:
    """Launch a job in the shared instance, tagged with its cutover ``phase``; record its check evaluations."""
    assert run.defs is not None, "build the definitions once the demo's environment is set"
    launch = run.launch or runs.in_process(run.defs)
    result = runs.outcome(launch(name, run_config={**QUIET, **(run_config or {})}, asset_selection=asset_selection,
                                 tags={**(tags or {}), runs.PHASE_TAG: phase}))
    for check in result.get_asset_check_evaluations():
        run.checks.append((check.asset_key.to_user_string(), check.check_name, check.passed))
        if not check.passed and check.description:
            run.reasons[check.asset_key.to_user_string(), check.check_name] = check.description
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure:
                error = event.step_failure_data.error
                print(f"  step {event.step_key} failed: {error.message.strip().splitlines()[0] if error else ''}",
                      file=sys.stderr)
        print(f"  {name} failed (run {result.run_id}); see the Dagster UI", file=sys.stderr)
    return result


def _count(database: str, sql: str, params: list | None = None) -> list[tuple]:
    with runs.store(database).connect(read_only=True) as conn:
        return conn.execute(sql, params).fetchall()


def staged_rows(database: str) -> int:
    tables = {r[0] for r in _count(database, "SELECT table_name FROM information_schema.tables "
                                             "WHERE table_schema = 'staging'")}
    return sum(_count(database, f'SELECT count(*) FROM staging."{name}"')[0][0]
               for name in written_objects(mapping.default_map()) if name in tables)


def records_per_table(database: str) -> list[tuple[str, int, int, int]]:
    """Per Dataverse table: records in Dataverse according to the load journal (each record's latest outcome not
    ``failed``), created and updated by this demo. The ``dataverse_counts`` checks compared them with Dataverse."""
    return _count(database, """
        WITH latest AS (SELECT "table", source_id, arg_max(outcome, "at") AS outcome FROM load.journal GROUP BY ALL)
        SELECT l."table", count(*) FILTER (WHERE l.outcome <> 'failed'),
               (SELECT count(*) FROM load.journal x WHERE x."table" = l."table" AND x.outcome = 'created'),
               (SELECT count(*) FROM load.journal x WHERE x."table" = l."table" AND x.outcome = 'updated')
        FROM latest l GROUP BY l."table" ORDER BY l."table" """)


def compare_with_manifest(database: str, tenant: Path) -> list[str]:
    """Objects whose landed record count differs from what the generator wrote."""
    expected = read_manifest(tenant).counts
    landed = dict(_count(database, "SELECT object, records + rejected FROM inventory.record_counts"))
    return [name for name, count in expected.items() if landed.get(name) != count]


# -- the phases -------------------------------------------------------------------------------------------------------
def migrate(run: DemoRun, tenant: Path, serve: Callable[[Path], None] | None = None) -> None:
    """Every phase after extraction's servers are up; stops at the first phase that fails (later ones need it).
    ``serve(tenant)`` points the Sensei source at another tenant folder (the delta window's day 2, written beside
    ``tenant``)."""
    database = settings.duckdb_path()
    with run.phase("extract + inventory") as phase:
        phase.ok = run_job(run, "extract", tags=range_tags(), phase="inventory").success
        if phase.ok:
            inventory = run_job(run, "take_inventory", phase="inventory")
            for check in inventory.get_asset_check_evaluations():
                print(f"check {check.check_name}: {'passed' if check.passed else 'FAILED'}")
            phase.ok = inventory.success
        phase.rows = sum(r[0] for r in _count(database, "SELECT records FROM inventory.record_counts"))
        off = compare_with_manifest(database, tenant)
        print("  inventory equals the generator's manifest for every object" if not off
              else f"  inventory differs from the manifest for: {', '.join(off)}")
        phase.ok = phase.ok and not off
    if not phase.ok:
        return
    with run.phase("confirm map") as phase:
        shutil.copyfile(mapping.default_map_path(), settings.mapping_path())
        config = {"ops": {"confirm_mapping_op": {"config": {"path": settings.mapping_path(), "by": DEMO_BY}}}}
        phase.ok = run_job(run, "confirm_mapping", run_config=config, phase="confirm").success
        confirmation = mapping.load_valid(settings.mapping_path()).confirmation if phase.ok else None
        print(f"  {settings.mapping_path()}: a copy of the default map, confirmed by "
              f"{confirmation.by if confirmation else '?'} ({confirmation.hash[:12] if confirmation else '-'})")
    if not phase.ok:
        return
    staging = [k for k in run.defs.resolve_job_def("stage").asset_layer.executable_asset_keys if k != OWNERS]
    steps: list[tuple[str, str, list | None, str]] = [
        ("stage", "stage", staging, "migrate"),
        ("schema", "setup_dataverse_schema", None, "migrate"),
        ("owners", "migrate", [OWNERS], "migrate"),
        ("load + verify", "migrate", WRITER_KEYS, "migrate"),
        ("reconcile", "go_live_check", [GO_LIVE], "go_live"),
    ]
    for label, job, selection, step in steps:
        with run.phase(label) as phase:
            result = run_job(run, job, selection, phase=step)
            phase.ok = result.success
            if label == "stage":
                phase.rows = staged_rows(database)
            elif label == "load + verify":
                phase.rows = sum(r[2] + r[3] for r in records_per_table(database))
            elif label == "reconcile":
                run.reconciliation = _reconciliation(result)
        if not phase.ok:
            return
    if serve is None or "delta" not in {job.name for job in run.defs.resolve_all_job_defs()}:
        print("[delta window] skipped: " + ("the CSV export has no modification windows" if serve is None
                                            else "this checkout has no `delta` job"))
    else:
        delta_window(run, tenant, serve)


def delta_window(run: DemoRun, tenant: Path, serve: Callable[[Path], None]) -> None:
    """Day 2 of cutover: the practice's changes of the last hours (``generate_day2``) picked up by the ``delta``
    job over the last two modification-day partitions; only those records are sent, deletions are reported."""
    keys = modification_days.get_partition_keys()
    with run.phase("delta window") as phase:
        changes = generate_day2(tenant, tenant.with_name("day2"))
        serve(tenant.with_name("day2"))
        result = run_job(run, "delta", tags=range_tags(keys[-2], keys[-1]), phase="delta")
        phase.ok = result.success
        outcomes = dict(_count(settings.duckdb_path(), "SELECT outcome, count(*) FROM load.journal "
                                                               "WHERE run_id = ? GROUP BY ALL", [result.run_id]))
        phase.rows = outcomes.get("created", 0) + outcomes.get("updated", 0)
        deleted = next((m.metadata["deleted"].value for m in result.asset_materializations_for_node(
            "dataverse__deletions_report")), "?") if result.success else "?"
        print(f"  window {keys[-2]}..{keys[-1]}: {len(changes)} changes made in Sensei; "
              + ", ".join(f"{o} {n}" for o, n in sorted(outcomes.items())) + f"; {deleted} deletions reported "
              "(dataverse/deletions_report), none deleted in Dataverse")
    if phase.ok:  # the billing ledger changed on day 2: reconcile again, the table printed is this one
        with run.phase("reconcile after delta") as phase:
            result = run_job(run, "go_live_check", [GO_LIVE], phase="go_live")
            phase.ok = result.success
            run.reconciliation = _reconciliation(result) or run.reconciliation


def _reconciliation(result: Any) -> str | None:
    """The Markdown table of ``go_live_ready``: its materialization's metadata, or its failure's."""
    for event in result.all_events:
        if event.is_step_materialization:
            meta = event.event_specific_data.materialization.metadata
            if "reconciliation" in meta:
                return meta["reconciliation"].value
        if event.is_step_failure and event.step_failure_data.user_failure_data:
            meta = event.step_failure_data.user_failure_data.metadata
            if "reconciliation" in meta:
                return meta["reconciliation"].value
    return None


def print_summary(run: DemoRun, workdir: Path, limits: str) -> None:
    database = settings.duckdb_path()
    print("\n== Summary ==")
    print(f"{'phase':<22}{'rows':>12}{'wall s':>9}  result")
    for phase in run.phases:
        rows = f"{phase.rows:,}" if phase.rows is not None else "-"
        print(f"{phase.name:<22}{rows:>12}{phase.seconds:>9.1f}  {'ok' if phase.ok else 'FAILED'}")
    print(f"{'total':<22}{'':>12}{sum(p.seconds for p in run.phases):>9.1f}")
    print(f"(Dataverse emulator: service protection limits {limits}; `benchmarks/migrate.py` measures throttling)")
    if any(p.name == "load + verify" for p in run.phases):
        print("\nRecords per Dataverse table (load journal; the dataverse_counts checks compared them with Dataverse):")
        print(f"{'table':<32}{'records':>10}{'created':>10}{'updated':>10}")
        for table, records, created, updated in records_per_table(database):
            print(f"{table:<32}{records:>10,}{created:>10,}{updated:>10,}")
    passed = sum(p for _, _, p in run.checks)
    print(f"\nChecks: {passed} passed, {len(run.checks) - passed} failed")
    for asset, check, ok in run.checks:
        if not ok:
            reason = run.reasons.get((asset, check))
            print(f"  FAILED {asset} {check}" + (f": {reason}" if reason else ""))
    if run.failures:  # a blocking check that raises (go_live_ready's ledger_reconciliation) fails its phase
        print(f"Failed phases: {', '.join(run.failures)} (see the log above and the run in the UI)")
    if run.reconciliation:
        print("\nLedger reconciliation, Sensei vs Dataverse (go_live_ready, after the last load):")
        print(run.reconciliation)
    print(f"""
Inspect it: `make ui` (= `senseimig ui --workdir {workdir}`: the stand-ins and http://127.0.0.1:3000), then Jobs and
Runs (every run above, tagged senseimig/phase, re-executable), Assets > dataverse/* (load journal metadata and the
dataverse_counts / dataverse_fields / dataverse_conservation checks), go_live_ready (the reconciliation table),
Lineage. Files: {workdir}/ (the migration's: encrypted stores, key, map, Dagster instance) and
{DemoFolders(workdir).systems}/ (the stand-ins': tenant, emulator and Graph databases).
Roll it back: `make demo-rollback` (= `senseimig demo --rollback --workdir {workdir}`: the `rollback` job with
remove_schema), or the `rollback` job in `make ui`.""")


def run_demo(workdir: Path, patients: int, seed: int, source: str = "api", limits: str = "off",
             time_scale: float = 1.0) -> int:
    folders = DemoFolders(workdir)
    folders.reset()
    run = DemoRun()
    with run.phase("generate tenant") as phase:
        manifest = generate(folders.tenant, patients=patients, seed=seed)
        phase.rows = manifest.total_rows
        print(f"  {manifest.total_rows:,} rows, {patients:,} patients, seed {seed}")
    with cockpit.systems(folders, limits=limits, time_scale=time_scale) as running:
        running.env["SENSEIMIG_SOURCE"] = source
        if source == "export":
            write_export(folders.tenant, folders.export)
        os.environ.update(running.env)
        run.defs = build_definitions()
        with cockpit.cockpit(running.env) as launch:
            run.launch = launch
            # the delta window needs the API (modified_since): the CSV export has none
            migrate(run, folders.tenant, serve=running.simulator.serve if source == "api" else None)
    print_summary(run, workdir, limits)
    print("\ndemo: " + ("every phase and check passed" if run.ok else "FAILED"))
    return 0 if run.ok else 1


def run_rollback(workdir: Path, remove_schema: bool = True) -> int:
    """Start the demo's stand-ins and cockpit again and launch the ``rollback`` job through it."""
    folders = DemoFolders(workdir)
    missing = folders.missing(sensei=False)
    if missing:
        print("no demo to roll back, missing:\n  " + "\n  ".join(missing) + "\nrun `make demo` first", file=sys.stderr)
        return 1
    with cockpit.systems(folders, sensei=False) as running, cockpit.cockpit(running.env) as launch:
        config = {"ops": {"rollback_op": {"config": {"remove_schema": remove_schema, "force": False, "run_id": None}}}}
        result = runs.outcome(launch("rollback", run_config={**QUIET, **config}, tags={runs.PHASE_TAG: "rollback"}))
    if result.success:
        print(result.output_metadata("rollback_op")["summary"].value)
        return 0
    print(f"rollback did not finish (run {result.run_id}); run it again (it resumes), or see the Dagster UI",
          file=sys.stderr)
    return 1
