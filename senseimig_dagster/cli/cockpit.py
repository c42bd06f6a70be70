"""The cockpit: the Dagster UI on a sandbox migration, with everything its jobs need running, set up in one place for
``make demo`` (which launches its runs through it) and ``make ui`` / ``senseimig ui`` (which hands it to a person).

A demo's files are in two folders. ``<workdir>/`` is the migration's own: its encrypted stores, their key
(owner-only), the confirmed map and the Dagster instance (``dagster_home/``): nothing in it is plaintext PHI.
``<workdir>.systems/`` holds the remote systems the sandbox stands in for: the generated Sensei tenant (and its day
2), the Dataverse emulator's and the Graph stand-in's databases with their local CAs.

Runs are launched through the webserver's GraphQL API, as the launchpad does: they have the workspace's code-location
origin, show under their jobs and can be re-executed from the UI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from dagster import AssetKey
from dagster_graphql import DagsterGraphQLClient

from senseimig_dagster import settings
from senseimig_dagster.cli import runs, standins
from senseimig_dagster.privacy.encryption import KEY_ENV, key_beside

LOCATION = "senseimig"  # the code location's name, as in the repository's workspace.yaml
# The seed's enabled interactive admin (sandbox/dataverse_emulator/seed.json): owns the records of Sensei users who
# match no enabled Dataverse user, so every record has an owner.
FALLBACK_OWNER = "avery.admin@sandbox.example"
UI_PORT = 3000


@dataclass(frozen=True)
class DemoFolders:
    """Where a demo keeps what: ``workdir`` (the migration's files) and ``systems`` (the stand-ins')."""

    workdir: Path

    @property
    def systems(self) -> Path:
        return self.workdir.with_name(f"{self.workdir.name}.systems")

    @property
    def tenant(self) -> Path:
        return self.systems / "tenant"

    @property
    def day2(self) -> Path:
        return self.systems / "day2"

    @property
    def export(self) -> Path:
        return self.systems / "export"

    @property
    def dagster_home(self) -> Path:
        return self.workdir / "dagster_home"

    @property
    def _served(self) -> Path:
        return self.systems / "served_tenant"

    def served_tenant(self) -> Path:
        """The tenant the demo served last (day 2 after a delta window): what Sensei holds now."""
        name = self._served.read_text().strip() if self._served.exists() else self.tenant.name
        return self.systems / name

    def record_served(self, tenant: Path) -> None:
        self._served.write_text(tenant.name)

    def reset(self) -> None:
        for folder in (self.workdir, self.systems):
            shutil.rmtree(folder, ignore_errors=True)
        self.workdir.mkdir(parents=True)
        self.systems.mkdir(parents=True)

    def missing(self, *, sensei: bool = True) -> list[str]:
        """Files a cockpit on this demo needs that are not there, each with what makes it."""
        needed = [(self.workdir / "senseimig.duckdb", "the migration's store"),
                  (self.workdir / "store.key", "the stores' key"),
                  (self.systems / "dataverse.sqlite", "the Dataverse emulator's database")]
        if sensei:
            needed.append((self.served_tenant() / "manifest.json", "the Sensei tenant the simulator serves"))
        return [f"{path} ({what})" for path, what in needed if not path.exists()]


def environment(folders: DemoFolders, dataverse_url: str, ca: Path) -> dict[str, str]:
    """Everything the jobs read from the environment, pointing at the demo's files (set before the definitions are
    built: resources read it then). The stores are encrypted, as a real migration's must be, with a key generated
    once and kept beside them (``store.key``, owner-only)."""
    workdir = folders.workdir
    return {KEY_ENV: key_beside(workdir), "SENSEIMIG_DUCKDB": str(workdir / "senseimig.duckdb"),
            "SENSEIMIG_AUDIT_DB": str(workdir / "audit.duckdb"), "SENSEIMIG_MAPPING": str(workdir / "mapping.yaml"),
            "SENSEIMIG_FALLBACK_OWNER": FALLBACK_OWNER, "DAGSTER_HOME": str(folders.dagster_home.resolve()),
            "DATAVERSE_URL": dataverse_url, "DATAVERSE_CA_BUNDLE": str(ca), "AZURE_AUTHORITY_HOST": dataverse_url,
            "SENSEI_EXPORT_DIR": str(folders.export)}


@dataclass
class Systems:
    """The running stand-ins of a demo and the environment that points the jobs at them."""

    env: dict[str, str]
    simulator: standins.Simulator | None = None
    processes: list[subprocess.Popen] = field(default_factory=list)


@contextmanager
def systems(folders: DemoFolders, *, limits: str = "off", time_scale: float = 1.0,
            sensei: bool = True) -> Iterator[Systems]:
    """The Dataverse emulator and the Graph stand-in on the demo's databases, and (``sensei``) the Sensei simulator
    serving the tenant the demo left current; the environment is set for this process too. Stopped on exit."""
    running = Systems(env={})
    try:
        dataverse, url, ca = standins.start_dataverse(folders.systems, limits, time_scale)
        running.processes.append(dataverse)
        running.env.update(environment(folders, url, ca))
        print(f"Dataverse emulator serving on {url} (limits {limits})")
        graph, graph_env = standins.start_graph(folders.systems)
        running.processes.append(graph)
        running.env.update(graph_env)
        print(f"Microsoft Graph stand-in serving on {graph_env['GRAPH_URL']} "
              f"(SharePoint site {standins.SANDBOX_SITE_URL})")
        if sensei:
            running.simulator = standins.Simulator(on_serve=folders.record_served)
            running.env["SENSEI_BASE_URL"] = running.simulator.base_url
            if folders.served_tenant().exists():
                running.simulator.serve(folders.served_tenant())
                print(f"Sensei simulator serving {folders.served_tenant()} on {running.simulator.base_url}")
        os.environ.update(running.env)
        yield running
    finally:
        if running.simulator is not None:
            running.simulator.stop()
        for process in running.processes:
            standins.stop(process)


def _workspace(home: Path) -> Path:
    """The workspace ``dagster dev`` loads: the package's definitions as the ``senseimig`` code location (the same
    as the repository's ``workspace.yaml``, written here so it works from any folder)."""
    path = home / "workspace.yaml"
    path.write_text(f"load_from:\n  - python_module:\n      module_name: senseimig_dagster.definitions\n"
                    f"      location_name: {LOCATION}\n")
    return path


