"""The cockpit as a person meets it: ``senseimig demo`` on a small tenant, then ``senseimig ui`` on what it left, driven
in a real browser (Playwright with Debian's chromium).

The demo passes, launching every run through the webserver of its instance (each run has the code location's origin
and its cutover phase as a tag); its folder holds only the migration's files, none with a plaintext PHI value (the
tenant and the emulated systems are beside it). Then, in the UI, ``take_inventory`` and ``migrate`` are launched
from their launchpads with their default config, each run succeeds with every check passed. Screenshots go to
``test-artifacts/cockpit/`` (git-ignored).

The partitions start a few days back (``SENSEIMIG_HISTORY_START``): older records land in the first partition, so
the full load is a handful of partitions instead of two months of them, and the test stays within minutes."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus
from playwright.sync_api import sync_playwright

from senseimig_dagster.cli import cockpit
from senseimig_dagster.cli.cockpit import DemoFolders
from senseimig_dagster.cli.runs import PHASE_TAG
from senseimig_dagster.cli.standins import free_port
from senseimig_dagster_tests.support.phi_scan import files_under, leaks, tenant_phi

pytestmark = pytest.mark.slow
PATIENTS = 20  # the smallest tenant the day-2 generator accepts comfortably
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "cockpit"
SENSEIMIG = str(Path(sys.executable).with_name("senseimig"))
RUN_TIMEOUT = 300.0


@dataclass
class Demo:
    folders: DemoFolders
    env: dict[str, str]
    cwd: Path
    returncode: int
    output: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    cwd = tmp_path_factory.mktemp("cockpit")
    history_start = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=4)).isoformat()
    env = {**os.environ, "SENSEIMIG_HISTORY_START": history_start}
    done = subprocess.run([SENSEIMIG, "demo", "--workdir", "demo", "--patients", str(PATIENTS)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "demo.log").write_text(done.stdout + done.stderr)  # phases, counts, ids: no PHI
    return Demo(DemoFolders(cwd / "demo"), env, cwd, done.returncode, done.stdout + done.stderr)


def _instance(folders: DemoFolders) -> DagsterInstance:
    return DagsterInstance.from_config(str(folders.dagster_home))


def test_the_demo_passes_launching_every_run_through_the_webserver(demo: Demo) -> None:
    assert demo.returncode == 0, demo.output[-3000:]
    assert "demo: every phase and check passed" in demo.output
    with _instance(demo.folders) as instance:
        runs = instance.get_runs()
    assert runs and all(r.status == DagsterRunStatus.SUCCESS for r in runs)
    origins = {r.remote_job_origin.location_name if r.remote_job_origin else None for r in runs}
    assert origins == {cockpit.LOCATION}  # launched as the launchpad launches: visible under the job, re-executable
    assert {r.tags.get(PHASE_TAG) for r in runs} == {"inventory", "confirm", "migrate", "go_live", "delta"}


def test_the_demo_folder_holds_the_migrations_files_and_no_plaintext_phi(demo: Demo) -> None:
    workdir, systems = demo.folders.workdir, demo.folders.systems
    values = tenant_phi(demo.folders.tenant) | tenant_phi(demo.folders.day2)
    assert leaks(files_under(systems / "tenant"), values)  # the scanner finds PHI where it is
    assert {p.name for p in workdir.iterdir()} <= {"senseimig.duckdb", "audit.duckdb", "store.key", "mapping.yaml",
                                                   "dagster_home", "match_weights.html"}  # the linkage model's weights
    assert (workdir / "store.key").stat().st_mode & 0o777 == 0o600
    assert any(p.suffix == ".db" for p in files_under(demo.folders.dagster_home))  # event storage is scanned
    assert leaks(files_under(workdir), values) == {}


@pytest.fixture(scope="module")
def ui(demo: Demo) -> Iterator[int]:
    assert demo.returncode == 0, demo.output[-3000:]
    port = free_port()
    log = open(demo.cwd / "ui.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([SENSEIMIG, "ui", "--workdir", "demo", "--port", str(port)], cwd=demo.cwd,
                               env=demo.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        cockpit.wait_loaded(port, process)
        yield port
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the cockpit stops dagster dev and the stand-ins
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        log.close()


def _wait_finished(folders: DemoFolders, run_id: str) -> tuple[DagsterRunStatus, list[tuple[str, bool]]]:
    deadline = time.monotonic() + RUN_TIMEOUT
    with _instance(folders) as instance:
        while time.monotonic() < deadline:
            run = instance.get_run_by_id(run_id)
            if run is not None and run.is_finished:
                checks = [e.dagster_event.event_specific_data for e in instance.all_logs(
                    run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)]
                return run.status, [(f"{c.asset_key.to_user_string()} {c.check_name}", c.passed) for c in checks]
            time.sleep(2.0)
    raise TimeoutError(f"run {run_id} did not finish within {RUN_TIMEOUT:.0f} s")


def test_a_person_launches_inventory_then_migrate_from_the_launchpad(demo: Demo, ui: int) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        # Dagster's community prompt opens once, at some point after the first page loads: dismissed when it shows
        page.add_locator_handler(page.get_by_text("Join the Dagster community"),
                                 lambda _: page.get_by_role("button", name="Skip").click())
        for job, expect_checks in (("take_inventory", 3), ("migrate", 1)):
            page.goto(f"http://127.0.0.1:{ui}/locations/{cockpit.LOCATION}/jobs/{job}/playground",
                      wait_until="networkidle")
            page.screenshot(path=ARTIFACTS / f"{job}-launchpad.png")
            page.get_by_role("button", name="Launch Run").click()
            page.wait_for_url("**/runs/**", timeout=60_000)
            run_id = page.url.rstrip("/").split("/runs/")[1].split("?")[0]

            status, checks = _wait_finished(demo.folders, run_id)

            page.reload(wait_until="networkidle")
            page.get_by_text("Loading run logs").wait_for(state="hidden", timeout=60_000)
            page.screenshot(path=ARTIFACTS / f"{job}-run.png", full_page=True)
            assert status == DagsterRunStatus.SUCCESS, (job, run_id, (demo.cwd / "ui.log").read_text()[-3000:])
            assert len(checks) >= expect_checks and all(ok for _, ok in checks), checks
            assert page.get_by_text("Success").count() > 0  # what the run page shows a person
        page.goto(f"http://127.0.0.1:{ui}/assets/go_live_ready?view=checks", wait_until="networkidle")
        page.screenshot(path=ARTIFACTS / "go_live_ready-checks.png", full_page=True)
        assert page.get_by_text("ledger_reconciliation").count() > 0 and page.get_by_text("Passed").count() > 0
        browser.close()
