"""Serve the Dataverse emulator over HTTP(S) until Ctrl-C or SIGTERM (``senseimig sandbox dataverse``).

One port serves the emulator (``/api/data/v9.2/``) and the Entra ID stand-in (the msal authority at
``/<tenant>/...``, which issues the bearer tokens the emulator accepts, to the seed file's app registrations); the
stand-in also listens on ``entra_port``. A fresh ``db`` is seeded (``seed.py``). With ``tls`` both speak HTTPS with
a certificate from a local CA generated at each start (msal only accepts ``https://`` authorities); the CA's path is
printed for clients' ``verify=``.

Persistence: records (and their alternate-key indexes) live in the SQLite file ``db`` and survive a restart, and
so does custom schema: every change made through the metadata API (tables, columns, lookups, keys and their index
status, column security) is journaled in ``db`` and replayed over Microsoft's standard tables at the next start
(``metadata_api.restore_custom_schema``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from senseimig_dagster.sandbox.dataverse_emulator.app import BASE_PATH, DataverseEmulator
from senseimig_dagster.sandbox.dataverse_emulator.limits import Limits, ServiceProtection
from senseimig_dagster.sandbox.dataverse_emulator.metadata import Catalog
from senseimig_dagster.sandbox.dataverse_emulator.metadata_api import restore_custom_schema
from senseimig_dagster.sandbox.dataverse_emulator.seed import apply_seed, load_seed
from senseimig_dagster.sandbox.dataverse_emulator.store import RecordStore
from senseimig_dagster.sandbox.entra import DEFAULT_APPS, EntraStandIn, serve_entra
from senseimig_dagster.sandbox.http_server import serve_until_stopped
from senseimig_dagster.sandbox.tls import make_local_ca, serve_wsgi

SANDBOX_CLIENT_ID = next(iter(DEFAULT_APPS))
SERVERS = 4  # simulated web servers behind the affinity cookie [inference: a production-size environment]


def single_port_app(entra: EntraStandIn, emulator: DataverseEmulator) -> Callable:
    """One WSGI app for one port: Entra ID's paths (``/<tenant>/oauth2/v2.0/token``, the OpenID discovery document,
    msal's instance discovery) go to the token endpoint, everything else to the emulator."""

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if EntraStandIn.handles(environ.get("PATH_INFO", "")):
            return entra(environ, start_response)
        return emulator(environ, start_response)

    return app


def build_emulator(db: Path, *, limits: Limits, entra: EntraStandIn,
                   servers: int = SERVERS) -> DataverseEmulator:
    """The emulator over ``db`` with bearer auth by ``entra`` and service protection by ``limits``."""
    catalog = Catalog.load()
    store = RecordStore(db, catalog)
    restore_custom_schema(catalog, store)  # custom tables, columns, lookups and keys made before the restart
    return DataverseEmulator(catalog, store, token_validator=entra.token_info,
                             tenant=entra.tenant, protection=ServiceProtection(limits, servers=servers))


def run_dataverse_server(db: Path, host: str = "127.0.0.1", port: int = 8766, *, tls: bool = False,
                         limits_enabled: bool = True, time_scale: float = 1.0, entra_port: int = 0,
                         seed: Path | None = None, stop: threading.Event | None = None,
                         hold_execution: bool | None = None) -> None:
    """Serve the emulator over ``db`` until Ctrl-C, SIGTERM or ``stop`` is set. ``port``/``entra_port`` 0 pick
    free ports; ``seed`` a seed file (default: the packaged one). The token endpoint answers on ``port`` too
    (and on ``entra_port``). ``hold_execution`` (default: whenever limits are on) holds each request for its
    modelled execution time (``Limits.hold``). Prints the URLs, tenant, client id and CA path; never a secret."""
    db = Path(db)
    db.parent.mkdir(parents=True, exist_ok=True)
    files = make_local_ca(db.parent / f"{db.name}.tls") if tls else None
    seeded = load_seed(seed)
    entra = EntraStandIn(apps=seeded.apps, tenant=seeded.tenant)  # the seed's app registrations
    hold = limits_enabled if hold_execution is None else hold_execution
    emulator = build_emulator(db, limits=Limits(enabled=limits_enabled, time_scale=time_scale, hold=hold),
                              entra=entra)
    apply_seed(emulator.store, seeded)  # a fresh store gets the organization, users and team; others are kept
    try:
        with serve_entra(entra, host, entra_port, tls=files) as entra_url, \
                serve_wsgi(single_port_app(entra, emulator), host, port, tls=files,
                           name="dataverse-emulator") as url:
            limits = "off" if not limits_enabled else \
                f"on (time scale {time_scale:g}, requests held for their modelled time: {'yes' if hold else 'no'})"
            lines = [
                f"Dataverse emulator at {url}{BASE_PATH}/ (bearer token required; service protection {limits})",
                f"  environment URL (token scope {url}/.default): {url}",
                f"  authority: {url}/{entra.tenant}  (authority host {url} and {entra_url})",
                f"  tenant id: {entra.tenant}",
                f"  client id: {next(iter(seeded.apps))}",
                "  client secret: the seed file's (sandbox default; not printed); set AZURE_CLIENT_SECRET to it for clients",
                f"  records persist in {db}; custom schema made through the metadata API too",
            ]
            if files is not None:
                lines.append(f"  CA certificate (trust it with verify=): {files.ca_cert}")
            serve_until_stopped(lines, stop)
    finally:
        emulator.store.close()
