"""``dataverse/document``: every Sensei document's body into Dynamics (issue 7 item 1), in place of the generic writer.

The asset is a thin wrapper around :class:`~senseimig_dagster.dataverse.documents.DocumentLoader` (routing, notes,
block upload, SharePoint, read-back: see that module). It

* yields the map's confirmation gate first, like every writer;
* builds each document's note columns from its staged row (owner and lookups as the generic writer binds them) and
  takes size and SHA-256 from the raw manifest (``raw.document``: the map skips them);
* fetches bytes from the Sensei API (``sensei`` resource; a CSV export carries no file content);
* writes to SharePoint through Graph as configured by environment (:func:`~senseimig_dagster.resources.graph_from_env`,
  not a resource key, so runs without SharePoint keep their definitions): without ``SHAREPOINT_SITE_URL`` documents
  that need SharePoint fail with ``sharepoint_not_configured`` and a warning; with it, a Dynamics environment whose
  SharePoint integration is not set up fails the asset after every other document is recorded;
* keeps one row per document per run in ``load.documents`` (outcome, reason, size, SHA-256, ids, the stored file
  name: PHI, so DuckDB only) and in the load ledger (so rollback's ``rolled_back`` marks and the deletions report
  see documents too). A document already uploaded with the same hash and note columns is not re-sent;
* checks ``documents_verified`` (every body read back equals the source in size and SHA-256) and
  ``documents_accounted`` (one outcome per staged document). The generic counts/fields checks don't apply: a
  document may rightly be a SharePoint file or a named failure instead of a note.

Metadata: counts per outcome and per reason, bytes and MB/s; ids only, never file names.
"""
# No `from __future__ import annotations` here: Dagster reads the context and resource annotations at runtime.

import datetime as dt
import time
from collections import Counter
from collections.abc import Iterator

import duckdb
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Failure,
    MetadataValue,
    Output,
    asset,
)
from dagster_duckdb import DuckDBResource

from senseimig_dagster.assets.dataverse_load import (
    FAILED_IDS_SHOWN,
    SCHEMA_KEY,
    _read_inputs,
    _table_exists,
    append_ledger,
    ensure_ledger,
    in_run_window,
    writer_key,
    writer_parents,
)
from senseimig_dagster.assets.owners import OWNERS_KEY
from senseimig_dagster.assets.staging import _map
from senseimig_dagster.audit.log import AuditLog, insert_columns
from senseimig_dagster.audit.rollback import GRAPH_FILES
from senseimig_dagster.audit.store import AuditStore
from senseimig_dagster.dataverse.document_loader import (
    DocumentInput,
    DocumentLoader,
    DocumentResult,
    PreviousDocument,
)
from senseimig_dagster.dataverse.documents import sensei_content
from senseimig_dagster.dataverse.load import CREATE_ONLY_COLUMNS, entity_sets, resolve_users, tables_of
from senseimig_dagster.dataverse.payload import PayloadBuilder
from senseimig_dagster.dataverse.writer import LedgerRow
from senseimig_dagster.mapping.gate import enforce_gate, gate_check_spec
from senseimig_dagster.mapping.targets import TargetCatalog
from senseimig_dagster.objects import get
from senseimig_dagster.resources import DataverseResource, MappingResource, SenseiSource, graph_from_env
from senseimig_dagster.staging.delta import latest_sql
from senseimig_dagster.staging.pipeline import written_objects

NAME, TABLE = "document", "annotation"
DOCUMENT_KEY = writer_key(NAME)
DOCUMENTS = "load.documents"
VERIFIED, ACCOUNTED = "documents_verified", "documents_accounted"
OUTCOMES = ("note", "note_blocks", "sharepoint", "unchanged", "failed")
_DDL = f"""
CREATE SCHEMA IF NOT EXISTS load;
CREATE TABLE IF NOT EXISTS {DOCUMENTS} (source_id VARCHAR NOT NULL, outcome VARCHAR NOT NULL, route VARCHAR,
    reason VARCHAR, size_bytes BIGINT, sha256 VARCHAR, meta_hash VARCHAR, stored_name VARCHAR, note_id VARCHAR,
    location_id VARCHAR, item_id VARCHAR, verified BOOLEAN, status INTEGER, run_id VARCHAR NOT NULL,
    "at" TIMESTAMP NOT NULL, seconds DOUBLE);
ALTER TABLE load.documents ADD COLUMN IF NOT EXISTS seconds DOUBLE;
"""
VALUE_SCHEMA = {"source_id": pl.String, "outcome": pl.String, "route": pl.String, "reason": pl.String,
                "size_bytes": pl.Int64, "sha256": pl.String, "note_id": pl.String, "location_id": pl.String,
                "item_id": pl.String, "verified": pl.Boolean, "run_id": pl.String}


