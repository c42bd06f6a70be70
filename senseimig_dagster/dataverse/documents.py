"""Document bodies into Dynamics: notes (annotations) or SharePoint, each read back and checked. Pure: no Dagster.

Routing, per document (:func:`route`), from the manifest's size and MIME type and the environment's own limit:

* size 0 -> failed ``zero_byte_file``. A zero-byte file in Sensei is an upload that failed at the practice: an
  empty note would look like a document that is there, so it is reported for a person to re-scan instead.
* base64 length <= ``organization.maxuploadfilesize`` (read once per run, :func:`max_upload_file_size`; never
  assumed to be 5 MB) -> a note: ``documentbody`` in the create itself when the base64 body is <= 4 MiB
  (``note``), else the note created without a body and the bytes sent with ``InitializeAnnotationBlocksUpload`` /
  ``UploadBlock`` (blocks <= 4 MiB [doc: UploadBlock "BlockData ... up to 4MB"], BlockIds base64 of equal length) /
  ``CommitAnnotationBlocksUpload`` with the note's id in ``Target`` (``note_blocks``).
* larger, or imaging exports (``application/dicom``) -> ``sharepoint``: the file in the patient's folder of the
  document library integrated with contact, through Microsoft Graph, and a ``sharepointdocumentlocation`` that
  points the contact at that folder (:class:`SharePointLocations`).

Source checks (:func:`fetch_source`): a 404 for the content is ``missing_at_source``; bytes whose count or SHA-256
differ from the manifest's are ``source_hash_mismatch``. Bytes are spooled to a temporary file (memory holds at most
:data:`SPOOL_BYTES`), so a 100 MB scan streams.

Folder names: Dynamics names a contact's folder ``<fullname>_<CONTACTID without dashes, upper case>``. The full name
is PHI and would end up in URLs, SharePoint's logs and our audit log, so the migration uses the id part alone
(:func:`folder_name`); Dynamics follows the location record, not the name, so its document grid still finds it.
File names SharePoint forbids are sanitised (:func:`sanitise_file_name`, reason ``renamed_forbidden_characters``);
repeated names in one folder get `` (2)``, `` (3)``... by source id order, stable across runs
(:func:`assign_file_names`, ``renamed_duplicate``).

Verification: each uploaded body is read back (``documentbody/$value`` for single-request notes, block download for
block-uploaded ones, a Graph download for SharePoint) and its size and SHA-256 compared with the source's.

Nothing logged or raised carries a file name, a patient name or bytes: source ids, routes, reasons, sizes only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from senseimig_dagster.audit.rollback import GRAPH_FILES, GRAPH_FOLDERS
from senseimig_dagster.dataverse.client import record_segment
from senseimig_dagster.dataverse.errors import DataverseError, DataverseNotFound

if TYPE_CHECKING:
    from senseimig_dagster.dataverse.client import DataverseClient

log = logging.getLogger("senseimig.dataverse.documents")

NOTE_SINGLE_MAX = 4 * 1024 * 1024  # base64 characters: a bigger documentbody goes in blocks (reference §8)
BLOCK_BYTES = 4 * 1024 * 1024  # raw bytes per UploadBlock / DownloadBlock [doc: UploadBlock BlockData "up to 4MB"]
IMAGING_TYPES = frozenset({"application/dicom"})  # imaging exports go to SharePoint whatever their size
SPOOL_BYTES = 8 * 1024 * 1024
ANNOTATIONS, LOCATIONS, SITES = "annotations", "sharepointdocumentlocations", "sharepointsites"
ANNOTATION_TYPE = "Microsoft.Dynamics.CRM.annotation"
LOCATION_NAME = "Documents on Default Site"  # the record's name (required, 160); a label, never PHI
LIBRARY = "contact"  # Dynamics names the library it integrates with contact by the table's logical name [memory]
# Characters SharePoint Online refuses in file names [doc: "Invalid file names and file types in OneDrive and
# SharePoint"; the graph stand-in enforces the same list]; control characters are refused too.
FORBIDDEN_CHARACTERS = frozenset('"*:<>?/\\|')
RESERVED_NAMES = frozenset({".lock", "con", "prn", "aux", "nul", "desktop.ini",
                            *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))})
MAX_NAME = 200  # characters; SharePoint's limit is 400 for the whole path [doc], leaving room for site + folder

Route = Literal["note", "note_blocks", "sharepoint"]
Outcome = Literal["note", "note_blocks", "sharepoint", "unchanged", "failed"]
FAILURE_REASONS = ("zero_byte_file", "missing_at_source", "source_hash_mismatch")
RENAME_REASONS = ("renamed_forbidden_characters", "renamed_duplicate")


class DocumentRejected(Exception):
    """The source file can't be migrated; ``reason`` is a quarantine reason code (no file name, no value)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}{': ' + detail if detail else ''}")
        self.reason = reason


