"""Shared by the end-to-end and crash-safety tests: a Sensei tenant over HTTP, the Dataverse emulator over HTTPS
behind a :class:`Switchboard` (count writes, inject faults, kill a loader process after N writes, swap the emulator
database between trials), the resources the migration runs with, and a Dataverse state that two runs can be
compared by (records by alternate key, lookups by their target's key, no GUIDs of our own)."""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from senseimig_dagster.cli.demo import SANDBOX_SITE_URL
from senseimig_dagster.io_managers import SenseimigDuckDBIOManager
from senseimig_dagster.mapping import confirm, default_map_path
from senseimig_dagster.resources import (
    AuditStore,
    DataverseResource,
    GraphResource,
    MappingResource,
    SenseiSource,
    StagingResource,
    StoreResource,
)
from senseimig_dagster.sandbox.dataverse_emulator import Catalog, DataverseEmulator, RecordStore
from senseimig_dagster.sandbox.dataverse_emulator.metadata_api import restore_custom_schema
from senseimig_dagster.sandbox.dataverse_emulator.seed import apply_seed, load_seed
from senseimig_dagster.sandbox.entra import EntraStandIn, serve_entra
from senseimig_dagster.sandbox.graph.app import GraphStandIn
from senseimig_dagster.sandbox.graph.server import serve_graph
from senseimig_dagster.sandbox.graph.store import DriveStore
from senseimig_dagster.sandbox.sensei_sim import SenseiSimulator, serve
from senseimig_dagster.sandbox.tls import make_local_ca, serve_wsgi

TEAM = "5eed0000-0000-4000-8000-000000000201"  # the seed's Front Desk team: fallback owner
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
KEY = "smig_sourcesystemid"
# What every write changes anyway, or what Dataverse stamps at write time (differs between two clean runs).
VOLATILE = frozenset({"modifiedon", "versionnumber", "@odata.etag", "modifiedby", "modifiedonbehalfby"})


@contextmanager
def fast_tmp(fallback: Path) -> Iterator[Path]:
    """A scratch directory in memory (``/dev/shm``) when there is one, else ``fallback``: DuckDB, the audit store,
    Dagster's event log and the emulator commit (fsync) per chunk, which on a busy disk dominates these tests."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield fallback
        return
    path = Path(tempfile.mkdtemp(prefix="senseimig-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _error(start_response: Callable, status: str, code: str) -> list[bytes]:
    body = json.dumps({"error": {"code": code, "message": "injected by the test"}}).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class Switchboard:
    """WSGI wrapper around the current emulator. ``fault(method, path, body)`` true: the write is refused with a
    500 (a request-level failure: no retry, no bisection). ``on_write(n)`` runs before the n-th write is handled
    and may return ``"drop"`` (the request never reaches Dataverse) or ``"land"``."""

    def __init__(self, app: DataverseEmulator) -> None:
        self.app, self.writes, self._lock = app, 0, threading.Lock()
        self.fault: Callable[[str, str, bytes], bool] | None = None
        self.on_write: Callable[[int], str] | None = None

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        method = environ["REQUEST_METHOD"]
        if method not in WRITE_METHODS:
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        path = environ.get("PATH_INFO", "")
        is_batch = path.endswith("$batch")
        if is_batch and not any(f"\n{m} ".encode() in body.replace(b"\r\n", b"\n") for m in WRITE_METHODS):
            return self.app(environ, start_response)  # a $batch of reads
        with self._lock:
            self.writes += 1
            n = self.writes
        if self.fault is not None and self.fault(method, path, body):
            return _error(start_response, "500 Internal Server Error", "0x80040216")
        if self.on_write is not None and self.on_write(n) == "drop":
            return _error(start_response, "503 Service Unavailable", "0x80072321")
        return self.app(environ, start_response)


def open_emulator(path: Path) -> tuple[RecordStore, DataverseEmulator]:
    """The emulator over ``path`` (seeded when new; its journaled custom schema re-applied)."""
    catalog = Catalog.load()
    catalog.key_delay = catalog.column_delay = 0.0
    store = RecordStore(path, catalog)
    restore_custom_schema(catalog, store)
    apply_seed(store, load_seed())
    return store, DataverseEmulator(catalog, store)


@dataclass
class Served:
    """The running services; ``switch.app`` is the emulator requests reach (its ``token_validator`` set here)."""

    switch: Switchboard
    entra: EntraStandIn
    sensei_url: str
    dataverse_url: str
    authority: str
    ca_bundle: str
    graph: GraphStandIn
    graph_url: str

    def use(self, app: DataverseEmulator) -> None:
        app.token_validator, app.tenant = self.entra.token_info, self.entra.tenant
        self.switch.app = app

    def dataverse(self) -> DataverseResource:
        return DataverseResource(environment_url=self.dataverse_url, authority_host=self.authority,
                                 tenant_id=self.entra.tenant, ca_bundle=self.ca_bundle,
                                 dataverse_tier="professional", fallback_owner=TEAM)

    def sharepoint(self) -> GraphResource:
        """The SharePoint site the emulator's seed names, through the Graph stand-in."""
        return GraphResource(graph_url=self.graph_url, site_url=SANDBOX_SITE_URL, tenant_id=self.entra.tenant,
                             authority_host=self.authority, ca_bundle=self.ca_bundle)


