"""``dataverse/<object>`` for an object with binary content (documents): every body into Dynamics, in place of the
generic writer.

The asset is a thin wrapper around :class:`~senseimig_dagster.load.document_writer.DocumentLoader` (routing, notes,
block upload, SharePoint, read-back: see that module). It

* yields the map's confirmation gate first, like every writer;
* builds each document's note columns from its staged row (owner and lookups as the generic writer binds them) and
  takes size and SHA-256 from the raw manifest (the map skips them);
* fetches bytes from the Sensei API (``sensei`` resource; a CSV export carries no file content);
* writes to SharePoint through Graph (the ``graph`` resource): without a SharePoint site, documents that need
  SharePoint fail with ``sharepoint_not_configured`` and a warning; with one, a Dynamics environment whose
  SharePoint integration is not set up fails the asset after every other document is recorded;
* keeps one row per document per run in the document journal (``load/document_journal.py``) and in the load
  journal. A document already uploaded with the same hash and note columns is not re-sent;
* checks ``documents_verified`` (every body read back equals the source in size and SHA-256) and
  ``documents_accounted`` (one outcome per staged document, and no failure but a fault of the source file: a
  document that failed for a system reason - authentication, configuration, a server error - fails it, with the
  reasons and counts). The generic counts/fields checks don't apply: a
  document may rightly be a SharePoint file or a named failure instead of a note.

Metadata: counts per outcome and per reason, bytes and MB/s; ids only, never file names.
"""
# No `from __future__ import annotations` here: Dagster reads the context and resource annotations at runtime.

import time
from collections import Counter
from collections.abc import Iterator

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

from senseimig_dagster.assets.gate import enforce_gate, gate_check_spec
from senseimig_dagster.assets.keys import OWNERS, SCHEMA, staging_key, writer_key
from senseimig_dagster.assets.metadata import IDS_SHOWN
from senseimig_dagster.assets.partitions import in_run_window
from senseimig_dagster.assets.release import release_rows
from senseimig_dagster.audit.log import AuditLog
from senseimig_dagster.load.document_journal import (
    NOTES_TABLE,
    OUTCOMES,
    SOURCE_FAULTS,
    failed_documents,
    previous_documents,
    record,
)
from senseimig_dagster.load.document_routes import sensei_content
from senseimig_dagster.load.document_writer import DocumentInput, DocumentLoader, DocumentResult
from senseimig_dagster.load.frames import CREATE_ONLY_COLUMNS, resolve_users
from senseimig_dagster.load.payload import PayloadBuilder
from senseimig_dagster.mapping.model import FieldMapFile
from senseimig_dagster.mapping.scope import writer_parents
from senseimig_dagster.objects import PRIMARY_KEY, get
from senseimig_dagster.resources import (
    AuditStore,
    DataverseResource,
    GraphResource,
    MappingResource,
    SenseiSource,
    StoreResource,
)
from senseimig_dagster.store import Store

VERIFIED, ACCOUNTED = "documents_verified", "documents_accounted"


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


def _manifest(db: Store, name: str) -> pl.DataFrame:
    manifest = db.raw(name, f"CAST({PRIMARY_KEY} AS VARCHAR) AS id, file_name, mime_type, size_bytes, sha256")
    return manifest if manifest is not None else pl.DataFrame(schema={"id": pl.String})


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
            "failed_ids": MetadataValue.json([r.source_id for r in results if r.outcome == "failed"][:IDS_SHOWN])}


def failure_reasons(results: list[DocumentResult]) -> tuple[Counter, Counter]:
    """Failed documents per reason, split: faults of the source file itself (missing at source, hash mismatch, zero
    bytes: ``SOURCE_FAULTS``), which the migration accounts for, and system failures (authentication,
    configuration, a server error after retries...), which it must not pass over."""
    source, system = Counter(), Counter()
    for r in results:
        if r.outcome == "failed":
            reason = r.reason or "unknown"
            (source if reason in SOURCE_FAULTS else system)[reason] += 1
    return source, system


def _counted(reasons: Counter) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items()))