# -- the per-document record ---------------------------------------------------------------------------------------
def previous_documents(conn: duckdb.DuckDBPyConnection) -> dict[str, PreviousDocument]:
    """The last successful upload of each document, unless rollback undid it since (``rolled_back`` in the load
    ledger) or its latest attempt failed."""
    conn.execute(_DDL)
    ensure_ledger(conn)
    rows = conn.execute(f"""
        WITH latest AS (
            SELECT source_id, arg_max(outcome, "at") AS last,
                   arg_max(COLUMNS(* EXCLUDE (source_id, run_id, "at")), "at") FILTER (WHERE outcome <> 'failed')
            FROM {DOCUMENTS} GROUP BY source_id),
        undone AS (SELECT source_id FROM load.ledger WHERE object = ? GROUP BY source_id
                   HAVING arg_max(outcome, "at") = 'rolled_back')
        SELECT source_id, route, sha256, meta_hash, stored_name, note_id, location_id, item_id
        FROM latest WHERE last <> 'failed' AND source_id NOT IN (SELECT source_id FROM undone)""",
                        [NAME]).fetchall()
    return {sid: PreviousDocument(route, sha, meta, name, note, location, item)
            for sid, route, sha, meta, name, note, location, item in rows}


# Failures that only a change at the source can cure: a window run retries them only when the document itself is
# in the window (a full run re-attempts every document anyway).
SOURCE_FAULTS = ("zero_byte_file", "missing_at_source", "source_hash_mismatch")


def failed_documents(conn: duckdb.DuckDBPyConnection) -> set[str]:
    """Documents whose latest attempt failed for a reason a retry may cure (a window run tries them again)."""
    conn.execute(_DDL)
    return {r[0] for r in conn.execute(
        f"""SELECT source_id FROM {DOCUMENTS} GROUP BY source_id
            HAVING arg_max(outcome, "at") = 'failed' AND NOT list_has_any(
                string_split(coalesce(arg_max(reason, "at"), ''), ';'), ?)""", [list(SOURCE_FAULTS)]).fetchall()}


def record(conn: duckdb.DuckDBPyConnection, results: list[DocumentResult], run_id: str) -> pl.DataFrame:
    """``load.documents`` and the load ledger for this run; returns the asset value (no file names)."""
    at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    conn.execute(_DDL)
    columns = {
        "source_id": ("VARCHAR", [r.source_id for r in results]), "outcome": ("VARCHAR", [r.outcome for r in results]),
        "route": ("VARCHAR", [r.route for r in results]), "reason": ("VARCHAR", [r.reason for r in results]),
        "size_bytes": ("BIGINT", [r.size for r in results]), "sha256": ("VARCHAR", [r.sha256 for r in results]),
        "meta_hash": ("VARCHAR", [r.meta_hash for r in results]),
        "stored_name": ("VARCHAR", [r.stored_name for r in results]),
        "note_id": ("VARCHAR", [r.note_id for r in results]),
        "location_id": ("VARCHAR", [r.location_id for r in results]),
        "item_id": ("VARCHAR", [r.item_id for r in results]), "verified": ("BOOLEAN", [r.verified for r in results]),
        "status": ("INTEGER", [r.status for r in results]), "run_id": ("VARCHAR", [run_id] * len(results)),
        "at": ("TIMESTAMP", [at] * len(results)), "seconds": ("DOUBLE", [r.seconds for r in results])}
    if results:
        conn.execute("BEGIN")
        try:
            insert_columns(conn, DOCUMENTS, columns)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    append_ledger(conn, [_ledger_row(r) for r in results], run_id)
    return pl.DataFrame({k: v for k, (_, v) in columns.items() if k in VALUE_SCHEMA}, schema=VALUE_SCHEMA)


