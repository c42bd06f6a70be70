"""``make demo``: generate a sandbox tenant, serve it over HTTP, extract everything, print the inventory and check
it against the generator's manifest; then stop what it started."""

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
    server = None
    try:
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
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    print_inventory(str(database))
    off = compare_with_manifest(str(database), tenant)
    print("inventory equals the generator's manifest for every object" if not off
          else f"inventory differs from the manifest for: {', '.join(off)}")
    return 0 if ok and not off else 1
