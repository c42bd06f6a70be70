"""The one ``Definitions`` of senseimig; ``workspace.yaml`` points the Dagster UI here."""

from __future__ import annotations

from dagster import Definitions, in_process_executor
from dagster_duckdb import DuckDBResource

from senseimig_dagster import settings
from senseimig_dagster.assets.dataverse_schema import dataverse_schema
from senseimig_dagster.assets.inventory import inventory
from senseimig_dagster.assets.mapping import mapping_proposed, mapping_state
from senseimig_dagster.assets.raw import raw_assets
from senseimig_dagster.assets.staging import staging_assets
from senseimig_dagster.io_managers import SenseimigDuckDBIOManager
from senseimig_dagster.jobs import all_jobs
from senseimig_dagster.resources import MappingResource, dataverse_from_env, sensei_source_from_env


def build_definitions(database: str | None = None) -> Definitions:
    database = database or settings.duckdb_path()
    return Definitions(
        assets=[*raw_assets, inventory, dataverse_schema, mapping_state, mapping_proposed, staging_assets],
        jobs=all_jobs,
        resources={
            "sensei": sensei_source_from_env(),
            "dataverse": dataverse_from_env(),
            "mapping": MappingResource(),
            "duckdb_io_manager": SenseimigDuckDBIOManager(database=database),
            "store": DuckDBResource(database=database),
        },
        # DuckDB allows one writing process per database file: steps run in one process, one after another.
        # Throughput comes from streaming inside a step (and, for Dataverse, parallel requests), not processes.
        executor=in_process_executor,
    )


defs = build_definitions()
