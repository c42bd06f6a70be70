"""``senseimig sandbox dataverse`` as a real process: HTTPS, tokens from the stand-in, records surviving a restart."""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from senseimig_dagster.sandbox.entra import DEFAULT_APPS
from senseimig_dagster.transport.entra import EntraTokenProvider

READY_TIMEOUT = 90.0  # generous: CI machines are shared and the server builds a CA at start


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def dataverse_process(db: Path, port: int) -> Iterator[dict[str, str]]:
    """Start the CLI, wait for its banner, yield what it printed; terminate it (bounded) afterwards."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "senseimig_dagster.cli", "sandbox", "dataverse", "--port", str(port),
         "--entra-port", "0", "--db", str(db), "--tls"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    printed: list[str] = []
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not printed or "Ctrl-C to stop" not in printed[-1]:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, f"server exited early:\n{''.join(printed)}"
            printed.append(line)
        text = "".join(printed)
        assert DEFAULT_APPS["sandbox-client"] not in text  # the secret is never printed
        yield {
            "text": text,
            "url": re.search(r"environment URL .*: (https://\S+)", text)[1],
            "authority_host": re.search(r"authority host (https://[^)\s]+)", text)[1],
            "tenant": re.search(r"tenant id: (\S+)", text)[1],
            "client_id": re.search(r"client id: (\S+)", text)[1],
            "ca": re.search(r"CA certificate .*: (\S+)", text)[1],
        }
    finally:
        proc.terminate()  # SIGTERM: the server stops cleanly
        try:
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def client_for(info: dict[str, str]) -> tuple[EntraTokenProvider, httpx.Client]:
    provider = EntraTokenProvider(info["tenant"], info["client_id"], DEFAULT_APPS["sandbox-client"],
                                      resource=info["url"], authority_host=info["authority_host"],
                                      verify=info["ca"], timeout=60)
    client = httpx.Client(base_url=f"{info['url']}/api/data/v9.2", verify=info["ca"], timeout=60,
                          headers={"Authorization": f"Bearer {provider.token()}"})
    return provider, client


def test_cli_serves_https_with_tokens_and_records_survive_a_restart(tmp_path: Path) -> None:
    db, port = tmp_path / "dataverse.sqlite", free_port()
    with dataverse_process(db, port) as info:
        assert info["url"] == f"https://127.0.0.1:{port}"
        provider, client = client_for(info)
        with provider, client:
            assert client.get("/contacts", headers={"Authorization": ""}).status_code == 401
            r = client.post("/contacts", json={"lastname": "Persisted", "firstname": "Pat"})
            assert r.status_code == 204, r.text
            assert "x-ms-dop-hint" in r.headers and "ARRAffinity" in r.cookies
            contact_id = re.search(r"\((.+)\)$", r.headers["odata-entityid"])[1]

    with dataverse_process(db, port) as info:
        provider, client = client_for(info)  # new process: new CA, new token
        with provider, client:
            r = client.get(f"/contacts({contact_id})", params={"$select": "lastname,firstname"})
    assert r.status_code == 200, r.text
    assert (r.json()["lastname"], r.json()["firstname"]) == ("Persisted", "Pat")


def test_cli_options_reach_the_server(monkeypatch, tmp_path: Path) -> None:
    from senseimig_dagster import cli
    from senseimig_dagster.sandbox.dataverse_emulator import server

    calls: list[tuple] = []
    monkeypatch.setattr(server, "run_dataverse_server", lambda *a, **kw: calls.append((a, kw)))
    db = str(tmp_path / "dv.sqlite")
    args = cli.build_parser().parse_args(["sandbox", "dataverse", "--db", db, "--limits", "off", "--time-scale", "60"])
    assert args.func(args) == 0
    args = cli.build_parser().parse_args(["sandbox", "dataverse", "--db", db, "--port", "9000", "--tls",
                                          "--hold", "off"])
    assert args.func(args) == 0
    assert calls == [
        ((Path(db), "127.0.0.1", 8766), {"tls": False, "limits_enabled": False, "time_scale": 60.0, "entra_port": 8767,
                                         "hold_execution": None}),
        ((Path(db), "127.0.0.1", 9000), {"tls": True, "limits_enabled": True, "time_scale": 1.0, "entra_port": 9001,
                                         "hold_execution": False}),
    ]


def test_msal_gets_a_token_from_the_emulators_own_port(tmp_path: Path, capsys) -> None:
    """The one-port token endpoint: Entra's token path on the emulator's own port; msal's discovery and token calls go
    there, and the token works for a record call (owned by the seed's application user)."""
    from senseimig_dagster.sandbox.dataverse_emulator.seed import load_seed
    from senseimig_dagster.sandbox.dataverse_emulator.server import run_dataverse_server

    stop = threading.Event()
    server = threading.Thread(target=run_dataverse_server, args=(tmp_path / "dv.sqlite",), daemon=True,
                              kwargs={"port": 0, "tls": True, "limits_enabled": False, "stop": stop})
    server.start()
    printed, deadline = "", time.monotonic() + READY_TIMEOUT
    try:
        while "Ctrl-C to stop" not in printed:
            assert server.is_alive() and time.monotonic() < deadline, printed
            time.sleep(0.05)
            printed += capsys.readouterr().out
        url = re.search(r"environment URL .*: (https://\S+)", printed)[1]
        assert re.search(r"authority host (https://[^)\s]+)", printed)[1] == url
        tenant, ca = re.search(r"tenant id: (\S+)", printed)[1], re.search(r"CA certificate .*: (\S+)", printed)[1]
        provider = EntraTokenProvider(tenant, "sandbox-client", DEFAULT_APPS["sandbox-client"],
                                          resource=url, authority_host=url, verify=ca, timeout=60)
        with provider, httpx.Client(base_url=f"{url}/api/data/v9.2", verify=ca, timeout=60) as client:
            headers = {"Authorization": f"Bearer {provider.token()}"}
            r = client.post("/contacts", json={"lastname": "Token"}, headers=headers)
            assert r.status_code == 204, r.text
            contact = re.search(r"\((.+)\)$", r.headers["odata-entityid"])[1]
            r = client.get(f"/contacts({contact})", params={"$select": "_ownerid_value"}, headers=headers)
        assert r.status_code == 200 and r.json()["_ownerid_value"] == load_seed().default_owner
    finally:
        stop.set()
        server.join(timeout=30)
