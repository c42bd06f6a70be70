"""Serve the Graph drive stand-in over HTTP(S) (``senseimig sandbox graph``), with the Entra ID stand-in that
issues its tokens on the same port (``single_port_app``, as the Dataverse emulator does).

Sites, libraries, files and open upload sessions live in the SQLite file ``db`` and survive a restart (an upload
can resume against a restarted server). Download URLs are short-lived and kept in memory only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from senseimig_dagster.sandbox.entra import DEFAULT_APPS, EntraStandIn
from senseimig_dagster.sandbox.graph.app import BASE_PATH, GraphStandIn, SiteSpec
from senseimig_dagster.sandbox.graph.store import DriveStore
from senseimig_dagster.sandbox.http_server import serve_until_stopped
from senseimig_dagster.sandbox.tls import TLSFiles, make_local_ca, serve_wsgi


def single_port_app(entra: EntraStandIn, graph: GraphStandIn) -> Callable:
    """Entra ID's paths to the token endpoint, everything else to the Graph stand-in."""

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if EntraStandIn.handles(environ.get("PATH_INFO", "")):
            return entra(environ, start_response)
        return graph(environ, start_response)

    return app


@contextmanager
def serve_graph(graph: GraphStandIn | Callable, host: str = "127.0.0.1", port: int = 0, tls: TLSFiles | None = None,
                entra: EntraStandIn | None = None) -> Iterator[str]:
    """Serve ``graph`` (and ``entra`` on the same port, when given) in a background thread; yields the base URL
    (the Graph root is ``<url>/v1.0``)."""
    app = single_port_app(entra, graph) if entra is not None else graph
    with serve_wsgi(app, host, port, tls=tls, name="graph-stand-in") as url:
        yield url


def run_graph_server(db: Path, host: str = "127.0.0.1", port: int = 8767, *, tls: bool = False,
                     sites: Iterable[SiteSpec] = (SiteSpec(),), stop: threading.Event | None = None) -> None:
    """Serve the stand-in over ``db`` until Ctrl-C, SIGTERM or ``stop``. Prints URLs, tenant, client id and the CA
    path; never a secret."""
    db = Path(db)
    db.parent.mkdir(parents=True, exist_ok=True)
    files = make_local_ca(db.parent / f"{db.name}.tls") if tls else None
    entra = EntraStandIn()
    store = DriveStore(db)
    graph = GraphStandIn(store, token_validator=entra.token_info, sites=sites)
    try:
        with serve_graph(graph, host, port, tls=files, entra=entra) as url:
            lines = [f"Microsoft Graph stand-in at {url}{BASE_PATH} (bearer token for https://graph.microsoft.com)",
                     f"  authority: {url}/{entra.tenant}  (tenant id {entra.tenant})",
                     f"  client id: {next(iter(DEFAULT_APPS))} (sandbox secret; not printed)"]
            lines += [f"  site: https://{s.hostname}{s.path}  libraries: {', '.join(s.libraries)}" for s in sites]
            lines.append(f"  files and upload sessions persist in {db}")
            if files is not None:
                lines.append(f"  CA certificate (trust it with verify=): {files.ca_cert}")
            serve_until_stopped(lines, stop)
    finally:
        store.close()