def _ledger_row(r: DocumentResult) -> LedgerRow:
    outcome = {"failed": "failed", "unchanged": "unchanged"}.get(r.outcome, "created")
    table, record_id = (GRAPH_FILES, r.item_id) if r.route == "sharepoint" else (TABLE, r.note_id)
    code = r.reason if r.outcome == "failed" else None
    return LedgerRow(NAME, table, r.source_id, record_id, r.sha256 if outcome != "failed" else None, {}, outcome,
                     r.status, code)


# -- inputs --------------------------------------------------------------------------------------------------------
def document_inputs(staged: pl.DataFrame, manifest: pl.DataFrame, builder: PayloadBuilder) -> list[DocumentInput]:
    """Staged rows (note columns, already owner-resolved) joined to the raw manifest's size and SHA-256."""
    if staged.is_empty():
        return []
    facts = {str(r["id"]): r for r in manifest.iter_rows(named=True)}
    out = []
    for row in staged.iter_rows(named=True):
        sid = str(row["_source_id"])
        fact = facts.get(sid, {})
        body = builder.body(row)
        create_only = {k: body.pop(k) for k in CREATE_ONLY_COLUMNS if k in body}
        out.append(DocumentInput(sid, row.get("objectid_contact"), fact.get("file_name"), fact.get("mime_type"),
                                 int(fact.get("size_bytes") or 0), fact.get("sha256"), body, create_only))
    return out


