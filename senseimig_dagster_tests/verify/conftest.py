"""A small generated tenant staged and loaded into the in-process emulator once per session (load/upsert.py);
each test gets its own copy of the emulator's database, so tampering with it stays local to the test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import polars as pl
import pytest

from senseimig_dagster import mapping
from senseimig_dagster.dataverse import DataverseClient
from senseimig_dagster.dataverse.bulk import BulkLoader
from senseimig_dagster.dataverse.metadata import DataverseMetadata
from senseimig_dagster.dataverse.schema_setup import SchemaSetup
from senseimig_dagster.load.upsert import load_staged
from senseimig_dagster.mapping.schema_plan import default_plan
from senseimig_dagster.mapping.scope import tables_of
from senseimig_dagster.mapping.targets import TargetCatalog
from senseimig_dagster.objects import REGISTRY
from senseimig_dagster.sandbox.dataverse_emulator import (
    Catalog,
    DataverseEmulator,
    RecordStore,
    restore_custom_schema,
)
from senseimig_dagster.sandbox.dataverse_emulator.seed import apply_seed, load_seed
from senseimig_dagster.sandbox.generator import generate
from senseimig_dagster.staging.pipeline import StagingResult, stage_tenant
from senseimig_dagster_tests.staging.tenant_files import read_object

FMAP = mapping.load_valid(mapping.default_map_path())
PLAN = default_plan()
CATALOG = TargetCatalog(PLAN)
PATIENTS, SEED = 30, 5


@dataclass(frozen=True)
class Loaded:
    """The tenant as loaded: raw frames, staging's result, and the emulator database it was loaded into."""

    raw: dict[str, pl.DataFrame]
    staging: StagingResult
    database: Path
    entity_sets: dict[str, str]


def client_of(app: DataverseEmulator) -> DataverseClient:
    return DataverseClient("http://dv.test", None, transport=httpx.WSGITransport(app=app))


def _open(path: Path) -> tuple[RecordStore, DataverseEmulator]:
    catalog = Catalog.load()
    catalog.key_delay = catalog.column_delay = 0
    store = RecordStore(path, catalog)
    restore_custom_schema(catalog, store)
    apply_seed(store, load_seed())
    return store, DataverseEmulator(catalog, store)


@pytest.fixture(scope="session")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    root = tmp_path_factory.mktemp("verify")
    generate(root / "tenant", patients=PATIENTS, seed=SEED)
    raw = {o.name: read_object(root / "tenant", o.name) for o in REGISTRY}
    staging = stage_tenant(raw, FMAP, plan=PLAN)
    store, app = _open(root / "dv.sqlite")
    client = client_of(app)
    try:
        SchemaSetup(DataverseMetadata(client), PLAN).run()
        sets = DataverseMetadata(client).entity_sets(tables_of(FMAP, staging.staged) | {"account"})
        results = load_staged(BulkLoader([client], chunk_size=200, max_parallel=2), staging.staged, FMAP, CATALOG,
                              sets)
        assert not [f for r in results.values() for f in r.failed]
    finally:
        client.close()
        store.close()
    return Loaded(raw, staging, root / "dv.sqlite", sets)


@pytest.fixture
def emulator(loaded: Loaded, tmp_path: Path) -> Iterator[DataverseEmulator]:
    """This test's own copy of the loaded emulator."""
    copy = tmp_path / "dv.sqlite"
    shutil.copy(loaded.database, copy)
    store, app = _open(copy)
    try:
        yield app
    finally:
        store.close()


@pytest.fixture
def dv(emulator: DataverseEmulator) -> Iterator[DataverseClient]:
    with client_of(emulator) as client:
        yield client

