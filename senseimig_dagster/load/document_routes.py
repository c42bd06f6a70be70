"""Document bodies into Dynamics: notes (annotations) or SharePoint, each read back and checked. Pure: no Dagster. The load itself
(fetch, route, write, read back, audit) is :mod:`.document_writer`.

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
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from senseimig_dagster.audit.rollback import GRAPH_FILES
from senseimig_dagster.dataverse.client import record_segment
from senseimig_dagster.dataverse.errors import DataverseError, DataverseNotFound
from senseimig_dagster.graph.names import valid_sharepoint_name
from senseimig_dagster.objects import SenseiObject
from senseimig_dagster.privacy.spill import EncryptedSpool
from senseimig_dagster.sensei.errors import SenseiPageError

if TYPE_CHECKING:
    from senseimig_dagster.dataverse.client import DataverseClient

log = logging.getLogger("senseimig.load.documents")

NOTE_SINGLE_MAX = 4 * 1024 * 1024  # base64 characters: a bigger documentbody goes in blocks (UploadBlock)
BLOCK_BYTES = 4 * 1024 * 1024  # raw bytes per UploadBlock / DownloadBlock [doc: UploadBlock BlockData "up to 4MB"]
IMAGING_TYPES = frozenset({"application/dicom"})  # imaging exports go to SharePoint whatever their size
SPOOL_BYTES = 8 * 1024 * 1024
ANNOTATIONS, LOCATIONS, SITES = "annotations", "sharepointdocumentlocations", "sharepointsites"
ANNOTATION_TYPE = "Microsoft.Dynamics.CRM.annotation"
LOCATION_NAME = "Documents on Default Site"  # the record's name (required, 160); a label, never PHI
UNNAMED = "untitled"  # the stored name of a file that has none (or nothing SharePoint accepts)
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
    """``organization.maxuploadfilesize`` (bytes of base64), read from the environment."""
    rows = list(client.query("organizations", ["maxuploadfilesize"], page_size=1))
    value = rows[0].get("maxuploadfilesize") if rows else None
    if not isinstance(value, int) or value <= 0:
        raise DataverseError(200, None, None, "organizations", "read maxuploadfilesize",
                             cause="the organization record has no maxuploadfilesize")
    return value


# -- the source ----------------------------------------------------------------------------------------------------
class SourceFile:
    """A fetched document: its bytes in memory, or above ``SPOOL_BYTES`` in an encrypted temporary file
    (``privacy/spill.py``), with the size and SHA-256 of what arrived."""

    def __init__(self, chunks: Iterable[bytes]):
        self._file = EncryptedSpool(SPOOL_BYTES)
        sha, size = hashlib.sha256(), 0
        for chunk in chunks:
            sha.update(chunk)
            size += len(chunk)
            self._file.write(chunk)
        self.size, self.sha256 = size, sha.hexdigest()

    def read(self, offset: int, length: int) -> bytes:
        return self._file.read(offset, length)

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


def sensei_content(client: Any, obj: SenseiObject) -> Callable[[str], Iterable[bytes]]:
    """``SenseiClient.content`` of ``obj``'s records with its 404 as :class:`SourceMissing` (it raises
    ``SenseiPageError`` whose cause starts with the status, ``HTTP 404``)."""

    def content(source_id: str) -> Iterator[bytes]:
        try:
            yield from client.content(obj, source_id)
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
    out = "".join("_" if c in FORBIDDEN_CHARACTERS or ord(c) < 32 else c for c in name).strip(" ").rstrip(". ")
    stem, dot, ext = out.rpartition(".")
    if not dot:
        stem, ext = out, ""
    out = re.sub("(?i)_vti_", "_vti-", out) or UNNAMED
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
        name = sanitise_file_name(original or UNNAMED)
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
    """Base64 BlockIds of equal length (UploadBlock: all IDs of a file have the same length, <= 64 bytes)."""
    return [base64.b64encode(f"block-{i:08d}".encode()).decode("ascii") for i in range(count)]


class Notes:
    """Annotation bodies through the Web API."""

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
        if how == "note":  # $value answers the base64 text (the format is [memory], unverified)
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
        """A location under the library's: ``relativeurl`` only (never with ``absoluteurl``: Dataverse refuses both)."""
        location_id = self.client.create(LOCATIONS, {
            "name": LOCATION_NAME, "relativeurl": folder,
            "parentsiteorlocation_sharepointdocumentlocation@odata.bind": f"/{LOCATIONS}({library.location_id})",
            "regardingobjectid_contact@odata.bind": f"/contacts({contact_id})"})  # [memory: needs doc. mgmt on]
        self._by_contact[contact_id] = location_id
        return location_id


__all__ = ["BLOCK_BYTES", "DocumentRejected", "Drive", "FAILURE_REASONS", "GRAPH_FILES", "IMAGING_TYPES", "Library",
           "NOTE_SINGLE_MAX", "Notes", "RENAME_REASONS", "SharePointLocations", "SharePointNotConfigured",
           "SourceFile", "SourceMissing", "assign_file_names", "base64_length", "block_ids", "digest_of",
           "fetch_source", "folder_name", "max_upload_file_size", "route", "sanitise_file_name", "sensei_content"]