def checks(key: AssetKey, results: list[DocumentResult], staged_ids: list[str]) -> list[AssetCheckResult]:
    unverified = [r.source_id for r in results if r.verified is False]
    missing = sorted(set(staged_ids) - {r.source_id for r in results})
    source_faults, system = failure_reasons(results)
    problems = ([f"{len(missing)} without an outcome"] if missing else []) + (
        [f"{sum(system.values())} failed for a system reason ({_counted(system)})"] if system else [])
    return [
        AssetCheckResult(asset_key=key, check_name=VERIFIED, passed=not unverified,
                         severity=AssetCheckSeverity.ERROR,
                         metadata={"verified": sum(1 for r in results if r.verified),
                                   "mismatched_ids": MetadataValue.json(unverified[:IDS_SHOWN])},
                         description="every uploaded body read back equal to the source in size and SHA-256"
                         if not unverified else f"{len(unverified)} read back different: {', '.join(unverified[:10])}"),
        AssetCheckResult(asset_key=key, check_name=ACCOUNTED, passed=not problems,
                         severity=AssetCheckSeverity.ERROR,
                         metadata={"staged": len(staged_ids), "outcomes": len(results),
                                   "missing_ids": MetadataValue.json(missing[:IDS_SHOWN]),
                                   "source_faults": MetadataValue.json(dict(sorted(source_faults.items()))),
                                   "system_failures": MetadataValue.json(dict(sorted(system.items()))),
                                   "system_failed_ids": MetadataValue.json(
                                       [r.source_id for r in results if r.outcome == "failed"
                                        and (r.reason or "unknown") not in SOURCE_FAULTS][:IDS_SHOWN])},
                         description="; ".join(problems) if problems else
                         "one outcome per staged document: note, note_blocks, sharepoint, unchanged, or a fault of "
                         "the source file (" + (_counted(source_faults) or "none") + ")")]


# -- the asset -----------------------------------------------------------------------------------------------------
def build_document_asset(name: str, fmap: FieldMapFile) -> AssetsDefinition:
    key = writer_key(name)
    parents = writer_parents(fmap, name)

    @asset(key=key, group_name="dataverse", io_manager_key="duckdb_io_manager",
           kinds={"dataverse", "sharepoint", "duckdb"},
           deps=[staging_key(name), *(writer_key(p) for p in parents), SCHEMA, OWNERS],
           check_specs=[gate_check_spec(key),
                        AssetCheckSpec(VERIFIED, asset=key, blocking=True,
                                       description="size and SHA-256 of every body read back equal the source's"),
                        AssetCheckSpec(ACCOUNTED, asset=key, blocking=True,
                                       description="one outcome per staged document; failures only for faults "
                                                   "of the source file")],
           description=f"{get(name).description} Bodies as notes (block upload above 4 MB) up to the environment's "
                       "maxuploadfilesize, larger files and imaging in SharePoint; every body read back and hashed; "
                       "value: one outcome row per document.")
    def _documents(context: AssetExecutionContext, store: StoreResource, mapping: MappingResource,
                   dataverse: DataverseResource, graph: GraphResource, audit: AuditStore,
                   sensei: SenseiSource) -> Iterator:
        yield enforce_gate(mapping.path, key)
        fmap_now = mapping.load()
        with store.open() as db:
            staged, owners = db.staged(name), db.owner_map()
            manifest, previous = _manifest(db, name), previous_documents(db.conn, name)
            failed_before = failed_documents(db.conn)
            staged, release_meta = release_rows(context.run.tags, context.run_id, db, name, staged)
        # Delta pickup, as the generic writers do it: documents outside the window are neither fetched nor compared.
        staged, window_meta = in_run_window(context, staged, failed_before)
        window_meta |= release_meta
        results: list[DocumentResult] = []
        setup_error, drive_configured, started = None, False, time.monotonic()
        if not staged.is_empty():
            if sensei.mode != "api":
                raise Failure(description="document bodies come from the Sensei API: a CSV export has no file "
                                          "content (set SENSEIMIG_SOURCE=api)")
            with dataverse.session() as session, sensei.client() as source, graph.drive() as drive, \
                    audit.connect() as audit_conn:
                drive_configured = drive is not None
                frame = resolve_users(staged, [NOTES_TABLE], session.catalog, owners)
                builder = PayloadBuilder(NOTES_TABLE, frame.columns, session.catalog,
                                         session.entity_sets_of(fmap_now))
                loader = DocumentLoader(session.client, sensei_content(source, get(name)), AuditLog(audit_conn),
                                        context.run_id, key.to_user_string(), drive=drive, previous=previous,
                                        digest_key=store.digest_key())
                results = loader.load(document_inputs(frame, manifest, builder))
                setup_error = loader.setup_error
        seconds = time.monotonic() - started
        with store.open() as db:
            value = record(db.conn, name, results, context.run_id)
        meta = summary(results, seconds) | window_meta
        context.log.info(f"{key.to_user_string()}: " + ", ".join(f"{o} {meta[o]}" for o in OUTCOMES)
                         + f", {meta['mb_per_s']} MB/s")
        if setup_error and drive_configured:  # Graph is configured, Dynamics' SharePoint integration is not
            raise Failure(description=setup_error, metadata=meta)
        if setup_error:
            context.log.warning(f"{meta['failed']} document(s) failed; those that need SharePoint: {setup_error}")
        yield Output(value, metadata=meta)
        yield from checks(key, results, [str(s) for s in staged.get_column("_source_id")] if not staged.is_empty()
                          else [])

    return _documents