def _manifest(conn: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    if not _table_exists(conn, "raw", NAME):
        return pl.DataFrame(schema={"id": pl.String})
    return conn.sql(f"SELECT CAST(id AS VARCHAR) AS id, file_name, mime_type, size_bytes, sha256 "
                    f"FROM ({latest_sql('raw.document')})").pl()


# -- metadata and checks -------------------------------------------------------------------------------------------
def summary(results: list[DocumentResult], seconds: float) -> dict:
    counts = Counter(r.outcome for r in results)
    reasons = Counter(part for r in results if r.reason for part in r.reason.split(";"))
    sent = [r for r in results if r.outcome in ("note", "note_blocks", "sharepoint")]
    sent_bytes = sum(r.size for r in sent)
    by_route = {route: sum(r.size for r in sent if r.outcome == route) for route in ("note", "note_blocks",
                                                                                      "sharepoint")}
    # Per route: bytes over the summed time of its documents (one stream's rate; the asset runs several).
    stream = {route: round(by_route[route] / 1e6 / t, 3) for route in by_route
              if (t := sum(r.seconds for r in sent if r.outcome == route)) > 0}
    return {"documents": len(results), **{o: counts.get(o, 0) for o in OUTCOMES},
            "reasons": MetadataValue.json(dict(sorted(reasons.items()))),
            "bytes_sent": sent_bytes, "bytes_per_route": MetadataValue.json(by_route),
            "mb_per_s": round(sent_bytes / 1e6 / seconds, 3) if seconds > 0 else 0.0,
            "mb_per_s_per_stream": MetadataValue.json(stream),
            "failed_ids": MetadataValue.json([r.source_id for r in results if r.outcome == "failed"][:FAILED_IDS_SHOWN])}


def checks(results: list[DocumentResult], staged_ids: list[str]) -> list[AssetCheckResult]:
    unverified = [r.source_id for r in results if r.verified is False]
    missing = sorted(set(staged_ids) - {r.source_id for r in results})
    return [
        AssetCheckResult(asset_key=DOCUMENT_KEY, check_name=VERIFIED, passed=not unverified,
                         severity=AssetCheckSeverity.ERROR,
                         metadata={"verified": sum(1 for r in results if r.verified),
                                   "mismatched_ids": MetadataValue.json(unverified[:FAILED_IDS_SHOWN])},
                         description="every uploaded body read back equal to the source in size and SHA-256"
                         if not unverified else f"{len(unverified)} read back different: {', '.join(unverified[:10])}"),
        AssetCheckResult(asset_key=DOCUMENT_KEY, check_name=ACCOUNTED, passed=not missing,
                         severity=AssetCheckSeverity.ERROR,
                         metadata={"staged": len(staged_ids), "outcomes": len(results),
                                   "missing_ids": MetadataValue.json(missing[:FAILED_IDS_SHOWN])},
                         description="one outcome (note, note_blocks, sharepoint, unchanged or failed with a "
                                     "reason) per staged document")]


# -- the asset -----------------------------------------------------------------------------------------------------
def build_document_asset() -> AssetsDefinition:
    parents = writer_parents(NAME)

    @asset(key=DOCUMENT_KEY, group_name="dataverse", io_manager_key="duckdb_io_manager",
           kinds={"dataverse", "sharepoint", "duckdb"}, tags={"layer": "dataverse"},
           deps=[AssetKey(["staging", NAME]), *(writer_key(p) for p in parents), SCHEMA_KEY, OWNERS_KEY],
           check_specs=[gate_check_spec(DOCUMENT_KEY),
                        AssetCheckSpec(VERIFIED, asset=DOCUMENT_KEY, blocking=True,
                                       description="size and SHA-256 of every body read back equal the source's"),
                        AssetCheckSpec(ACCOUNTED, asset=DOCUMENT_KEY, blocking=True,
                                       description="one outcome row per staged document")],
           description=f"{get(NAME).description} Bodies as notes (block upload above 4 MB) up to the environment's "
                       "maxuploadfilesize, larger files and imaging in SharePoint; every body read back and hashed; "
                       "value: one outcome row per document.")
    def _documents(context: AssetExecutionContext, store: DuckDBResource, mapping: MappingResource,
                   dataverse: DataverseResource, audit: AuditStore, sensei: SenseiSource) -> Iterator:
        yield enforce_gate(mapping.path, DOCUMENT_KEY)
        fmap = _map(mapping)
        with store.get_connection() as conn:
            staged, owners, _ = _read_inputs(conn, NAME)
            manifest, previous = _manifest(conn), previous_documents(conn)
            failed_before = failed_documents(conn)
        # Delta pickup, as the generic writers do it: documents outside the window are neither fetched nor compared.
        staged, window_meta = in_run_window(context, staged, failed_before)
        results: list[DocumentResult] = []
        setup_error, drive, started = None, None, time.monotonic()
        if not staged.is_empty():
            if sensei.mode != "api":
                raise Failure(description="document bodies come from the Sensei API: a CSV export has no file "
                                          "content (set SENSEIMIG_SOURCE=api)")
            catalog = TargetCatalog(dataverse.plan())
            frame = resolve_users(staged, [TABLE], catalog, owners)
            client, source, drive = dataverse.client(), sensei.client(), graph_from_env().drive()
            try:
                sets = entity_sets(dataverse.metadata(client), tables_of(fmap, written_objects(fmap)))
                builder = PayloadBuilder(TABLE, frame.columns, catalog, sets)
                with audit.connect() as audit_conn:
                    loader = DocumentLoader(client, sensei_content(source), AuditLog(audit_conn), context.run_id,
                                            DOCUMENT_KEY.to_user_string(), drive=drive, previous=previous)
                    results = loader.load(document_inputs(frame, manifest, builder))
                    setup_error = loader.setup_error
            finally:
                for closable in (client, source, drive):
                    if closable is not None:
                        closable.close()
        seconds = time.monotonic() - started
        with store.get_connection() as conn:
            value = record(conn, results, context.run_id)
        meta = summary(results, seconds) | window_meta
        context.log.info("dataverse/document: " + ", ".join(f"{o} {meta[o]}" for o in OUTCOMES)
                         + f", {meta['mb_per_s']} MB/s")
        if setup_error and drive is not None:  # Graph is configured, Dynamics' SharePoint integration is not
            raise Failure(description=setup_error, metadata=meta)
        if setup_error:
            context.log.warning(f"{meta['failed']} document(s) failed; those that need SharePoint: {setup_error}")
        yield Output(value, metadata=meta)
        yield from checks(results, [str(s) for s in staged.get_column("_source_id")] if not staged.is_empty()
                          else [])

    return _documents


__all__ = ["DOCUMENTS", "DOCUMENT_KEY", "build_document_asset", "checks", "document_inputs", "previous_documents",
           "record", "summary"]
