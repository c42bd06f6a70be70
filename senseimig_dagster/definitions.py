"""The one ``Definitions`` of senseimig; ``workspace.yaml`` points the Dagster UI here."""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from senseimig_dagster import settings
from senseimig_dagster.assets.dataverse_schema import dataverse_schema
from senseimig_dagster.assets.go_live import go_live_ready
from senseimig_dagster.assets.inventory import inventory
from senseimig_dagster.assets.labels import labelled
from senseimig_dagster.assets.mapping import mapping_proposed, mapping_state
from senseimig_dagster.assets.owners import staging_owners
from senseimig_dagster.assets.raw import raw_assets
from senseimig_dagster.assets.sample import sample_diff
from senseimig_dagster.assets.staging import staging_assets
from senseimig_dagster.assets.writers import dataverse_assets, writer_checks
from senseimig_dagster.io_managers import SenseimigDuckDBIOManager
from senseimig_dagster.jobs import all_jobs
from senseimig_dagster.resources import build_resources, store_protection_from_env


def build_definitions(database: str | None = None) -> Definitions:
    """Assets, checks, jobs and resources, the resources as the environment configures them now."""
    database = database or settings.duckdb_path()
    return Definitions(
        assets=labelled([*raw_assets, inventory, dataverse_schema, mapping_state, mapping_proposed, staging_assets,
                         staging_owners, sample_diff, *dataverse_assets, go_live_ready]),  # owners, tags, labels
        asset_checks=writer_checks,  # each writer's counts, fields and conservation (assets/verification.py)
        jobs=all_jobs,
        resources={**build_resources(database), "duckdb_io_manager": SenseimigDuckDBIOManager(database=database, **store_protection_from_env())},
        # DuckDB allows one writing process per database file: steps run in one process, one after another.
        # Throughput comes from streaming inside a step (and, for Dataverse, parallel requests), not processes.
        executor=in_process_executor,
    )


defs = build_definitions()
