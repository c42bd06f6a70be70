"""``dataverse/schema``: the publisher, solution, custom tables, columns, lookups, keys and column security the
migration writes to (``mapping/schema_plan.py``). Idempotent; every change is written to ``audit.schema_changes``
as it happens, so rollback can undo exactly what a run created.
"""
# No `from __future__ import annotations` here: Dagster reads the context and resource annotations at runtime.

import dataclasses

from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from senseimig_dagster.assets.keys import SCHEMA
from senseimig_dagster.audit.schema_changes import CHANGES_TABLE, ensure_changes_table
from senseimig_dagster.dataverse.schema_setup import (
    SchemaChange,
    SchemaConflict,
    SchemaRefused,
    SchemaSetup,
    changes_markdown,
)
from senseimig_dagster.resources import DataverseResource, StoreResource


@asset(key=SCHEMA, group_name="dataverse", kinds={"dataverse"},
       description="Ensure the publisher, solution, custom tables, columns, lookups, alternate keys (Active) and "
                   "column security of the migration's Dataverse schema. A second run changes nothing.")
def dataverse_schema(context: AssetExecutionContext, dataverse: DataverseResource,
                     store: StoreResource) -> MaterializeResult:
    plan = dataverse.plan()
    with store.get_connection() as conn, dataverse.session() as session:
        ensure_changes_table(conn)

        def record(change: SchemaChange) -> None:
            if change.outcome != "exists":  # the audit trail holds writes; "exists" lines only go to metadata
                conn.execute(f"INSERT INTO {CHANGES_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)",
                             [context.run_id, change.at, change.kind, change.table, change.name, change.outcome,
                              change.detail])
                context.log.info(f"schema {change.outcome}: {change.kind} {change.table or ''} {change.name}")

        setup = SchemaSetup(session.metadata, plan, tier=dataverse.dataverse_tier, on_change=record)
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
