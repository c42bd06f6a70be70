"""The document load: each document fetched from Sensei, checked, sent to its route (a note in one
request, a block-uploaded note, or a SharePoint file with its location record), read back and hashed, every write in
the audit log. Routing, names, the source checks and the note and location clients are in :mod:`.document_routes`.
Pure: no Dagster. Nothing logged or raised carries a file name, a patient name or bytes.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from senseimig_dagster.audit.log import AuditOutcome, before_image
from senseimig_dagster.audit.rollback import GRAPH_FILES, GRAPH_FOLDERS
from senseimig_dagster.dataverse.errors import DataverseError
from senseimig_dagster.load.document_routes import (
    ANNOTATIONS,
    LOCATIONS,
    UNNAMED,
    DocumentRejected,
    Drive,
    Library,
    Notes,
    Outcome,
    Route,
    SharePointLocations,
    SharePointNotConfigured,
    SourceFile,
    assign_file_names,
    digest_of,
    fetch_source,
    folder_name,
    max_upload_file_size,
    route,
)
from senseimig_dagster.load.frames import deterministic_id
from senseimig_dagster.load.read_back import read_back
from senseimig_dagster.privacy.encryption import keyed_digest

if TYPE_CHECKING:
    from senseimig_dagster.dataverse.client import DataverseClient

log = logging.getLogger("senseimig.load.documents")


GRAPH_SET = "drive"  # the audit log's entity set of Graph uploads (table GRAPH_FILES, audit/rollback.py)


@dataclass(frozen=True)
class DocumentInput:
    """One staged document: ``fields`` is the note's body without ``documentbody`` (lookups bound, owner set);
    ``create_only`` the columns valid on create only (``overriddencreatedon``)."""

    source_id: str
    patient_id: str | None
    file_name: str | None
    mime_type: str | None
    size: int
    sha256: str | None
    fields: Mapping[str, Any]
    create_only: Mapping[str, Any]


def meta_hash(fields: Mapping[str, Any], key: bytes | None = None) -> str:
    """The digest of a note's columns (subject, note text: PHI), keyed like the load journal's column digests."""
    return keyed_digest(json.dumps(sorted(fields.items()), default=str).encode(), key)[:32]


@dataclass(frozen=True)
class PreviousDocument:
    """What the last successful run stored for a document (``load.documents``)."""

    outcome: str
    sha256: str | None
    meta_hash: str | None
    stored_name: str | None
    note_id: str | None
    location_id: str | None
    item_id: str | None
    unkeyed: bool = False  # its meta_hash was made before the store had a key (plain SHA-256)


@dataclass
class DocumentResult:
    """One document's outcome: ``route`` where it went (``unchanged`` keeps the earlier route), ``reason`` the
    failure or rename reasons (``;``-joined), ``verified`` whether the read-back equals the source."""

    source_id: str
    outcome: Outcome
    route: str | None = None
    reason: str | None = None
    size: int = 0
    sha256: str | None = None
    meta_hash: str | None = None
    note_id: str | None = None
    location_id: str | None = None
    item_id: str | None = None
    stored_name: str | None = None
    verified: bool | None = None
    status: int | None = None
    seconds: float = 0.0  # fetch, write and read-back of this document (the benchmark's per-route MB/s)


class _SerialAudit:
    """The audit log for several worker threads: one DuckDB connection, one call at a time."""

    def __init__(self, audit: Any):
        self._audit, self._lock = audit, threading.Lock()

    def intend(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._audit.intend(*args, **kwargs)

    def record(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._audit.record(*args, **kwargs)


class DocumentLoader:
    """Loads documents, each audited: intent before, outcome after (with the record's ``versionnumber`` after our
    last write, rollback's "changed by a person" test). ``workers`` threads each take one patient's documents at a
    time (in source id order), so a contact's folder and location are made once, by one thread; a document costs a
    handful of round trips and Dataverse holds each for its execution time, so one at a time would leave the
    service idle. ``digest_key``: the HMAC key of :func:`meta_hash` (the stores' key's, as the writers')."""

    def __init__(self, client: DataverseClient, content: Callable[[str], Iterable[bytes]], audit: Any, run_id: str,
                 asset: str, *, drive: Drive | None = None, previous: Mapping[str, PreviousDocument] | None = None,
                 max_upload: int | None = None, workers: int = 8, digest_key: bytes | None = None):
        self.client, self.content, self.audit, self.run_id, self.asset = (client, content, _SerialAudit(audit),
                                                                          run_id, asset)
        self.digest_key = digest_key
        self.workers = max(1, workers)
        self.drive, self.previous = drive, dict(previous or {})
        self.max_upload = max_upload if max_upload is not None else max_upload_file_size(client)
        self.notes, self.locations = Notes(client), SharePointLocations(client)
        self._library: Library | None = None
        self.setup_error: str | None = None  # why SharePoint can't be used (documents routed there fail)
        self._contacts: dict[str, str] = {}

    # -- planning ----------------------------------------------------------------------------------------------
    def plan(self, docs: Sequence[DocumentInput]) -> dict[str, Route]:
        return {d.source_id: route(d.size, d.mime_type, self.max_upload) for d in docs if d.size > 0}

    def _resolve_contacts(self, patient_ids: Iterable[str]) -> None:
        wanted = sorted({p for p in patient_ids if p and p not in self._contacts})
        if wanted:
            found = read_back(self.client, "contacts", "contact", wanted, ["contactid"])
            self._contacts.update({sid: str(row["contactid"]) for sid, row in found.items()})

    def load(self, docs: Sequence[DocumentInput]) -> list[DocumentResult]:
        routes = self.plan(docs)
        shared = [d for d in docs if routes.get(d.source_id) == "sharepoint"]
        self._resolve_contacts(d.patient_id for d in shared if d.patient_id)
        names = assign_file_names([(d.source_id, self._contacts.get(d.patient_id or "", ""), d.file_name or "")
                                   for d in shared])
        per_patient: dict[str, list[DocumentInput]] = {}
        for doc in sorted(docs, key=lambda d: d.source_id):
            per_patient.setdefault(doc.patient_id or doc.source_id, []).append(doc)

        def patient(group: list[DocumentInput]) -> list[DocumentResult]:
            return [self._one(doc, routes.get(doc.source_id), names.get(doc.source_id)) for doc in group]

        if self.workers == 1:
            done = [patient(g) for g in per_patient.values()]
        else:
            with ThreadPoolExecutor(self.workers, thread_name_prefix="documents") as pool:
                done = list(pool.map(patient, per_patient.values()))
        return sorted((r for group in done for r in group), key=lambda r: r.source_id)

    # -- one document --------------------------------------------------------------------------------------------
    def _one(self, doc: DocumentInput, how: Route | None, name: tuple[str, list[str]] | None) -> DocumentResult:
        started = time.monotonic()
        result = self._transfer(doc, how, name)
        result.seconds = time.monotonic() - started
        return result

    def _transfer(self, doc: DocumentInput, how: Route | None, name: tuple[str, list[str]] | None) -> DocumentResult:
        result = DocumentResult(doc.source_id, "failed", how, size=doc.size, sha256=doc.sha256,
                                meta_hash=meta_hash(doc.fields, self.digest_key))
        stored, renames = name if name else (None, [])
        result.stored_name = stored
        if how == "sharepoint" and self.drive is None:  # decided before fetching: a large file is not read for nothing
            self.setup_error = "documents need SharePoint but no Graph drive is configured (SHAREPOINT_SITE_URL)"
            result.reason = "sharepoint_not_configured"
            return result
        prev = self.previous.get(doc.source_id)
        if prev is not None and how is not None and prev.outcome in (how, "unchanged") \
                and prev.sha256 == doc.sha256 and prev.meta_hash == (meta_hash(doc.fields) if prev.unkeyed else result.meta_hash) \
                and prev.stored_name == stored:
            result.outcome, result.verified = "unchanged", True
            result.note_id, result.location_id, result.item_id = prev.note_id, prev.location_id, prev.item_id
            result.reason = ";".join(renames) or None
            return result
        try:
            source = fetch_source(self.content, doc.source_id, doc.size, doc.sha256)
        except DocumentRejected as rejected:
            result.reason = rejected.reason
            return result
        with source:
            try:
                if how == "sharepoint":
                    self._to_sharepoint(doc, source, stored or UNNAMED, result)
                else:
                    self._to_note(doc, source, how or "note", result)
            except SharePointNotConfigured as e:  # a setup problem, not the document's: the asset fails on it
                self.setup_error = str(e)
                result.reason = "sharepoint_not_configured"
                return result
            except DataverseError as e:
                result.outcome, result.reason, result.status = "failed", e.code or f"http_{e.status}", e.status
                return result
            except Exception as e:  # a Graph error: its type and status, never its text
                status = getattr(e, "status", None)
                result.outcome, result.status = "failed", status if isinstance(status, int) else None
                result.reason = getattr(e, "code", None) or type(e).__name__
                return result
        if result.outcome != "failed" and renames:
            result.reason = ";".join(renames)
        return result

    def _to_note(self, doc: DocumentInput, source: SourceFile, how: Route, result: DocumentResult) -> None:
        note_id = deterministic_id("annotation", doc.source_id)
        current = self.notes.current(note_id)
        create = current is None
        if create:
            batch = self.audit.intend(self.run_id, self.asset, "annotation", ANNOTATIONS, [(doc.source_id, "create")])
        else:  # the before-image holds the metadata columns; the old body is not kept (it may be 128 MB)
            before = self.client.retrieve(ANNOTATIONS, note_id, [c for c in doc.fields if "@" not in c])
            image = before_image(before, {k: v for k, v in doc.fields.items() if "@" not in k})
            batch = self.audit.intend(self.run_id, self.asset, "annotation", ANNOTATIONS,
                                      [(doc.source_id, "update", note_id, image)])
        op = "create" if create else "update"
        try:
            self.notes.write(note_id, {**doc.fields, **(doc.create_only if create else {})}, source, how, create=create)
        except DataverseError as e:
            self.audit.record(batch, [AuditOutcome(doc.source_id, note_id, op, "failed", error_code=e.code)])
            raise
        version = (self.notes.current(note_id) or {}).get("versionnumber")
        self.audit.record(batch, [AuditOutcome(doc.source_id, note_id, op, "ok",
                                               after_version=None if version is None else str(version))])
        size, sha = self.notes.read_back(note_id, how)
        result.outcome, result.note_id = how, note_id
        result.verified = (size, sha) == (source.size, source.sha256)

    def _to_sharepoint(self, doc: DocumentInput, source: SourceFile, stored: str, result: DocumentResult) -> None:
        assert self.drive is not None  # checked in _one
        if self._library is None:
            self._library = self.locations.library(self.drive.library_url)
        contact_id = self._contacts.get(doc.patient_id or "")
        if contact_id is None:
            raise DataverseError(404, "contact_not_loaded", None, "contacts", "document location")
        folder = folder_name(contact_id)
        location = self.locations.existing(self._library, contact_id, folder)
        if location is None:
            batch = self.audit.intend(self.run_id, self.asset, "sharepointdocumentlocation", LOCATIONS,
                                      [(doc.patient_id, "create")])
            try:
                location_id = self.locations.create(self._library, contact_id, folder)
            except DataverseError as e:
                self.audit.record(batch, [AuditOutcome(doc.patient_id, None, "create", "failed", error_code=e.code)])
                raise
            version = self.client.retrieve(LOCATIONS, location_id, ["versionnumber"]).get("versionnumber")
            self.audit.record(batch, [AuditOutcome(doc.patient_id, location_id, "create", "ok",
                                                   after_version=None if version is None else str(version))])
        else:
            location_id = str(location["sharepointdocumentlocationid"])
        folder_id, created = self.drive.make_folder(folder)
        if created:  # audited so that rollback removes the folder too (when still empty)
            made = self.audit.intend(self.run_id, self.asset, GRAPH_FOLDERS, GRAPH_SET, [(doc.patient_id, "create")])
            self.audit.record(made, [AuditOutcome(doc.patient_id, folder_id, "create", "ok")])
        batch = self.audit.intend(self.run_id, self.asset, GRAPH_FILES, GRAPH_SET, [(doc.source_id, "create")])
        try:
            item = self.drive.upload(folder, stored, source.read, source.size)
        except Exception as e:
            self.audit.record(batch, [AuditOutcome(doc.source_id, None, "create", "failed",
                                                   error_code=getattr(e, "code", None) or type(e).__name__)])
            raise
        self.audit.record(batch, [AuditOutcome(doc.source_id, item.id, "create", "ok")])
        size, sha = digest_of(self.drive.download(item.id))
        result.outcome, result.location_id, result.item_id = "sharepoint", location_id, item.id
        result.verified = (size, sha) == (source.size, source.sha256)


__all__ = ["GRAPH_SET", "DocumentInput", "DocumentLoader", "DocumentResult", "PreviousDocument"]
