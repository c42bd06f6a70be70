"""The stand-ins the tests run the migration against, built in one place:

* :func:`open_emulator` / :func:`emulator`: the Dataverse emulator over a SQLite file, seeded (organization, users,
  team, SharePoint site) unless asked not to, journaling its custom schema when asked (so a copy reopens), the
  metadata API's lags set; :func:`in_process_client` talks to it through ``httpx.WSGITransport``;
* :func:`sandbox`: the environment of the asset tests - Entra ID and the emulator over HTTPS on 127.0.0.1 (behind
  a :class:`~.wire.Wire`), and when asked the Sensei simulator over HTTP serving a tenant and the Microsoft Graph
  stand-in over HTTPS serving the seed's SharePoint site; :class:`Sandbox` hands out the resources that reach them;
* :func:`clocked_entra`: the Entra stand-in alone, on a fake clock msal shares (the client tests);
* :func:`graph_stand_in`: the Entra and Graph stand-ins on one port behind a :class:`~.wire.FaultyApp`.

Every server listens on 127.0.0.1 and is stopped when its context exits.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msal.application
import msal.token_cache
import pytest

from senseimig_dagster.dataverse import DataverseClient
from senseimig_dagster.dataverse.metadata import DataverseMetadata
from senseimig_dagster.dataverse.schema_setup import SchemaSetup
from senseimig_dagster.graph.drive import GraphDrive
from senseimig_dagster.mapping.schema_plan import default_plan
from senseimig_dagster.resources import DataverseResource, GraphResource
from senseimig_dagster.sandbox.dataverse_emulator import Catalog, DataverseEmulator, RecordStore
from senseimig_dagster.sandbox.dataverse_emulator.metadata_api import restore_custom_schema
from senseimig_dagster.sandbox.dataverse_emulator.seed import apply_seed, load_seed
from senseimig_dagster.sandbox.entra import EntraStandIn, serve_entra
from senseimig_dagster.sandbox.graph import DriveStore, GraphStandIn, serve_graph
from senseimig_dagster.sandbox.sensei_sim import SenseiSimulator, serve
from senseimig_dagster.sandbox.tls import TLSFiles, make_local_ca, serve_wsgi
from senseimig_dagster_tests.support.constants import (
    DATAVERSE_CLIENT_ID,
    DATAVERSE_SECRET,
    EMULATOR_URL,
    GRAPH_CLIENT_ID,
    GRAPH_SECRET,
    SITE_URL,
    SOURCE_KEY,
    TEST_TENANT,
)
from senseimig_dagster_tests.support.resources import migration_resources
from senseimig_dagster_tests.support.wire import FaultyApp, Wire


# -- the emulator in process -------------------------------------------------------------------------------------------
def open_emulator(path: Path, *, seeded: bool = True, journaled: bool = False, key_delay: float | None = 0.0,
                  column_delay: float | None = 0.0, catalog: Catalog | None = None,
                  **emulator: Any) -> tuple[RecordStore, DataverseEmulator]:
    """The emulator over ``path``; the caller closes the store. ``seeded``: the seed applied (organization, users,
    team, SharePoint site). ``journaled``: as the server runs it - custom schema changes are journaled in the store
    and those already there re-applied, so a copy of the file reopens with its schema. ``key_delay`` /
    ``column_delay``: how long new keys and columns take to become usable (0: at once; None: as ``catalog`` has
    them)."""
    catalog = catalog or Catalog.load()
    if key_delay is not None:
        catalog.key_delay = key_delay
    if column_delay is not None:
        catalog.column_delay = column_delay
    store = RecordStore(path, catalog)
    if journaled:
        restore_custom_schema(catalog, store)
    if seeded:
        apply_seed(store, load_seed())
    return store, DataverseEmulator(catalog, store, **emulator)


def keyed_contacts() -> Catalog:
    """Microsoft's catalog with contact's ``smig_sourcesystemid`` column and its alternate key already Active: the
    client tests address contacts by source id without setting a schema up."""
    catalog = Catalog.load()
    catalog.add_column("contact", "smig_SourceSystemId", "String", max_length=100)
    catalog.add_alternate_key("contact", "smig_sourcesystemid_key", [SOURCE_KEY])
    catalog.set_key_status("contact", "smig_sourcesystemid_key", "Active")
    return catalog


@contextmanager
def emulator(path: Path, **options: Any) -> Iterator[DataverseEmulator]:
    """:func:`open_emulator` as a context: the store is closed on exit."""
    store, app = open_emulator(path, **options)
    try:
        yield app
    finally:
        store.close()


def in_process_client(app: Any, **options: Any) -> DataverseClient:
    """A Dataverse client reaching ``app`` (the emulator, or a wrapper of it) in process, without tokens."""
    return DataverseClient(EMULATOR_URL, None, transport=httpx.WSGITransport(app=app), **options)


@contextmanager
def schema_client(path: Path) -> Iterator[DataverseClient]:
    """An in-process client of a seeded emulator over ``path`` with the migration's schema (the default plan) set
    up, as ``dataverse/schema`` leaves it."""
    with emulator(path) as app, in_process_client(app) as client:
        SchemaSetup(DataverseMetadata(client), default_plan()).run()
        yield client


@contextmanager
def fast_tmp(fallback: Path) -> Iterator[Path]:
    """A scratch directory in memory (``/dev/shm``) when there is one, else ``fallback``: DuckDB, the audit store,
    Dagster's event log and the emulator commit (fsync) per chunk, which on a busy disk dominates the long tests."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield fallback
        return
    path = Path(tempfile.mkdtemp(prefix="senseimig-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- the served stand-ins --------------------------------------------------------------------------------------------
@dataclass
class Sandbox:
    """The stand-ins :func:`sandbox` serves. ``wire.app`` is the emulator requests reach: :meth:`use` swaps it."""

    work: Path
    tls: TLSFiles
    entra: EntraStandIn
    wire: Wire
    dataverse_url: str
    authority: str
    sensei_url: str | None = None
    graph: GraphStandIn | None = None
    graph_url: str | None = None
    fallback_owner: str | None = None

    @property
    def ca_bundle(self) -> str:
        return str(self.tls.ca_cert)

    @property
    def emulator(self) -> DataverseEmulator:
        return self.wire.app

    def use(self, app: DataverseEmulator) -> None:
        """Serve ``app`` from now on (another emulator database), with this Entra ID's tokens."""
        app.token_validator, app.tenant = self.entra.token_info, self.entra.tenant
        self.wire.app = app

    def dataverse(self, **overrides: Any) -> DataverseResource:
        """The emulator as the migration's Dataverse environment (the sandbox app registration)."""
        config = {"environment_url": self.dataverse_url, "authority_host": self.authority,
                  "tenant_id": self.entra.tenant, "ca_bundle": self.ca_bundle, "dataverse_tier": "professional",
                  "fallback_owner": self.fallback_owner}
        return DataverseResource(**{**config, **overrides})

    def sharepoint(self) -> GraphResource:
        """The seed's SharePoint site through the Graph stand-in (not configured when none is served)."""
        if self.graph_url is None:
            return GraphResource(site_url=None)
        return GraphResource(graph_url=self.graph_url, site_url=SITE_URL, tenant_id=self.entra.tenant,
                             authority_host=self.authority, ca_bundle=self.ca_bundle)

    def resources(self, database: str | Path, **options: Any) -> dict[str, Any]:
        """Every resource key, reaching these stand-ins (see :func:`~.resources.migration_resources`)."""
        options.setdefault("sensei_url", self.sensei_url)
        return migration_resources(database, dataverse=self.dataverse(), graph=self.sharepoint(), **options)


@contextmanager
def sandbox(work: Path, *, tenant: Path | None = None, graph: bool = False, app: DataverseEmulator | None = None,
            tls: TLSFiles | None = None, fallback_owner: str | None = None, reads: tuple[str, ...] = (),
            keep: bool = False, sensei_keys: tuple[str, ...] = ("sandbox-key",),
            **emulator_options: Any) -> Iterator[Sandbox]:
    """Entra ID and the Dataverse emulator over HTTPS, the Sensei simulator serving ``tenant`` (when given) over
    HTTP, the Graph stand-in (``graph``) over HTTPS. ``app``: serve this emulator (the caller owns its store), else
    one over ``work/dv.sqlite`` built by :func:`open_emulator` with ``emulator_options``. ``reads``/``keep``: the
    :class:`~.wire.Wire`'s. ``fallback_owner``: the Dataverse resource's. ``sensei_keys``: the API keys the simulator
    accepts."""
    tls = tls or make_local_ca(work / "tls")
    entra = EntraStandIn()
    with ExitStack() as stack:
        if app is None:
            store, app = open_emulator(work / "dv.sqlite", **emulator_options)
            stack.callback(store.close)
        wire = Wire(app, reads=reads, keep=keep)
        sensei_url = stack.enter_context(serve(SenseiSimulator(tenant, api_keys=sensei_keys,
                                                                        rate_limit=None))) if tenant else None
        authority = stack.enter_context(serve_entra(entra, tls=tls))
        url = stack.enter_context(serve_wsgi(wire, tls=tls))
        stand_in, graph_url = None, None
        if graph:
            stand_in = GraphStandIn(DriveStore(work / "graph.sqlite"), token_validator=entra.token_info)
            stack.callback(stand_in.store.close)
            graph_url = f"{stack.enter_context(serve_graph(stand_in, tls=tls))}/v1.0"
        served = Sandbox(work, tls, entra, wire, url, authority, sensei_url, stand_in, graph_url, fallback_owner)
        served.use(app)
        yield served


# -- the Entra stand-in alone, on a fake clock -----------------------------------------------------------------------
class FakeClock:
    def __init__(self, start: float | None = None):
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class _TimeShim:
    """Stands in for the ``time`` module inside msal: ``time()`` from the fake clock, the rest real."""

    def __init__(self, clock: FakeClock):
        self._clock = clock

    def time(self) -> float:
        return self._clock()

    def __getattr__(self, name: str):
        return getattr(time, name)


@dataclass
class Entra:
    stand_in: EntraStandIn
    url: str  # authority host, https://127.0.0.1:<port>
    tls: TLSFiles
    clock: FakeClock

    @property
    def ca(self) -> str:
        return str(self.tls.ca_cert)


@contextmanager
def clocked_entra(tls: TLSFiles, monkeypatch: pytest.MonkeyPatch) -> Iterator[Entra]:
    """The Entra stand-in on its own port (tenant :data:`TEST_TENANT`, app :data:`DATAVERSE_CLIENT_ID`), with one
    clock shared by it and msal's token cache."""
    clock = FakeClock()
    monkeypatch.setattr(msal.application, "time", _TimeShim(clock))
    monkeypatch.setattr(msal.token_cache, "time", _TimeShim(clock))
    stand_in = EntraStandIn(apps={DATAVERSE_CLIENT_ID: DATAVERSE_SECRET}, tenant=TEST_TENANT, clock=clock, seed=7)
    with serve_entra(stand_in, tls=tls) as url:
        yield Entra(stand_in, url, tls, clock)


# -- the Graph stand-in with its own Entra ID, behind fault injection -------------------------------------------------
@dataclass
class GraphEnv:
    url: str
    tls: TLSFiles
    stand_in: GraphStandIn
    faulty: FaultyApp

    def drive(self, **kwargs: Any) -> GraphDrive:
        kwargs.setdefault("chunk_size", 327_680)
        return GraphDrive(graph_url=f"{self.url}/v1.0", tenant_id=TEST_TENANT, client_id=GRAPH_CLIENT_ID,
                          client_secret=GRAPH_SECRET, authority_host=self.url, site_url=SITE_URL,
                          verify=str(self.tls.ca_cert), sleep=lambda s: None, **kwargs)


@contextmanager
def graph_stand_in(tls: TLSFiles, path: Path) -> Iterator[GraphEnv]:
    """The Entra ID and Graph stand-ins on one port over HTTPS, Graph behind a :class:`~.wire.FaultyApp`;
    ``path``: the drive store's SQLite file."""
    entra = EntraStandIn(apps={GRAPH_CLIENT_ID: GRAPH_SECRET}, tenant=TEST_TENANT, seed=3)
    store = DriveStore(path)
    stand_in = GraphStandIn(store, token_validator=entra.token_info)
    faulty = FaultyApp(stand_in)

    def app(environ: dict, start_response: Any) -> Any:
        if EntraStandIn.handles(environ.get("PATH_INFO", "")):
            return entra(environ, start_response)
        return faulty(environ, start_response)

    try:
        with serve_graph(app, tls=tls) as url:
            yield GraphEnv(url, tls, stand_in, faulty)
    finally:
        store.close()
