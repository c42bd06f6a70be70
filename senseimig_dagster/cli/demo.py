"""``make demo``: the whole migration on a sandbox tenant. Generate a tenant, serve it over HTTP (Sensei simulator)
and start the Dataverse emulator, then run the same jobs an engineer runs from the UI, in one Dagster instance
(``make ui`` shows every run): extract, inventory, confirm a copy of the default map, stage, schema, owners, load
(the ``migrate`` job, whose verification checks run after each writer), reconciliation (``go_live_check``), then
print a summary and how to inspect and roll back. Exit 1 when any job or check fails.

The emulator runs with service protection limits off by default (``--limits off``): the demo shows the migration,
not Microsoft's throttling, which ``benchmarks/migrate.py`` measures."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from dagster import Definitions

from senseimig_dagster import mapping, settings
from senseimig_dagster.assets.keys import GO_LIVE, OWNERS
from senseimig_dagster.assets.partitions import modification_days, range_tags
from senseimig_dagster.assets.writers import WRITER_KEYS
from senseimig_dagster.cli import runs
from senseimig_dagster.definitions import build_definitions
from senseimig_dagster.mapping.scope import written_objects
from senseimig_dagster.privacy.encryption import KEY_ENV, key_beside
from senseimig_dagster.sandbox.export_writer import write_export
from senseimig_dagster.sandbox.generator import generate, read_manifest
from senseimig_dagster.sandbox.generator.day2 import generate_day2

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
DEMO_BY = "demo"
# The seed's enabled interactive admin (sandbox/dataverse_emulator/seed.json): owns the records of Sensei users who
# match no enabled Dataverse user, so every record has an owner.
FALLBACK_OWNER = "avery.admin@sandbox.example"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(base_url: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Sensei simulator exited with code {process.returncode}")
        try:
            httpx.get(f"{base_url}/v1/organizations/count", headers={"Csd-Api-Key": settings.SANDBOX_API_KEY},
                      timeout=2.0).raise_for_status()
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise TimeoutError(f"the Sensei simulator did not answer within {timeout:.0f} s")


def _start_https(what: str, command: list[str], db: Path, probe: str,
                 port: int = 0) -> tuple[subprocess.Popen, str, Path]:
    """``senseimig sandbox <command> --db DB --port P --tls`` in its own process; returns it, its URL and its CA file
    once ``probe`` (a path that answers 401 without a token) answers."""
    url = f"https://127.0.0.1:{port or _free_port()}"
    ca = Path(f"{db}.tls") / "ca.pem"
    ca.unlink(missing_ok=True)  # a fresh CA each start: wait for this one
    process = subprocess.Popen([sys.executable, "-m", "senseimig_dagster.cli", "sandbox", *command, "--db", str(db),
                                "--port", url.rsplit(":", 1)[1], "--tls"], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the {what} exited with code {process.returncode}")
        if ca.exists():
            try:
                httpx.get(f"{url}{probe}", verify=str(ca), timeout=2.0)  # 401 without a token: it's up
                return process, url, ca
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    process.terminate()
    raise TimeoutError(f"the {what} did not answer within 60 s")


def _start_dataverse(workdir: Path, limits: str = "off", time_scale: float = 1.0,
                     port: int = 0) -> tuple[subprocess.Popen, str, Path]:
    """The Dataverse emulator over HTTPS (msal insists on https) with its token endpoint on the same port."""
    return _start_https("Dataverse emulator", ["dataverse", "--entra-port", "0", "--limits", limits,
                                               "--time-scale", repr(time_scale)],
                        workdir / "dataverse.sqlite", "/api/data/v9.2/", port)


SANDBOX_SITE_URL = "https://contoso.sharepoint.com/sites/dental"  # the emulator's seeded site = the stand-in's


def _start_graph(workdir: Path, port: int = 0) -> tuple[subprocess.Popen, dict[str, str]]:
    """The Microsoft Graph stand-in (SharePoint files of large documents) over HTTPS with its own token endpoint;
    returns the process and the environment the document load and rollback read."""
    process, url, ca = _start_https("Graph stand-in", ["graph"], workdir / "graph.sqlite", "/v1.0/sites", port)
    return process, {"SHAREPOINT_SITE_URL": SANDBOX_SITE_URL, "GRAPH_URL": f"{url}/v1.0",
                     "GRAPH_CA_BUNDLE": str(ca), "GRAPH_AUTHORITY_HOST": url}


def _stop(process: subprocess.Popen | None) -> None:
    if process is not None:
        process.terminate()
        process.wait(timeout=30)


class Simulator:
    """The Sensei simulator in its own process, on one port for its lifetime: the resources read
    ``SENSEI_BASE_URL`` once, so serving another tenant (day 2) restarts it on the same port."""

    def __init__(self) -> None:
        self.base_url = f"http://127.0.0.1:{_free_port()}"
        os.environ["SENSEI_BASE_URL"] = self.base_url
        self.process: subprocess.Popen | None = None

    def serve(self, tenant: Path) -> None:
        self.stop()
        self.process = subprocess.Popen([sys.executable, "-m", "senseimig_dagster.cli", "sandbox", "sensei", "--data",
                                         str(tenant), "--port", self.base_url.rsplit(":", 1)[1]],
                                        stdout=subprocess.DEVNULL)
        _wait_ready(self.base_url, self.process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None


def demo_environment(workdir: Path, dataverse_url: str, ca: Path) -> dict[str, str]:
    """Everything the jobs read from the environment, pointing at the demo's files (set before ``definitions`` is
    imported: resources read it when they are built). The stores are encrypted, as a real migration's must be,
    with a key generated once and kept beside them (``store.key``, owner-only)."""
    return {KEY_ENV: key_beside(workdir), "SENSEIMIG_DUCKDB": str(workdir / "senseimig.duckdb"), "SENSEIMIG_AUDIT_DB": str(workdir / "audit.duckdb"),
            "SENSEIMIG_MAPPING": str(workdir / "mapping.yaml"), "SENSEIMIG_FALLBACK_OWNER": FALLBACK_OWNER,
            "DATAVERSE_URL": dataverse_url, "DATAVERSE_CA_BUNDLE": str(ca), "AZURE_AUTHORITY_HOST": dataverse_url}


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
            tags: dict[str, str] | None = None) -> Any:
    """Execute a job of the demo's definitions in the shared instance; record its check evaluations."""
    assert run.defs is not None, "build the definitions once the demo's environment is set"
    result = runs.execute(run.defs, name, run_config={**QUIET, **(run_config or {})},
                          asset_selection=asset_selection, tags=tags)
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
def migrate(run: DemoRun, workdir: Path, tenant: Path, serve: Callable[[Path], None] | None = None) -> None:
    """Every phase after extraction's servers are up; stops at the first phase that fails (later ones need it).
    ``serve(tenant)`` points the Sensei source at another tenant folder (the delta window's day 2)."""
    database = settings.duckdb_path()
    with run.phase("extract + inventory") as phase:
        phase.ok = runs.run_extract(run.defs, None, None)
        phase.rows = sum(r[0] for r in _count(database, "SELECT records FROM inventory.record_counts"))
        off = compare_with_manifest(database, tenant)
        print("  inventory equals the generator's manifest for every object" if not off
              else f"  inventory differs from the manifest for: {', '.join(off)}")
        phase.ok = phase.ok and not off
    if not phase.ok:
        return
    with run.phase("confirm map") as phase:
        shutil.copyfile(mapping.default_map_path(), settings.mapping_path())
        confirmation = mapping.confirm(settings.mapping_path(), DEMO_BY)
        print(f"  {settings.mapping_path()}: a copy of the default map, confirmed by {confirmation.by} "
              f"({confirmation.hash[:12]})")
    staging = [k for k in run.defs.resolve_job_def("stage").asset_layer.executable_asset_keys if k != OWNERS]
    steps: list[tuple[str, str, list | None]] = [
        ("stage", "stage", staging),
        ("schema", "setup_dataverse_schema", None),
        ("owners", "migrate", [OWNERS]),
        ("load + verify", "migrate", WRITER_KEYS),
        ("reconcile", "go_live_check", [GO_LIVE]),
    ]
    for label, job, selection in steps:
        with run.phase(label) as phase:
            result = run_job(run, job, selection)
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
        delta_window(run, workdir, tenant, serve)


