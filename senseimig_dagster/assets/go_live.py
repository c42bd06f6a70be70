"""``go_live_ready``: the migration may go live. Depends on every ``dataverse/<object>`` writer (their keys from
``assets/dataverse_load.py``, generated from the registry and the map), so it runs after the whole load.

Its blocking ``ledger_reconciliation`` check (``verify/ledger.py``): Sensei's charges, payments, adjustments,
insurance payments, write-offs and claim amounts per location and overall vs what Dataverse holds, within 0.01%.
On a failure the ledger rows that differ are re-upserted once (``dataverse/load.py``, behind the map's gate:
no re-run under an unconfirmed map) and reconciled again; if it still fails the asset fails with the Markdown
table, so go-live stays blocked. The quarantined amounts per location are in the metadata either way.
"""
# No `from __future__ import annotations` here: Dagster reads the context and resource annotations at runtime.

from collections.abc import Mapping

import duckdb
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from dagster_duckdb import DuckDBResource

from senseimig_dagster.assets.dataverse_load import WRITER_KEYS
from senseimig_dagster.assets.staging import _map
from senseimig_dagster.dataverse.load import entity_sets
from senseimig_dagster.dataverse.loader import BulkLoader
from senseimig_dagster.mapping.gate import gate_problems
from senseimig_dagster.mapping.targets import TargetCatalog
from senseimig_dagster.resources import DataverseResource, MappingResource
from senseimig_dagster.staging.delta import latest_sql
from senseimig_dagster.verify.counts import DataverseIndex
from senseimig_dagster.verify.dagster_checks import read_owners, table_exists
from senseimig_dagster.verify.ledger import (
    CHECK_NAME,
    LOCATION_TABLE,
    LedgerInputs,
    RepairOutcome,
    ledger_measures,
    ledger_table,
    money,
    reconcile_and_repair,
    reconciliation_markdown,
)

GO_LIVE_KEY = AssetKey("go_live_ready")
LATEST_LOCATIONS = latest_sql('raw."location"')  # raw keeps every version a delta landed: the newest counts


def _read_ledger_inputs(conn: duckdb.DuckDBPyConnection, objects: list[str]) -> tuple[LedgerInputs, dict[str, str]]:
    raw, staged = {}, {}
    for name in objects:
        if table_exists(conn, "raw", name):
            raw[name] = conn.sql(latest_sql(f'raw."{name}"')).pl()  # a record edited in a delta: its newest copy
        if table_exists(conn, "staging", name):
            staged[name] = conn.sql(f'SELECT * FROM staging."{name}"').pl()
    held = None
    if table_exists(conn, "staging", "quarantine"):
        rows = conn.sql("SELECT DISTINCT object, source_id FROM staging.quarantine").pl()
        held = {o: rows.filter(pl.col("object") == o).get_column("source_id").to_list() for o in objects}
    names = {}
    if table_exists(conn, "raw", "location"):
        names = dict(conn.sql(f'SELECT CAST(id AS VARCHAR), name FROM ({LATEST_LOCATIONS})').fetchall())
    return LedgerInputs(raw, staged, held), names


def _metadata(outcome: RepairOutcome, names: Mapping[str, str]) -> dict:
    return {"reconciliation": MetadataValue.md(reconciliation_markdown(outcome.final.table, names)),
            "rerun": outcome.rerun, "rows_reupserted": sum(len(v) for v in outcome.repaired.values()),
            "reupserted_source_ids": MetadataValue.json(outcome.repaired),
            "reupsert_failures": outcome.failed_rows,
            "quarantined_by_location": MetadataValue.json(outcome.final.quarantined_by_location()),
            **({"first_reconciliation": MetadataValue.md(reconciliation_markdown(outcome.first.table, names))}
               if outcome.rerun else {})}


@asset(key=GO_LIVE_KEY, group_name="verify", deps=WRITER_KEYS, kinds={"dataverse"},
       check_specs=[AssetCheckSpec(CHECK_NAME, asset=GO_LIVE_KEY, blocking=True,
                                   description="Sensei's ledger and claim totals per location equal Dataverse's "
                                               "within 0.01% (one automatic re-run of the differing rows)")],
       description="The migration is ready to go live: every Dataverse asset loaded and verified, and the ledger "
                   "reconciles to Dataverse per location (Markdown table in the metadata).")
def go_live_ready(context: AssetExecutionContext, store: DuckDBResource, dataverse: DataverseResource,
                  mapping: MappingResource) -> MaterializeResult:
    fmap, plan = _map(mapping), dataverse.plan()
    objects = sorted({m.object for m in ledger_measures(fmap)})
    with store.get_connection() as conn:
        inputs, names = _read_ledger_inputs(conn, objects)
        owners = read_owners(conn)
    clients = dataverse.clients()
    try:
        sets = entity_sets(dataverse.metadata(clients[0]), {ledger_table(fmap), LOCATION_TABLE})
        # The re-run writes: only behind the map's confirmation gate, like the writers.
        loader = None if gate_problems(mapping.path) else BulkLoader(clients)
        outcome = reconcile_and_repair(loader, inputs, fmap, plan, TargetCatalog(plan), sets,
                                       DataverseIndex(clients[0], sets), owners=owners)
    finally:
        for client in clients:
            client.close()
    metadata = _metadata(outcome, names)
    if not outcome.passed:
        context.log.error(f"ledger does not reconcile after {'a re-run' if outcome.rerun else 'no re-run'}: "
                          + ", ".join(sorted(outcome.final.failures)))
        raise Failure(description="The ledger does not reconcile with Dataverse (0.01%):\n\n"
                      + reconciliation_markdown(outcome.final.table, names), metadata=metadata)
    total = outcome.final.table.filter(pl.col("location") == "ALL")
    context.log.info("ledger reconciles: " + ", ".join(f"{m} {money(c)}" for m, c in
                                                       total.select("measure", "dataverse").iter_rows()))
    return MaterializeResult(metadata=metadata, check_results=[AssetCheckResult(
        asset_key=GO_LIVE_KEY, check_name=CHECK_NAME, passed=True, severity=AssetCheckSeverity.ERROR,
        metadata={"reconciliation": metadata["reconciliation"], "rerun": outcome.rerun},
        description="ledger reconciles per location" + (" after one re-run" if outcome.rerun else ""))])
