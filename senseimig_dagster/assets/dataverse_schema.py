"""``dataverse/schema``: the publisher, solution, custom tables, columns, lookups, keys and column security the
migration writes to (issue 3 §3). Idempotent; every change is written to ``audit.schema_changes`` as it happens,
so rollback (issue 6) can undo exactly what a run created.
"""

import dataclasses

import duckdb
from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset
from dagster_duckdb import DuckDBResource

from senseimig_dagster.dataverse.schema_setup import (
    SchemaChange,
    SchemaConflict,
    SchemaRefused,
    SchemaSetup,
    changes_markdown,
)
from senseimig_dagster.resources import DataverseResource

CHANGES_TABLE = "audit.schema_changes"


def _ensure_changes_table(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("CREATE SCHEMA IF NOT EXISTS audit")
    conn.execute(f"""CREATE TABLE IF NOT EXISTS {CHANGES_TABLE} (
        run_id VARCHAR NOT NULL, changed_at VARCHAR NOT NULL, kind VARCHAR NOT NULL, "table" VARCHAR, name VARCHAR NOT NULL,
        outcome VARCHAR NOT NULL, detail VARCHAR)""")


@asset(key=["dataverse", "schema"], group_name="dataverse", kinds={"dataverse"},
       description="Ensure the publisher, solution, custom tables, columns, lookups, alternate keys (Active) and "
                   "column security of the migration's Dataverse schema. A second run changes nothing.")
def dataverse_schema(context: AssetExecutionContext, dataverse: DataverseResource,
                     store: DuckDBResource) -> MaterializeResult:
    plan = dataverse.plan()
    with store.get_connection() as conn, dataverse.client() as client:
        _ensure_changes_table(conn)

        def record(change: SchemaChange) -> None:
            if change.outcome != "exists":  # the audit trail holds writes; "exists" lines only go to metadata
                conn.execute(f"INSERT INTO {CHANGES_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)",
                             [context.run_id, change.at, change.kind, change.table, change.name, change.outcome,
                              change.detail])
                context.log.info(f"schema {change.outcome}: {change.kind} {change.table or ''} {change.name}")

        setup = SchemaSetup(dataverse.metadata(client), plan, tier=dataverse.dataverse_tier, on_change=record)
        try:
            changes = setup.run()
        except SchemaRefused as e:
            planned = "\n".join(f"| {t.logical_name} | {', '.join(t.sources)} |" for t in plan.custom_tables)
            raise Failure(description=f"schema refused: {e}", metadata={
                "refused": MetadataValue.md(f"| custom table | from |\n|---|---|\n{planned}"),
                "changes": MetadataValue.md(changes_markdown(setup.changes))}) from None
        except SchemaConflict as e:
            raise Failure(description=str(e), metadata={
                "changes": MetadataValue.md(changes_markdown(setup.changes))}) from None
    created = [c for c in changes if c.outcome in ("created", "updated")]
    custom = [t.logical_name for t in plan.custom_tables]
    return MaterializeResult(metadata={
        "summary": MetadataValue.md(changes_markdown(changes)),
        "changed": len(created),
        "no_op": not created,
        "custom_tables": MetadataValue.json(custom),
        "tier": dataverse.dataverse_tier,
        "changes": MetadataValue.json([dataclasses.asdict(c) for c in created]),
    })
