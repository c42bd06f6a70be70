"""``checks_for(object_name)``'s multi-asset check: reads what the checks need from DuckDB, the run's instance and
Dataverse, then yields ``checks.check_results``."""
# No `from __future__ import annotations` here: Dagster reads the context and resource annotations at runtime.

from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
from dagster import AssetCheckExecutionContext, AssetChecksDefinition, AssetKey, multi_asset_check
from dagster_duckdb import DuckDBResource

from senseimig_dagster.dataverse.load import OwnerMap, entity_sets, tables_of
from senseimig_dagster.mapping.targets import TargetCatalog
from senseimig_dagster.resources import DataverseResource, MappingResource
from senseimig_dagster.staging.delta import latest_sql
from senseimig_dagster.staging.pipeline import written_objects
from senseimig_dagster.verify.checks import (
    VerifyInputs,
    check_results,
    check_specs,
    staging_counts_from_instance,
)

LOAD_LEDGER = "load.ledger"  # assets/dataverse_load.py
LATEST_USERS = latest_sql('raw."user"')  # raw keeps every version a delta landed: the newest counts


def table_exists(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND "
                             "table_name = ?", [schema, table]).fetchone()[0])


def read_owners(conn: duckdb.DuckDBPyConnection) -> OwnerMap | None:
    """The writers' owner map (``staging.owners`` and the raw users' e-mails), as they build it."""
    if not (table_exists(conn, "staging", "owners") and table_exists(conn, "raw", "user")):
        return None
    return OwnerMap.from_owners_table(conn.sql("SELECT * FROM staging.owners").pl(),
                                      conn.sql(f'SELECT CAST(id AS VARCHAR) AS id, email FROM ({LATEST_USERS})').pl())


def _inputs(conn: duckdb.DuckDBPyConnection, name: str, run_id: str
            ) -> tuple[pl.DataFrame, OwnerMap | None, pl.DataFrame | None]:
    staged = conn.sql(f'SELECT * FROM staging."{name}"').pl() if table_exists(conn, "staging", name) \
        else pl.DataFrame()
    ledger = None
    if table_exists(conn, "load", "ledger"):
        ledger = conn.execute(f"SELECT source_id, outcome FROM {LOAD_LEDGER} WHERE object = ? AND run_id = ?",
                              [name, run_id]).pl()
    return staged, read_owners(conn), ledger


def build_object_checks(object_name: str) -> AssetChecksDefinition:
    key = AssetKey(["dataverse", object_name])

    @multi_asset_check(specs=check_specs(key, object_name), name=f"verify__{object_name}",
                       description=f"Counts, field read-back and conservation of dataverse/{object_name}.")
    def _verify(context: AssetCheckExecutionContext, store: DuckDBResource, dataverse: DataverseResource,
                mapping: MappingResource) -> Iterator:
        from senseimig_dagster.assets.staging import _map  # the map the writers load with

        fmap = _map(mapping)
        with store.get_connection() as conn:
            staged, owners, ledger = _inputs(conn, object_name, context.run.run_id)
        client = dataverse.client()
        try:
            sets = entity_sets(dataverse.metadata(client), tables_of(fmap, written_objects(fmap)))
            inputs = VerifyInputs(client, fmap, TargetCatalog(dataverse.plan()), sets, owners=owners,
                                  staging_counts=staging_counts_from_instance(context.instance, object_name),
                                  csv_dir=Path(store.database).resolve().parent, run_id=context.run.run_id)
            yield from check_results(key, object_name, staged, inputs, load_ledger=ledger)
        finally:
            client.close()

    return _verify
