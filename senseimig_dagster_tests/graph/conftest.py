"""Fixtures for the Graph client's tests: the Entra ID and Graph stand-ins on one port over real HTTPS on
127.0.0.1, behind a WSGI wrapper that can fail chosen requests (503, or a connection reset before or after the
stand-in has handled the request)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from senseimig_dagster.graph.drive import GraphDrive
from senseimig_dagster.sandbox.entra import EntraStandIn
from senseimig_dagster.sandbox.graph import DriveStore, GraphStandIn, serve_graph
from senseimig_dagster.sandbox.http_server import ABORT_KEY
from senseimig_dagster.sandbox.tls import TLSFiles, make_local_ca

TENANT = "11111111-2222-4333-8444-555555555555"
CLIENT_ID, SECRET = "graph-client", "graph-s3cret~never-shown"
SITE_URL = "https://contoso.sharepoint.com/sites/dental"


@dataclass
class Fault:
    matches: Callable[[dict], bool]
    kind: str  # "503" | "drop_before" | "drop_after"
    times: int = 1


@dataclass
class FaultyApp:
    """Wraps a WSGI app; each request matching a pending :class:`Fault` fails as the fault says."""

    app: Callable
    faults: list[Fault] = field(default_factory=list)
    seen: list[tuple[str, str, str | None, bool]] = field(default_factory=list)  # method, path, range, auth
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        with self.lock:
            self.seen.append((environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""),
                              environ.get("HTTP_CONTENT_RANGE"), bool(environ.get("HTTP_AUTHORIZATION"))))
            fault = next((f for f in self.faults if f.times > 0 and f.matches(environ)), None)
            if fault is not None:
                fault.times -= 1
        if fault is None:
            return self.app(environ, start_response)
        if fault.kind == "503":
            body = b'{"error":{"code":"serviceNotAvailable","message":"injected"}}'
            start_response("503 Service Unavailable", [("Content-Type", "application/json"), ("Retry-After", "0"),
                                                       ("Content-Length", str(len(body)))])
            return [body]
        if fault.kind == "drop_after":
            list(self.app(environ, lambda *a, **k: None))  # the stand-in stores the fragment; the answer is lost
        else:
            environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [("Content-Length", "100")])
        return _reset(environ)


def _reset(environ: dict) -> Iterator[bytes]:
    yield b""
    environ[ABORT_KEY]()
    raise ConnectionResetError("fault injection")


def fragment_at(start: int) -> Callable[[dict], bool]:
    def matches(environ: dict) -> bool:
        m = re.match(r"bytes (\d+)-", environ.get("HTTP_CONTENT_RANGE", ""))
        return environ["REQUEST_METHOD"] == "PUT" and m is not None and int(m[1]) == start
    return matches


@dataclass
class GraphEnv:
    url: str
    tls: TLSFiles
    stand_in: GraphStandIn
    faulty: FaultyApp

    def drive(self, **kwargs) -> GraphDrive:
        kwargs.setdefault("chunk_size", 327_680)
        return GraphDrive(graph_url=f"{self.url}/v1.0", tenant_id=TENANT, client_id=CLIENT_ID,
                          client_secret=SECRET, authority_host=self.url, site_url=SITE_URL,
                          verify=str(self.tls.ca_cert), sleep=lambda s: None, **kwargs)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_local_ca(Path(tmp_path_factory.mktemp("graph-tls")))


@pytest.fixture
def graph_env(tls_files: TLSFiles, tmp_path: Path) -> Iterator[GraphEnv]:
    entra = EntraStandIn(apps={CLIENT_ID: SECRET}, tenant=TENANT, seed=3)
    store = DriveStore(tmp_path / "graph.sqlite")
    stand_in = GraphStandIn(store, token_validator=entra.token_info)
    faulty = FaultyApp(stand_in)

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if EntraStandIn.handles(environ.get("PATH_INFO", "")):
            return entra(environ, start_response)
        return faulty(environ, start_response)

    with serve_graph(app, tls=tls_files) as url:
        yield GraphEnv(url, tls_files, stand_in, faulty)
    store.close()