class SharePointNotConfigured(RuntimeError):
    """Dynamics' SharePoint integration is not set up (no default site, or no location for the contact library)."""


# -- routing -------------------------------------------------------------------------------------------------------
def base64_length(size: int) -> int:
    return 4 * ((size + 2) // 3)


def route(size: int, mime_type: str | None, max_upload: int) -> Route:
    """Where a document of ``size`` bytes goes (zero bytes are refused before routing: :func:`fetch_source`)."""
    encoded = base64_length(size)
    if (mime_type or "").lower() in IMAGING_TYPES or encoded > max_upload:
        return "sharepoint"
    return "note" if encoded <= NOTE_SINGLE_MAX else "note_blocks"


def max_upload_file_size(client: DataverseClient) -> int:
    """``organization.maxuploadfilesize`` (bytes of base64, reference §8), read from the environment."""
    rows = list(client.query("organizations", ["maxuploadfilesize"], page_size=1))
    value = rows[0].get("maxuploadfilesize") if rows else None
    if not isinstance(value, int) or value <= 0:
        raise DataverseError(200, None, None, "organizations", "read maxuploadfilesize",
                             cause="the organization record has no maxuploadfilesize")
    return value


# -- the source ----------------------------------------------------------------------------------------------------
class SourceFile:
    """A fetched document: its bytes spooled to a temporary file, with the size and SHA-256 of what arrived."""

    def __init__(self, chunks: Iterable[bytes]):
        self._file = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - closed by close()
        sha, size = hashlib.sha256(), 0
        for chunk in chunks:
            sha.update(chunk)
            size += len(chunk)
            self._file.write(chunk)
        self.size, self.sha256 = size, sha.hexdigest()

    def read(self, offset: int, length: int) -> bytes:
        self._file.seek(offset)
        return self._file.read(length)

    def chunks(self, size: int = BLOCK_BYTES) -> Iterator[bytes]:
        for offset in range(0, self.size, size):
            yield self.read(offset, size)

    def base64(self) -> str:
        return base64.b64encode(self.read(0, self.size)).decode("ascii")

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> SourceFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SourceMissing(Exception):
    """The source answered 404 for the document's content."""


def fetch_source(content: Callable[[str], Iterable[bytes]], source_id: str, size: int, sha256: str | None
                 ) -> SourceFile:
    """The document's bytes, checked against the manifest; :class:`DocumentRejected` when it can't move."""
    if size == 0:
        raise DocumentRejected("zero_byte_file")
    try:
        fetched = SourceFile(content(source_id))
    except SourceMissing:
        raise DocumentRejected("missing_at_source") from None
    if fetched.size != size:
        fetched.close()
        raise DocumentRejected("source_hash_mismatch", f"size {fetched.size} of {size}")
    if sha256 and fetched.sha256 != sha256.lower():
        fetched.close()
        raise DocumentRejected("source_hash_mismatch", "sha256")
    return fetched


def sensei_content(client: Any) -> Callable[[str], Iterable[bytes]]:
    """``SenseiClient.document_content`` with its 404 as :class:`SourceMissing` (it raises ``SenseiPageError``
    whose cause starts with the status, ``HTTP 404``)."""
    from senseimig_dagster.sensei.errors import SenseiPageError

    def content(source_id: str) -> Iterator[bytes]:
        try:
            yield from client.document_content(source_id)
        except SenseiPageError as exc:
            if exc.cause.startswith("HTTP 404"):
                raise SourceMissing(source_id) from None
            raise

    return content


def digest_of(chunks: Iterable[bytes]) -> tuple[int, str]:
    sha, size = hashlib.sha256(), 0
    for chunk in chunks:
        sha.update(chunk)
        size += len(chunk)
    return size, sha.hexdigest()


# -- SharePoint names ----------------------------------------------------------------------------------------------
def folder_name(contact_id: str) -> str:
    """The contact's folder: its id without dashes, upper case (Dynamics' suffix, without the PHI full name)."""
    return contact_id.replace("-", "").upper()


def sanitise_file_name(name: str) -> str:
    """A name SharePoint accepts: forbidden and control characters as ``_``, no leading/trailing spaces or trailing
    dots, reserved names prefixed with ``_``, at most :data:`MAX_NAME` characters (extension kept)."""
    from senseimig_dagster.graph.names import valid_sharepoint_name  # the rules the Graph stand-in enforces

    out = "".join("_" if c in FORBIDDEN_CHARACTERS or ord(c) < 32 else c for c in name).strip(" ").rstrip(". ")
    stem, dot, ext = out.rpartition(".")
    if not dot:
        stem, ext = out, ""
    out = re.sub("(?i)_vti_", "_vti-", out) or "document"
    if len(out) > MAX_NAME:
        tail = f".{ext}" if dot and len(ext) < 16 else ""
        out = out[:MAX_NAME - len(tail)].rstrip(". ") + tail
    if stem.lower() in RESERVED_NAMES or valid_sharepoint_name(out) == "reserved_name":  # CON.pdf, ~$x, .lock
        out = "_" + out.lstrip("~$")
    return out


def _numbered(name: str, n: int) -> str:
    stem, dot, ext = name.rpartition(".")
    return f"{stem} ({n}).{ext}" if dot and stem else f"{name} ({n})"


def assign_file_names(docs: Sequence[tuple[str, str, str]]) -> dict[str, tuple[str, list[str]]]:
    """``(source_id, folder, file_name)`` -> source id: (stored name, rename reasons). Deterministic: within a
    folder, source ids in order claim names first; later repeats (case-insensitive, as SharePoint compares) get
    `` (2)``, `` (3)``..."""
    out: dict[str, tuple[str, list[str]]] = {}
    taken: dict[str, set[str]] = {}
    for source_id, folder, original in sorted(docs):
        reasons = []
        name = sanitise_file_name(original or "document")
        if name != original:
            reasons.append("renamed_forbidden_characters")
        used = taken.setdefault(folder, set())
        candidate, n = name, 1
        while candidate.lower() in used:
            n += 1
            candidate = _numbered(name, n)
        if n > 1:
            reasons.append("renamed_duplicate")
        used.add(candidate.lower())
        out[source_id] = (candidate, reasons)
    return out


# -- notes ---------------------------------------------------------------------------------------------------------
def block_ids(count: int) -> list[str]:
    """Base64 BlockIds of equal length (reference §8: all IDs of a file have the same length, <= 64 bytes)."""
    return [base64.b64encode(f"block-{i:08d}".encode()).decode("ascii") for i in range(count)]


class Notes:
    """Annotation bodies through the Web API (reference §8)."""

    def __init__(self, client: DataverseClient):
        self.client = client

    def _action(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        response = self.client._request("POST", name, ANNOTATIONS, name, json_body=body)
        return self.client._json_object(response, ANNOTATIONS, name) if response.content else {}

    def current(self, note_id: str) -> dict[str, Any] | None:
        try:
            return self.client.retrieve(ANNOTATIONS, note_id, ["annotationid", "versionnumber", "filesize"])
        except DataverseNotFound:
            return None

    def write(self, note_id: str, fields: Mapping[str, Any], source: SourceFile, how: Route, *, create: bool
              ) -> None:
        """Create (``fields`` may carry create-only columns) or update the note ``note_id`` with its body."""
        body = {**fields, "documentbody": source.base64()} if how == "note" else dict(fields)
        if create:
            self.client.create(ANNOTATIONS, {**body, "annotationid": note_id})
        else:
            self.client.update(ANNOTATIONS, note_id, body)
        if how == "note_blocks":
            self._upload_blocks(note_id, fields, source)

    def _upload_blocks(self, note_id: str, fields: Mapping[str, Any], source: SourceFile) -> None:
        target = {"@odata.type": ANNOTATION_TYPE, "annotationid": note_id}
        token = self._action("InitializeAnnotationBlocksUpload", {"Target": target})["FileContinuationToken"]
        ids = block_ids((source.size + BLOCK_BYTES - 1) // BLOCK_BYTES)
        for block_id, chunk in zip(ids, source.chunks(BLOCK_BYTES), strict=True):
            self._action("UploadBlock", {"BlockId": block_id, "BlockData": base64.b64encode(chunk).decode("ascii"),
                                         "FileContinuationToken": token})
        # The commit's Target names the note and repeats its file columns (the SDK sample sets them there too).
        commit_target = {**target, **{k: v for k, v in fields.items()
                                      if k in ("filename", "mimetype", "subject", "isdocument")}}
        answer = self._action("CommitAnnotationBlocksUpload", {"Target": commit_target, "BlockList": ids,
                                                               "FileContinuationToken": token})
        if answer.get("FileSizeInBytes") not in (None, source.size):
            raise DataverseError(200, None, None, ANNOTATIONS, "CommitAnnotationBlocksUpload",
                                 cause=f"committed {answer.get('FileSizeInBytes')} of {source.size} bytes")

    def read_back(self, note_id: str, how: Route) -> tuple[int, str]:
        """(size, SHA-256) of the note's stored body."""
        if how == "note":  # $value answers the base64 text (reference §8; the format is [memory], unverified)
            response = self.client._request("GET", f"{ANNOTATIONS}{record_segment(note_id)}/documentbody/$value",
                                            ANNOTATIONS, "download")
            return digest_of([base64.b64decode(response.content)])
        target = {"@odata.type": ANNOTATION_TYPE, "annotationid": note_id}
        start = self._action("InitializeAnnotationBlocksDownload", {"Target": target})
        token, total = start["FileContinuationToken"], int(start.get("FileSizeInBytes") or 0)

        def blocks() -> Iterator[bytes]:
            for offset in range(0, total, BLOCK_BYTES):
                data = self._action("DownloadBlock", {"Offset": offset, "BlockLength": min(BLOCK_BYTES, total - offset),
                                                      "FileContinuationToken": token})["Data"]
                yield base64.b64decode(data)

        return digest_of(blocks())


# -- SharePoint ----------------------------------------------------------------------------------------------------
class Drive(Protocol):
    """What the loader needs of ``senseimig_dagster.graph.drive.GraphDrive``."""

    @property
    def library_url(self) -> str: ...
    def make_folder(self, folder: str) -> tuple[str, bool]: ...  # item id, created by this call
    def upload(self, folder: str, name: str, content: Callable[[int, int], bytes], size: int) -> Any: ...
    def download(self, item_id: str) -> Iterator[bytes]: ...


_QUOTE = re.compile(r"'")


def _literal(value: str) -> str:
    return "'" + _QUOTE.sub("''", value) + "'"


@dataclass(frozen=True)
class Library:
    site_id: str
    site_url: str
    location_id: str  # the sharepointdocumentlocation of the contact library


class SharePointLocations:
    """The location records Dynamics' SharePoint integration uses: the default site and the contact library's
    location (found, never created: Dynamics' setup makes them), and one folder location per contact."""

    def __init__(self, client: DataverseClient):
        self.client = client
        self._by_contact: dict[str, str] = {}

    def library(self, drive_library_url: str | None = None) -> Library:
        sites = list(self.client.query(SITES, ["sharepointsiteid", "absoluteurl", "isdefault"]))
        site = next((s for s in sites if s.get("isdefault")), None)
        if site is None:
            raise SharePointNotConfigured(
                "no default sharepointsite: set up SharePoint document management in Dynamics first")
        site_id, site_url = str(site["sharepointsiteid"]), str(site.get("absoluteurl") or "").rstrip("/")
        locations = list(self.client.query(
            LOCATIONS, ["sharepointdocumentlocationid", "relativeurl"],
            filter=f"_parentsiteorlocation_value eq {site_id} and relativeurl eq {_literal(LIBRARY)}"))
        if not locations:
            raise SharePointNotConfigured(
                f"no document location for the '{LIBRARY}' library on the default site: enable document "
                "management for contact in Dynamics first")
        if drive_library_url is not None and site_url and \
                not drive_library_url.lower().startswith(site_url.lower() + "/"):
            raise SharePointNotConfigured("the Graph drive's library is not on Dynamics' default SharePoint site: "
                                          "check SHAREPOINT_SITE_URL")
        return Library(site_id, site_url, str(locations[0]["sharepointdocumentlocationid"]))

    def existing(self, library: Library, contact_id: str, folder: str) -> dict[str, Any] | None:
        if contact_id in self._by_contact:
            return {"sharepointdocumentlocationid": self._by_contact[contact_id]}
        rows = list(self.client.query(
            LOCATIONS, ["sharepointdocumentlocationid", "versionnumber"],
            filter=f"_regardingobjectid_value eq {contact_id} and _parentsiteorlocation_value eq "
                   f"{library.location_id} and relativeurl eq {_literal(folder)}"))
        if rows:
            self._by_contact[contact_id] = str(rows[0]["sharepointdocumentlocationid"])
        return rows[0] if rows else None

    def create(self, library: Library, contact_id: str, folder: str) -> str:
        """A location under the library's: ``relativeurl`` only (never with ``absoluteurl``: reference §8)."""
        location_id = self.client.create(LOCATIONS, {
            "name": LOCATION_NAME, "relativeurl": folder,
            "parentsiteorlocation_sharepointdocumentlocation@odata.bind": f"/{LOCATIONS}({library.location_id})",
            "regardingobjectid_contact@odata.bind": f"/contacts({contact_id})"})  # [memory: needs doc. mgmt on]
        self._by_contact[contact_id] = location_id
        return location_id



# -- the load ------------------------------------------------------------------------------------------------------
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

    @property
    def meta_hash(self) -> str:
        return hashlib.sha256(json.dumps(sorted(self.fields.items()), default=str).encode()).hexdigest()[:32]


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
    service idle."""

    def __init__(self, client: DataverseClient, content: Callable[[str], Iterable[bytes]], audit: Any, run_id: str,
                 asset: str, *, drive: Drive | None = None, previous: Mapping[str, PreviousDocument] | None = None,
                 max_upload: int | None = None, workers: int = 8):
        self.client, self.content, self.audit, self.run_id, self.asset = (client, content, _SerialAudit(audit),
                                                                          run_id, asset)
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
        from senseimig_dagster.dataverse.load import read_back

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
                                meta_hash=doc.meta_hash)
        stored, renames = name if name else (None, [])
        result.stored_name = stored
        if how == "sharepoint" and self.drive is None:  # decided before fetching: a large file is not read for nothing
            self.setup_error = "documents need SharePoint but no Graph drive is configured (SHAREPOINT_SITE_URL)"
            result.reason = "sharepoint_not_configured"
            return result
        prev = self.previous.get(doc.source_id)
        if prev is not None and how is not None and prev.outcome in (how, "unchanged") \
                and prev.sha256 == doc.sha256 and prev.meta_hash == doc.meta_hash and prev.stored_name == stored:
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
                    self._to_sharepoint(doc, source, stored or "document", result)
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
        from senseimig_dagster.audit.log import AuditOutcome, before_image
        from senseimig_dagster.dataverse.load import deterministic_id

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
        from senseimig_dagster.audit.log import AuditOutcome

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


__all__ = ["BLOCK_BYTES", "DocumentInput", "DocumentLoader", "DocumentRejected", "DocumentResult", "Drive",
           "GRAPH_FILES", "PreviousDocument", "FAILURE_REASONS", "IMAGING_TYPES", "Library",
           "NOTE_SINGLE_MAX", "Notes", "RENAME_REASONS", "SharePointLocations", "SharePointNotConfigured",
           "SourceFile", "SourceMissing", "assign_file_names", "base64_length", "block_ids", "digest_of",
           "fetch_source", "folder_name", "max_upload_file_size", "route", "sanitise_file_name", "sensei_content"]
