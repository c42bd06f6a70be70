"""A small generated tenant staged and loaded into the in-process emulator through the unaudited load
(``load/upsert.py``): what the verification tests check Dataverse against. Built once per session; each test copies
the emulator's database so tampering with it stays local."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from senseimig_dagster import mapping
from senseimig_dagster.dataverse.bulk import BulkLoader
from senseimig_dagster.dataverse.metadata import DataverseMetadata
from senseimig_dagster.dataverse.schema_setup import SchemaSetup
from senseimig_dagster.load.upsert import load_staged
from senseimig_dagster.mapping.schema_plan import default_plan
from senseimig_dagster.mapping.scope import tables_of
from senseimig_dagster.mapping.targets import TargetCatalog
from senseimig_dagster.objects import REGISTRY
from senseimig_dagster.sandbox.generator import generate
from senseimig_dagster.staging.pipeline import StagingResult, stage_tenant
from senseimig_dagster_tests.support.environments import emulator, in_process_client
from senseimig_dagster_tests.support.tenants import read_object

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


def load_tenant(root: Path) -> Loaded:
    """Generate, stage and load the tenant under ``root`` (every row must land)."""
    generate(root / "tenant", patients=PATIENTS, seed=SEED)
    raw = {o.name: read_object(root / "tenant", o.name) for o in REGISTRY}
    staging = stage_tenant(raw, FMAP, plan=PLAN)
    with emulator(root / "dv.sqlite", journaled=True) as app, in_process_client(app) as client:
        SchemaSetup(DataverseMetadata(client), PLAN).run()
        sets = DataverseMetadata(client).entity_sets(tables_of(FMAP, staging.staged) | {"account"})
        results = load_staged(BulkLoader([client], chunk_size=200, max_parallel=2), staging.staged, FMAP, CATALOG,
                              sets)
        assert not [f for r in results.values() for f in r.failed]
    return Loaded(raw, staging, root / "dv.sqlite", sets)
