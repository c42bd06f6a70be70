"""Serving the simulator over real HTTP on 127.0.0.1 (the sandbox's threaded keep-alive server)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from senseimig_dagster.sandbox.http_server import ThreadingWSGIServer, run_in_thread, serve_until_stopped
from senseimig_dagster.sandbox.sensei_sim.app import SenseiSimulator

log = logging.getLogger("senseimig.sandbox.sensei")


@contextmanager
def serve(sim: SenseiSimulator, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``sim`` on ``host:port`` (0 = a free port) in a background thread; yields the base URL."""
    with run_in_thread(ThreadingWSGIServer((host, port)), sim, "sensei-sim") as url:
        yield url


def run_sensei_server(data_dir: Path, host: str = "127.0.0.1", port: int = 8765,
                      api_key: str = "sandbox-key") -> None:
    """Serve a tenant directory until Ctrl-C (or SIGTERM)."""
    sim = SenseiSimulator(Path(data_dir), api_keys=(api_key,))
    started = time.monotonic()
    rows = sim.warm()
    print(f"indexed {rows:,} records from {data_dir} in {time.monotonic() - started:.1f} s", flush=True)
    try:
        with serve(sim, host, port) as url:
            serve_until_stopped([f"Sensei simulator at {url}/v1/ (Csd-Api-Key required)"])
    finally:
        sim.close()