def dagster_dev(env: Mapping[str, str], port: int, log: Path | None = None) -> subprocess.Popen:
    """``dagster dev`` (webserver, daemon, code server) on the demo's instance, in a process group of its own."""
    home = Path(env["DAGSTER_HOME"])
    runs.instance()  # the instance's dagster.yaml, written once
    command = [str(Path(sys.executable).with_name("dagster")), "dev", "-w", str(_workspace(home)),
               "-h", "127.0.0.1", "-p", str(port)]
    out = open(log, "ab") if log else None  # noqa: SIM115 - handed to the child, closed with it
    return subprocess.Popen(command, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT if out else None,
                            start_new_session=True)


def stop_dagster(process: subprocess.Popen) -> None:
    """Ctrl-C for ``dagster dev`` (it stops its webserver, daemon and code server), then the whole group."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


LOCATION_QUERY = """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def wait_loaded(port: int, process: subprocess.Popen, timeout: float = 300.0) -> None:
    """Until the webserver answers and has loaded the code location (raises with the load error if it failed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dagster dev exited with code {process.returncode}")
        try:
            answer = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": LOCATION_QUERY}, timeout=10.0)
            entries = answer.json()["data"]["workspaceOrError"]["locationEntries"]
            entry = next((e for e in entries if e["name"] == LOCATION), None)
            if entry and entry["loadStatus"] == "LOADED":
                loaded = entry["locationOrLoadError"] or {}
                if loaded.get("__typename") == "PythonError":
                    raise RuntimeError(f"the code location failed to load: {loaded['message'].splitlines()[0]}")
                return
        except (httpx.HTTPError, KeyError, TypeError, ValueError):
            pass
        time.sleep(1.0)
    raise TimeoutError(f"the Dagster webserver did not load the code location within {timeout:.0f} s")


class WebserverLauncher:
    """Launches a job as the launchpad does (GraphQL ``launchRun``) and waits for the run to finish."""

    def __init__(self, port: int, process: subprocess.Popen) -> None:
        self.client = DagsterGraphQLClient("127.0.0.1", port_number=port)
        self.process = process

    def __call__(self, job: str, *, run_config: Mapping[str, Any] | None = None,
                 asset_selection: Sequence | None = None, tags: Mapping[str, str] | None = None) -> str:
        selection = [AssetKey.from_coercible(k) for k in asset_selection] if asset_selection else None
        run_id = self.client.submit_job_execution(job, repository_location_name=LOCATION,
                                                  run_config=dict(run_config or {}), tags=dict(tags or {}),
                                                  asset_selection=selection)
        instance = runs.instance()
        while True:
            run = instance.get_run_by_id(run_id)
            if run is not None and run.is_finished:
                return run_id
            if self.process.poll() is not None:
                raise RuntimeError(f"dagster dev exited (code {self.process.returncode}) during run {run_id}")
            time.sleep(1.0)


@contextmanager
def cockpit(env: Mapping[str, str], port: int | None = None) -> Iterator[WebserverLauncher]:
    """``dagster dev`` on the environment, headless (its log in the instance's folder), until exit."""
    port = port or standins.free_port()
    with ExitStack() as stack:
        process = dagster_dev(env, port, Path(env["DAGSTER_HOME"]) / "dagster_dev.log")
        stack.callback(stop_dagster, process)
        wait_loaded(port, process)
        print(f"Dagster webserver on http://127.0.0.1:{port} (runs launched through it)")
        yield WebserverLauncher(port, process)


def _sample_environment() -> subprocess.Popen | None:
    """The sample migration's own environment: an emulator where ``sample_migration`` writes by default (the
    sandbox port and database, never the migration's), if that port is free."""
    if not standins.port_is_free(settings.SANDBOX_DATAVERSE_PORT):
        print(f"port {settings.SANDBOX_DATAVERSE_PORT} is taken: `sample_migration` writes to whatever serves it "
              "(stop it, or set SAMPLE_DATAVERSE_URL)", file=sys.stderr)
        return None
    db = Path(settings.SANDBOX_DATAVERSE_DB)
    db.parent.mkdir(parents=True, exist_ok=True)
    process, url, _ = standins.start_https("sample Dataverse emulator", ["dataverse", "--entra-port", "0",
                                                                       "--limits", "off"],
                                           db, "/api/data/v9.2/", settings.SANDBOX_DATAVERSE_PORT)
    print(f"sample environment (sample_migration) serving on {url}")
    return process


def run_ui(workdir: Path, port: int = UI_PORT) -> int:
    """``senseimig ui``: the stand-ins on the demo's databases, the tenant it left current, and ``dagster dev`` with
    the demo's settings in the foreground until Ctrl-C."""
    folders = DemoFolders(workdir)
    missing = folders.missing()
    if missing:
        print("cannot start the cockpit, missing:\n  " + "\n  ".join(missing)
              + f"\nrun `make demo` (or `senseimig demo --workdir {workdir}`) first", file=sys.stderr)
        return 1
    with systems(folders) as running, ExitStack() as stack:
        sample = _sample_environment()
        stack.callback(standins.stop, sample)
        process = dagster_dev(running.env, port)
        stack.callback(stop_dagster, process)
        print(f"Dagster UI on http://127.0.0.1:{port} (Ctrl-C stops it and the stand-ins)", flush=True)
        try:
            return process.wait()
        except KeyboardInterrupt:
            return 0
