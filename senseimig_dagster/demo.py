"""``make demo``: generate a sandbox tenant, serve it over HTTP, extract everything, print the inventory and check
it against the generator's manifest, create the Dataverse schema in the emulator; then stop what it started."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from senseimig_dagster import settings


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


def _start_dataverse(workdir: Path) -> tuple[subprocess.Popen, str, Path]:
    """The Dataverse emulator over HTTPS (msal insists on https) with its token endpoint on the same port."""
    url, db = f"https://127.0.0.1:{_free_port()}", workdir / "dataverse.sqlite"
    ca = Path(f"{db}.tls") / "ca.pem"
    process = subprocess.Popen([sys.executable, "-m", "senseimig_dagster.cli", "sandbox", "dataverse", "--db", str(db),
                                "--port", url.rsplit(":", 1)[1], "--tls"], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Dataverse emulator exited with code {process.returncode}")
        if ca.exists():
            try:
                httpx.get(f"{url}/api/data/v9.2/", verify=str(ca), timeout=2.0)  # 401 without a token: it's up
                return process, url, ca
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    process.terminate()
    raise TimeoutError("the Dataverse emulator did not answer within 60 s")


def run_schema_setup() -> bool:
    """Materialize ``dataverse/schema`` and print what it did."""
    from senseimig_dagster.cli import _instance
    from senseimig_dagster.definitions import defs

    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

    result = defs.resolve_job_def("setup_dataverse_schema").execute_in_process(
        instance=_instance(), raise_on_error=False, run_config=quiet)
    if not result.success:
        print(f"schema setup failed (run {result.run_id})", file=sys.stderr)
        return False
    (materialization,) = result.asset_materializations_for_node("dataverse__schema")
    changed = materialization.metadata["changed"].value
    print(f"Dataverse schema: {changed} changes ({'no-op' if not changed else 'created'}); "
          f"custom tables: {', '.join(materialization.metadata['custom_tables'].value)}")
    return True


def compare_with_manifest(database: str, tenant: Path) -> list[str]:
    """Objects whose landed record count differs from what the generator wrote."""
    import duckdb

    from senseimig_dagster.sandbox.generator import read_manifest

    expected = read_manifest(tenant).counts
    with duckdb.connect(database, read_only=True) as conn:
        landed = dict(conn.execute("SELECT object, records + rejected FROM inventory.record_counts").fetchall())
    return [name for name, count in expected.items() if landed.get(name) != count]


def run_demo(workdir: Path, patients: int, seed: int, source: str = "api") -> int:
    from senseimig_dagster.sandbox.export_writer import write_export
    from senseimig_dagster.sandbox.generator import generate

    tenant, database = workdir / "tenant", workdir / "senseimig.duckdb"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    started = time.monotonic()
    manifest = generate(tenant, patients=patients, seed=seed)
    print(f"generated a sandbox tenant: {manifest.total_rows} rows, {patients} patients, seed {seed} "
          f"({time.monotonic() - started:.1f} s)")
    os.environ["SENSEIMIG_DUCKDB"] = str(database)
    os.environ["SENSEIMIG_SOURCE"] = source
    server = dataverse = None
    try:
        dataverse, dataverse_url, ca = _start_dataverse(workdir)
        os.environ.update({"DATAVERSE_URL": dataverse_url, "DATAVERSE_CA_BUNDLE": str(ca),
                           "AZURE_AUTHORITY_HOST": dataverse_url})
        print(f"Dataverse emulator serving on {dataverse_url}")
        if source == "export":
            os.environ["SENSEI_EXPORT_DIR"] = str(workdir / "export")
            write_export(tenant, workdir / "export")
        else:
            base_url = f"http://127.0.0.1:{_free_port()}"
            os.environ["SENSEI_BASE_URL"] = base_url
            server = subprocess.Popen([sys.executable, "-m", "senseimig_dagster.cli", "sandbox", "sensei",
                                       "--data", str(tenant), "--port", base_url.rsplit(":", 1)[1]])
            _wait_ready(base_url, server)
            print(f"Sensei simulator serving on {base_url}")
        from senseimig_dagster.cli import print_inventory, run_extract

        started = time.monotonic()
        ok = run_extract(None, None)
        print(f"extraction and inventory took {time.monotonic() - started:.1f} s")
        started = time.monotonic()
        ok = run_schema_setup() and ok
        print(f"Dataverse schema setup took {time.monotonic() - started:.1f} s")
    finally:
        for process in (server, dataverse):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
    print_inventory(str(database))
    off = compare_with_manifest(str(database), tenant)
    print("inventory equals the generator's manifest for every object" if not off
          else f"inventory differs from the manifest for: {', '.join(off)}")
    return 0 if ok and not off else 1
