"""The sandbox's remote systems as processes: the Sensei simulator, the Dataverse emulator (with its Entra ID token
endpoint) and the Microsoft Graph stand-in, each started as ``senseimig sandbox ...`` and stopped by its handle.
The demo, ``senseimig ui`` and the benchmarks start them here."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from senseimig_dagster import settings

SANDBOX_SITE_URL = "https://contoso.sharepoint.com/sites/dental"  # the emulator's seeded site = the stand-in's


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _sandbox(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "senseimig_dagster.cli", "sandbox", *args],
                            stdout=subprocess.DEVNULL)


def wait_ready(base_url: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    """Until the Sensei simulator at ``base_url`` answers."""
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


def start_https(what: str, command: list[str], db: Path, probe: str,
                port: int = 0) -> tuple[subprocess.Popen, str, Path]:
    """``senseimig sandbox <command> --db DB --port P --tls`` in its own process; returns it, its URL and its CA file
    once ``probe`` (a path that answers 401 without a token) answers."""
    url = f"https://127.0.0.1:{port or free_port()}"
    ca = Path(f"{db}.tls") / "ca.pem"
    ca.unlink(missing_ok=True)  # a fresh CA each start: wait for this one
    process = _sandbox(*command, "--db", str(db), "--port", url.rsplit(":", 1)[1], "--tls")
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


def start_dataverse(folder: Path, limits: str = "off", time_scale: float = 1.0, port: int = 0,
                    db_name: str = "dataverse.sqlite") -> tuple[subprocess.Popen, str, Path]:
    """The Dataverse emulator on ``folder/db_name`` over HTTPS (msal insists on https) with its token endpoint on
    the same port."""
    return start_https("Dataverse emulator", ["dataverse", "--entra-port", "0", "--limits", limits,
                                              "--time-scale", repr(time_scale)],
                       folder / db_name, "/api/data/v9.2/", port)


def start_graph(folder: Path, port: int = 0) -> tuple[subprocess.Popen, dict[str, str]]:
    """The Microsoft Graph stand-in (SharePoint files of large documents) on ``folder/graph.sqlite`` over HTTPS with
    its own token endpoint; returns the process and the environment the document load and rollback read."""
    process, url, ca = start_https("Graph stand-in", ["graph"], folder / "graph.sqlite", "/v1.0/sites", port)
    return process, {"SHAREPOINT_SITE_URL": SANDBOX_SITE_URL, "GRAPH_URL": f"{url}/v1.0",
                     "GRAPH_CA_BUNDLE": str(ca), "GRAPH_AUTHORITY_HOST": url}


def stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        process.wait(timeout=30)


class Simulator:
    """The Sensei simulator in its own process, on one port for its lifetime: the resources read
    ``SENSEI_BASE_URL`` once, so serving another tenant (day 2) restarts it on the same port. ``on_serve`` is told
    which tenant it serves (the demo records it, so ``senseimig ui`` serves the same)."""

    def __init__(self, on_serve: Callable[[Path], None] | None = None) -> None:
        self.base_url = f"http://127.0.0.1:{free_port()}"
        self.process: subprocess.Popen | None = None
        self.on_serve = on_serve

    def serve(self, tenant: Path) -> None:
        self.stop()
        self.process = _sandbox("sensei", "--data", str(tenant), "--port", self.base_url.rsplit(":", 1)[1])
        wait_ready(self.base_url, self.process)
        if self.on_serve is not None:
            self.on_serve(tenant)

    def stop(self) -> None:
        stop(self.process)
        self.process = None
