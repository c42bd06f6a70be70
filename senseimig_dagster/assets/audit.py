"""Audit jobs: ``export_audit`` copies the audit log to CSV or Parquet (PHI: on request only, DESIGN §6) and
``rollback`` returns the Dataverse environment to its pre-migration state from the log (audit/rollback.py), one
click in the UI or ``senseimig rollback``."""

from typing import Literal

import duckdb
import polars as pl
from dagster import Config, Failure, MetadataValue, OpExecutionContext, job, op
from dagster_duckdb import DuckDBResource
from pydantic import Field as ConfigField

from senseimig_dagster.audit.log import AuditLog
from senseimig_dagster.audit.rollback import Rollback, read_schema_changes
from senseimig_dagster.audit.store import AuditStore
from senseimig_dagster.objects import load_order
from senseimig_dagster.resources import DataverseResource, graph_from_env


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


def forget_undone(conn: duckdb.DuckDBPyConnection, undone: list[tuple[str, str]], run_id: str) -> int:
    """Mark every record rollback deleted or restored as ``rolled_back`` in the load ledger, so the next migration
    sends it again instead of finding its old body hash "unchanged" (the ledger would otherwise still vouch for a
    record that no longer exists, or holds its before-image again)."""
    exists = conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'load' "
                          "AND table_name = 'ledger'").fetchone()[0]
    if not exists or not undone:
        return 0
    frame = pl.DataFrame(undone, schema={"table": pl.String, "dataverse_id": pl.String}, orient="row")
    conn.register("undone", frame)
    try:
        before = conn.execute("SELECT count(*) FROM load.ledger").fetchone()[0]
        conn.execute("""INSERT INTO load.ledger BY NAME
            SELECT DISTINCT l.object, l."table", l.source_id, NULL AS dataverse_id, NULL AS body_hash,
                   NULL AS digests, 'rolled_back' AS outcome, ? AS run_id, now()::TIMESTAMP AS "at"
            FROM load.ledger l JOIN undone u ON l."table" = u."table" AND l.dataverse_id = u.dataverse_id""",
                     [run_id])
        return conn.execute("SELECT count(*) FROM load.ledger").fetchone()[0] - before
    finally:
        conn.unregister("undone")


@op(description="Restore what the migration updated, delete what it created (children first), optionally remove "
                "its schema. Resumable and idempotent; records changed by people are reported, not touched.")
def rollback_op(context: OpExecutionContext, config: RollbackConfig, dataverse: DataverseResource,
                audit: AuditStore, store: DuckDBResource) -> str:
    with store.get_connection() as conn:
        schema_changes = read_schema_changes(conn)
    drive = graph_from_env().drive()  # SharePoint files the document load uploaded (None: SharePoint not configured)
    try:
        with audit.connect() as conn, dataverse.client() as client:
            rollback = Rollback(client, AuditLog(conn), context.run_id, table_order=table_order(),
                                only_run=config.run_id, force=config.force, drive=drive)
            report = rollback.run(schema_changes, remove_schema=config.remove_schema)
    finally:
        if drive is not None:
            drive.close()
    with store.get_connection() as conn:
        forget_undone(conn, [*report.deleted, *report.restored], context.run_id)
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