def delta_window(run: DemoRun, workdir: Path, tenant: Path, serve: Callable[[Path], None]) -> None:
    """Day 2 of cutover: the practice's changes of the last hours (``generate_day2``) picked up by the ``delta``
    job over the last two modification-day partitions; only those records are sent, deletions are reported."""
    keys = modification_days.get_partition_keys()
    with run.phase("delta window") as phase:
        changes = generate_day2(tenant, workdir / "day2")
        serve(workdir / "day2")
        result = run_job(run, "delta", tags=range_tags(keys[-2], keys[-1]))
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
            result = run_job(run, "go_live_check", [GO_LIVE])
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
Inspect it: `make ui` (http://127.0.0.1:3000), then Runs (every job above), Assets > dataverse/* (load journal
metadata and the dataverse_counts / dataverse_fields / dataverse_conservation checks), go_live_ready (the
reconciliation table), Lineage (raw -> staging -> dataverse, parents first). Files: {workdir}/.
Roll it back: `senseimig demo --rollback --workdir {workdir}` (starts the demo's emulator and runs
`senseimig rollback --remove-schema`), or the `rollback` job in the UI while the emulator runs.""")


def run_demo(workdir: Path, patients: int, seed: int, source: str = "api", limits: str = "off",
             time_scale: float = 1.0) -> int:
    tenant = workdir / "tenant"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    run = DemoRun()
    with run.phase("generate tenant") as phase:
        manifest = generate(tenant, patients=patients, seed=seed)
        phase.rows = manifest.total_rows
        print(f"  {manifest.total_rows:,} rows, {patients:,} patients, seed {seed}")
    os.environ["SENSEIMIG_SOURCE"] = source
    simulator: Simulator | None = None
    dataverse = graph = None
    try:
        dataverse, dataverse_url, ca = _start_dataverse(workdir, limits, time_scale)
        os.environ.update(demo_environment(workdir, dataverse_url, ca))
        print(f"Dataverse emulator serving on {dataverse_url} (limits {limits})")
        graph, graph_env = _start_graph(workdir)
        os.environ.update(graph_env)
        print(f"Microsoft Graph stand-in serving on {graph_env['GRAPH_URL']} (SharePoint site {SANDBOX_SITE_URL})")
        if source == "export":
            os.environ["SENSEI_EXPORT_DIR"] = str(workdir / "export")
            write_export(tenant, workdir / "export")
            run.defs = build_definitions()
            migrate(run, workdir, tenant)  # the delta window needs the API (modified_since)
        else:
            simulator = Simulator()
            simulator.serve(tenant)
            print(f"Sensei simulator serving on {simulator.base_url}")
            run.defs = build_definitions()
            migrate(run, workdir, tenant, serve=simulator.serve)
    finally:
        if simulator is not None:
            simulator.stop()
        _stop(dataverse)
        _stop(graph)
    print_summary(run, workdir, limits)
    print("\ndemo: " + ("every phase and check passed" if run.ok else "FAILED"))
    return 0 if run.ok else 1


def run_rollback(workdir: Path, remove_schema: bool = True) -> int:
    """Start the demo's emulator on its database again and roll the demo's migration back."""
    if not (workdir / "dataverse.sqlite").exists():
        print(f"no demo in {workdir}: run `make demo` first", file=sys.stderr)
        return 1
    dataverse, url, ca = _start_dataverse(workdir)
    os.environ.update(demo_environment(workdir, url, ca))
    graph, graph_env = _start_graph(workdir)
    os.environ.update(graph_env)
    try:
        return runs.run_rollback(build_definitions(), remove_schema=remove_schema)
    finally:
        _stop(dataverse)
        _stop(graph)
