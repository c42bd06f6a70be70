"""Serve the Dataverse emulator over HTTP(S) until Ctrl-C or SIGTERM (``senseimig sandbox dataverse``, issue 3 §1).

Two listeners: the emulator (``/api/data/v9.2/``) on ``port`` and the Entra ID stand-in (the msal authority, which
issues the bearer tokens the emulator accepts) on ``entra_port``. With ``tls`` both speak HTTPS with a certificate
from a local CA generated at each start (msal only accepts ``https://`` authorities); the CA's path is printed for
clients' ``verify=``.

Persistence: records (and their alternate-key indexes) live in the SQLite file ``db`` and survive a restart. The
metadata catalog does not: every start loads Microsoft's standard tables afresh (:meth:`Catalog.load`), so custom
tables, columns, lookups and keys created through the metadata API are gone after a restart and must be created
again (their records stay in ``db``, unreachable until then).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from senseimig_dagster.sandbox.dataverse_emulator.app import BASE_PATH, DataverseEmulator
from senseimig_dagster.sandbox.dataverse_emulator.limits import Limits, ServiceProtection
from senseimig_dagster.sandbox.dataverse_emulator.metadata import Catalog
from senseimig_dagster.sandbox.dataverse_emulator.store import RecordStore
from senseimig_dagster.sandbox.entra import DEFAULT_APPS, EntraStandIn, serve_entra
from senseimig_dagster.sandbox.tls import make_local_ca, serve_wsgi

SANDBOX_CLIENT_ID = next(iter(DEFAULT_APPS))
SERVERS = 4  # simulated web servers behind the affinity cookie [inference: a production-size environment]


def build_emulator(db: Path, *, limits: Limits, entra: EntraStandIn,
                   servers: int = SERVERS) -> DataverseEmulator:
    """The emulator over ``db`` with bearer auth by ``entra`` and service protection by ``limits``."""
    catalog = Catalog.load()
    return DataverseEmulator(catalog, RecordStore(db, catalog), token_validator=entra.token_info,
                             tenant=entra.tenant, protection=ServiceProtection(limits, servers=servers))


def run_dataverse_server(db: Path, host: str = "127.0.0.1", port: int = 8766, *, tls: bool = False,
                         limits_enabled: bool = True, time_scale: float = 1.0, entra_port: int = 0,
                         stop: threading.Event | None = None) -> None:
    """Serve the emulator over ``db`` until Ctrl-C, SIGTERM or ``stop`` is set. ``port``/``entra_port`` 0 pick
    free ports. Prints the URLs, tenant, client id and CA path; never a secret."""
    db = Path(db)
    db.parent.mkdir(parents=True, exist_ok=True)
    files = make_local_ca(db.parent / f"{db.name}.tls") if tls else None
    entra = EntraStandIn()  # the sandbox app registrations (DEFAULT_APPS)
    emulator = build_emulator(db, limits=Limits(enabled=limits_enabled, time_scale=time_scale), entra=entra)
    stop = stop or threading.Event()

    def _stop(signum, frame):  # SIGTERM ends as cleanly as Ctrl-C
        stop.set()

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _stop) if in_main else None
    try:
        with serve_entra(entra, host, entra_port, tls=files) as authority_host, \
                serve_wsgi(emulator, host, port, tls=files, name="dataverse-emulator") as url:
            limits = "off" if not limits_enabled else f"on (time scale {time_scale:g})"
            lines = [
                f"Dataverse emulator at {url}{BASE_PATH}/ (bearer token required; service protection {limits})",
                f"  environment URL (token scope {url}/.default): {url}",
                f"  authority: {authority_host}/{entra.tenant}  (authority host {authority_host})",
                f"  tenant id: {entra.tenant}",
                f"  client id: {SANDBOX_CLIENT_ID}",
                "  client secret: the sandbox default (not printed); set AZURE_CLIENT_SECRET to it for clients",
                f"  records persist in {db}; custom tables made through metadata do not survive a restart",
            ]
            if files is not None:
                lines.append(f"  CA certificate (trust it with verify=): {files.ca_cert}")
            print("\n".join([*lines, "Ctrl-C to stop"]), flush=True)
            while not stop.wait(0.5):  # wakes for Ctrl-C too
                pass
    except KeyboardInterrupt:
        pass
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
        emulator.store.close()
