"""Audit jobs: ``export_audit`` copies the audit log to CSV or Parquet (it holds before-images, PHI: on request
only) and ``rollback`` returns the Dataverse environment to its pre-migration state from the log
(``audit/rollback.py``), one click in the UI or ``senseimig rollback``."""
# No `from __future__ import annotations` here: Dagster reads the context and resource annotations at runtime.

from typing import Literal

from dagster import Config, Failure, MetadataValue, OpExecutionContext, job, op
from pydantic import Field as ConfigField

from senseimig_dagster.audit.log import AuditLog
from senseimig_dagster.audit.rollback import Rollback
from senseimig_dagster.audit.schema_changes import read_schema_changes
from senseimig_dagster.load.journal import mark_rolled_back
from senseimig_dagster.objects import load_order
from senseimig_dagster.resources import AuditStore, DataverseResource, GraphResource, StoreResource


class ExportAuditConfig(Config):
    path: str = ConfigField(description="file to write; it holds before-images (PHI): keep it somewhere safe")
    format: Literal["csv", "parquet"] = "csv"


@op(description="Copy every row of audit.writes, oldest first, to a CSV or Parquet file.")
def export_audit_op(context: OpExecutionContext, config: ExportAuditConfig, audit: AuditStore) -> int:
    with audit.connect(read_only=True) as conn:
        rows = AuditLog(conn).export(config.path, config.format)
    context.add_output_metadata({"rows": rows, "path": config.path, "format": config.format})
    return rows


@job(description="Export the audit log (config: path, format csv|parquet).")
def export_audit() -> None:
    export_audit_op()


class RollbackConfig(Config):
    remove_schema: bool = ConfigField(default=False, description="also remove the schema the migration created")
    force: bool = ConfigField(default=False, description="also undo records people changed since the migration")
    run_id: str | None = ConfigField(default=None, description="undo only this run's writes (default: all runs)")


def table_order() -> list[str]:
    """Target tables parents-first, from the registry's load order."""
    return list(dict.fromkeys(o.target.table for o in load_order()))


@op(description="Restore what the migration updated, delete what it created (children first), optionally remove "
                "its schema. Resumable and idempotent; records changed by people are reported, not touched.")
def rollback_op(context: OpExecutionContext, config: RollbackConfig, dataverse: DataverseResource,
                graph: GraphResource, audit: AuditStore, store: StoreResource) -> str:
    with store.get_connection() as conn:
        schema_changes = read_schema_changes(conn)
    # graph: the SharePoint files the document load uploaded (no drive: SharePoint not configured)
    with graph.drive() as drive, audit.connect() as conn, dataverse.client() as client:
        rollback = Rollback(client, AuditLog(conn), context.run_id, table_order=table_order(),
                            only_run=config.run_id, force=config.force, drive=drive)
        report = rollback.run(schema_changes, remove_schema=config.remove_schema)
    with store.get_connection() as conn:
        mark_rolled_back(conn, [*report.deleted, *report.restored], context.run_id)
    summary = report.markdown()
    metadata = {"summary": MetadataValue.md(summary), "deleted": len(report.deleted),
                "restored": len(report.restored), "changed_by_person": len(report.changed_by_person),
                "failed": len(report.failed), "no_op": report.writes == 0}
    context.log.info(f"rollback: {len(report.deleted)} deleted, {len(report.restored)} restored, "
                     f"{len(report.changed_by_person)} changed by a person, {len(report.failed)} failed")
    if report.failed:
        raise Failure(description=f"{len(report.failed)} undo(s) failed; run rollback again", metadata=metadata)
    context.add_output_metadata(metadata)
    return summary


@job(description="Return Dynamics to its state before the migration from the audit log (config: remove_schema, "
                 "force, run_id).")
def rollback() -> None:
    rollback_op()
