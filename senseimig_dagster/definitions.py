"""The one ``Definitions`` of senseimig; ``workspace.yaml`` points the Dagster UI here."""

from __future__ import annotations

from dagster import Definitions, in_process_executor
from dagster_duckdb import DuckDBResource

from senseimig_dagster import settings
from senseimig_dagster.assets.dataverse_load import dataverse_assets, dataverse_checks
from senseimig_dagster.assets.dataverse_schema import dataverse_schema
from senseimig_dagster.assets.go_live import go_live_ready
from senseimig_dagster.assets.inventory import inventory
from senseimig_dagster.assets.mapping import mapping_proposed, mapping_state
from senseimig_dagster.assets.owners import staging_owners
from senseimig_dagster.assets.raw import raw_assets
from senseimig_dagster.assets.sample import sample_diff
from senseimig_dagster.assets.staging import staging_assets
from senseimig_dagster.audit.store import audit_store_from_env
from senseimig_dagster.io_managers import SenseimigDuckDBIOManager
from senseimig_dagster.jobs import all_jobs
from senseimig_dagster.resources import (
    MappingResource,
    dataverse_from_env,
    sample_dataverse_from_env,
    sensei_source_from_env,
)


def build_definitions(database: str | None = None) -> Definitions:
    database = database or settings.duckdb_path()
    return Definitions(
        assets=[*raw_assets, inventory, dataverse_schema, mapping_state, mapping_proposed, staging_assets,
                staging_owners, sample_diff, *dataverse_assets, go_live_ready],
        asset_checks=dataverse_checks,  # verify.checks_for(object) per writer (issue 6 item 3)
        jobs=all_jobs,
        resources={
            "sensei": sensei_source_from_env(),
            "dataverse": dataverse_from_env(),
            "sample_dataverse": sample_dataverse_from_env(),  # the sample migration's target (assets/sample.py)
            "mapping": MappingResource(),
            "duckdb_io_manager": SenseimigDuckDBIOManager(database=database),
            "store": DuckDBResource(database=database),
            "audit": audit_store_from_env(),  # the audit log's own (encrypted) DuckDB file
        },
        # DuckDB allows one writing process per database file: steps run in one process, one after another.
        # Throughput comes from streaming inside a step (and, for Dataverse, parallel requests), not processes.
        executor=in_process_executor,
    )


defs = build_definitions()