@contextmanager
def serve_all(tenant: Path, work: Path, app: DataverseEmulator) -> Iterator[Served]:
    """Sensei over HTTP; Dataverse, Entra ID and Microsoft Graph (the SharePoint site the emulator's seed names,
    configured through the environment the document load and rollback read) over HTTPS."""
    tls = make_local_ca(work / "tls")
    entra = EntraStandIn()
    switch = Switchboard(app)
    with ExitStack() as stack:
        sensei_url = stack.enter_context(serve(SenseiSimulator(tenant, rate_limit=None)))
        authority = stack.enter_context(serve_entra(entra, tls=tls))
        url = stack.enter_context(serve_wsgi(switch, tls=tls))
        graph = GraphStandIn(DriveStore(work / "graph.sqlite"), token_validator=entra.token_info)
        stack.callback(graph.store.close)
        graph_url = stack.enter_context(serve_graph(graph, tls=tls))
        stack.enter_context(_environment({"SHAREPOINT_SITE_URL": SANDBOX_SITE_URL, "GRAPH_URL": f"{graph_url}/v1.0",
                                          "GRAPH_CA_BUNDLE": str(tls.ca_cert), "GRAPH_AUTHORITY_HOST": authority}))
        served = Served(switch, entra, sensei_url, url, authority, str(tls.ca_cert), graph, f"{graph_url}/v1.0")
        served.use(app)
        yield served


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def confirmed_map(work: Path) -> Path:
    path = work / "mapping.yaml"
    shutil.copy(default_map_path(), path)
    confirm(path, "Test Reviewer")
    return path


def resources(served: Served, database: Path, audit: Path, mapping: Path) -> dict[str, Any]:
    return {"sensei": SenseiSource(base_url=served.sensei_url),
            "duckdb_io_manager": SenseimigDuckDBIOManager(database=str(database)),
            "store": StoreResource(database=str(database)), "mapping": MappingResource(path=str(mapping)),
            "dataverse": served.dataverse(), "audit": AuditStore(path=str(audit)), "graph": served.sharepoint(),
            "staging_rules": StagingResource(fallback_provider_id=None)}


# -- comparing two runs ----------------------------------------------------------------------------------------------
def records(database: Path) -> list[tuple[str, str, dict[str, Any]]]:
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT tbl, id, data FROM records ORDER BY tbl, id").fetchall()
    return [(t, i, json.loads(d)) for t, i, d in rows]


# Records with neither a source id nor a deterministic GUID: an activity party is its activity, role and party; a
# SharePoint location its regarding record and folder.
CONTENT_KEYED = {"activityparty": ("activityid", "participationtypemask", "partyid"),
                 "sharepointdocumentlocation": ("regardingobjectid", "relativeurl")}


def keyed_state(database: Path) -> tuple[dict[tuple[str, str], dict[str, Any]], list[tuple[str, str]]]:
    """Every record by (table, source id), or (table, id) when it has none (seed rows, deterministic ids), with
    GUIDs that name another record replaced by that record's (table, key); ``createdon`` only where the migration
    overrode it. Also the (table, key) pairs seen more than once."""
    rows = records(database)
    name_of = {i: f"{t}:{d.get(KEY) or i}" for t, i, d in rows}
    # A contact's SharePoint folder is named by its GUID (documents.folder_name), which differs between two runs.
    name_of |= {i.replace("-", "").upper(): f"folder of {t}:{d.get(KEY) or i}" for t, i, d in rows}
    state: dict[tuple[str, str], dict[str, Any]] = {}
    seen: Counter[tuple[str, str]] = Counter()
    for table, record_id, data in rows:
        key = (table, str(data.get(KEY) or record_id))
        if table in CONTENT_KEYED:  # rows the platform gives random GUIDs: known by what they connect
            key = (table, "|".join(str(name_of.get(v, v)) for v in (data.get(c) for c in CONTENT_KEYED[table])))
        seen[key] += 1
        values = {}
        for column, value in data.items():
            if column in VOLATILE or value is None or column == f"{table}id":
                continue
            # Dataverse keeps the migration's clock in overriddencreatedon ("the date the record was migrated")
            # and the source's date in createdon; without an override createdon is the run's clock too.
            if column == "overriddencreatedon" or (column == "createdon" and not data.get("overriddencreatedon")):
                continue
            values[column] = name_of.get(value, value) if isinstance(value, str) else value
        state[key] = values
    return state, sorted(k for k, n in seen.items() if n > 1)


def state_diff(expected: dict, got: dict, limit: int = 10) -> list[str]:
    """Keys missing, extra or differing (with the differing column names only: values may be PHI)."""
    out = [f"missing {k}" for k in sorted(set(expected) - set(got))]
    out += [f"extra {k}" for k in sorted(set(got) - set(expected))]
    for k in sorted(set(expected) & set(got)):
        if expected[k] != got[k]:
            cols = sorted(c for c in set(expected[k]) | set(got[k]) if expected[k].get(c) != got[k].get(c))
            out.append(f"differs {k}: {cols}")
    return out[:limit]
