"""Note attachments of the emulator (Microsoft's "Use file data with Attachment and Note records").

- ``annotation.documentbody`` is limited by the organization's ``maxuploadfilesize``, read from the store on every
  write and measured on the base64 length: larger gives 400 ``0x80044a02`` (on create, update and block commit).
- Block upload: ``POST /InitializeAnnotationBlocksUpload`` {Target} -> {FileContinuationToken};
  ``POST /UploadBlock`` {BlockId, BlockData, FileContinuationToken} -> 204 (blocks <= 4 MB, BlockIds base64 of
  <= 64 bytes and of equal length within a file); ``POST /CommitAnnotationBlocksUpload`` {Target, BlockList,
  FileContinuationToken} -> {AnnotationId, FileSizeInBytes} (L/webapi/reference/commitannotationblocksuploadresponse).
- Download: ``GET /annotations(<id>)/documentbody/$value`` (the base64 text), or
  ``POST /InitializeAnnotationBlocksDownload`` {Target} then ``POST /DownloadBlock`` {Offset, BlockLength,
  FileContinuationToken} -> {Data}.

Upload sessions live in memory (a restart forgets them, like an expired token). File columns (single and chunked
PATCH, ``$value`` download) are in ``file_columns.py``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from senseimig_dagster.sandbox.dataverse_emulator import errors, odata
from senseimig_dagster.sandbox.dataverse_emulator.errors import DataverseError
from senseimig_dagster.sandbox.dataverse_emulator.metadata import Table

if TYPE_CHECKING:
    from senseimig_dagster.sandbox.dataverse_emulator.app import DataverseEmulator, Response
    from senseimig_dagster.sandbox.dataverse_emulator.store import RecordStore

BASE_PATH = "/api/data/v9.2"
JSON_TYPE = "application/json; odata.metadata=minimal"
TYPE_PREFIX = "Microsoft.Dynamics.CRM."
ATTACHMENT_TOO_BIG = "0x80044a02"  # unManagedidsattachmentinvalidfilesize [doc]
DEFAULT_MAX_UPLOAD_FILE_SIZE = 5_242_880  # organization.maxuploadfilesize default [doc]
MAX_BLOCK_BYTES = 4 * 1024 * 1024  # blocks are at most 4 MB [doc]
MAX_BLOCK_ID_BYTES = 64
_DOWNLOAD = re.compile(rf"^{re.escape(BASE_PATH)}/annotations\((?P<id>[0-9A-Fa-f-]{{36}})\)/documentbody/\$value$")
_ACTIONS = ("InitializeAnnotationBlocksUpload", "UploadBlock", "CommitAnnotationBlocksUpload",
            "InitializeAnnotationBlocksDownload", "DownloadBlock")


# -- the size rule, applied by the store on every annotation write ------------------------------------------------
def max_upload_file_size(store: RecordStore) -> int:
    """The organization record's ``maxuploadfilesize``; the documented default only when no organization exists
    (a store that was never seeded)."""
    orgs = store.query("organization", limit=1)
    value = orgs[0].values.get("maxuploadfilesize") if orgs else None
    return DEFAULT_MAX_UPLOAD_FILE_SIZE if value is None else int(value)


def check_document_size(store: RecordStore, table: Table, changes: dict[str, Any]) -> dict[str, Any]:
    """``changes`` with the platform's ``filesize`` set; 400 ``0x80044a02`` when ``documentbody`` is too long."""
    body = changes.get("documentbody")
    if table.logical_name != "annotation" or not isinstance(body, str):
        return changes
    if len(body) > max_upload_file_size(store):
        # Documented: measured on the base64 length, with this message.
        raise DataverseError(400, ATTACHMENT_TOO_BIG, "Attachment file size is too big.")
    return {**changes, "filesize": _decoded_length(body)}


def _decoded_length(text: str) -> int:
    return len(text) * 3 // 4 - text[-2:].count("=") if text else 0


# -- block upload and download sessions ----------------------------------------------------------------------------
@dataclass
class _Upload:
    target: dict[str, Any]
    blocks: dict[str, bytes] = field(default_factory=dict)


@dataclass
class _Sessions:
    lock: threading.Lock = field(default_factory=threading.Lock)
    uploads: dict[str, _Upload] = field(default_factory=dict)
    downloads: dict[str, bytes] = field(default_factory=dict)


_SESSIONS: weakref.WeakKeyDictionary[Any, _Sessions] = weakref.WeakKeyDictionary()
_SESSIONS_LOCK = threading.Lock()


def _sessions(app: DataverseEmulator) -> _Sessions:
    with _SESSIONS_LOCK:
        return _SESSIONS.setdefault(app, _Sessions())


def route(app: DataverseEmulator, environ: dict) -> Response | None:
    """The response when the request is a note upload/download action or a ``documentbody/$value`` read."""
    path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
    download = _DOWNLOAD.match(path)
    if download is not None:
        if method != "GET":
            raise DataverseError(405, errors.INVALID_ARGUMENT, f"The HTTP method '{method}' is not allowed here.")
        return _document_value(app, download["id"].lower())
    name = path[len(BASE_PATH) + 1:] if path.startswith(BASE_PATH + "/") else ""
    if name not in _ACTIONS:
        return None
    if method != "POST":
        raise DataverseError(405, errors.INVALID_ARGUMENT, f"The HTTP method '{method}' is not allowed here.")
    body = odata.read_json(environ)
    handler = {"InitializeAnnotationBlocksUpload": _initialize_upload, "UploadBlock": _upload_block,
               "CommitAnnotationBlocksUpload": _commit_upload,
               "InitializeAnnotationBlocksDownload": _initialize_download, "DownloadBlock": _download_block}[name]
    return handler(app, environ, body)


def _initialize_upload(app: DataverseEmulator, environ: dict, body: dict[str, Any]) -> Response:
    target = _target(body)
    token = secrets.token_urlsafe(24)
    sessions = _sessions(app)
    with sessions.lock:
        sessions.uploads[token] = _Upload(target)
    return _json(app, environ, "InitializeAnnotationBlocksUploadResponse", {"FileContinuationToken": token})


def _upload_block(app: DataverseEmulator, environ: dict, body: dict[str, Any]) -> Response:
    sessions = _sessions(app)
    block_id, data = body.get("BlockId"), body.get("BlockData")
    raw_id = _base64(block_id, "BlockId")
    if not raw_id or len(raw_id) > MAX_BLOCK_ID_BYTES:
        raise odata.bad_request(f"BlockId must be base64 of 1 to {MAX_BLOCK_ID_BYTES} bytes.")  # text unverified
    block = _base64(data, "BlockData")
    if len(block) > MAX_BLOCK_BYTES:
        raise odata.bad_request(f"BlockData exceeds the maximum block size of {MAX_BLOCK_BYTES} bytes.")  # unverified
    with sessions.lock:
        upload = _upload_session(sessions, body)
        if any(len(other) != len(block_id) for other in upload.blocks):
            # Documented: all BlockIds of a file have equal length; code and text unverified.
            raise odata.bad_request("All BlockIds of a file must have the same length.")
        upload.blocks[block_id] = block
    return 204, [], b""


def _commit_upload(app: DataverseEmulator, environ: dict, body: dict[str, Any]) -> Response:
    sessions = _sessions(app)
    block_list = body.get("BlockList")
    if not isinstance(block_list, list) or not block_list:
        raise odata.bad_request("BlockList must be a non-empty array of BlockIds.")  # unverified
    with sessions.lock:
        upload = _upload_session(sessions, body)
        missing = [b for b in block_list if b not in upload.blocks]
        content = b"".join(upload.blocks[b] for b in block_list) if not missing else b""
    if missing:
        raise odata.bad_request(f"BlockList names {len(missing)} block(s) that were not uploaded.")  # unverified
    target = {**upload.target, **_target(body)}  # the commit's Target carries the note's columns
    annotation_id = target.pop("annotationid", None)
    values = {**target, "documentbody": base64.b64encode(content).decode("ascii")}
    if annotation_id is None:
        record = app.store.create("annotation", values)  # size rule and validation on the store's write path
    else:
        record, _ = app.store.upsert("annotation", values, id=str(annotation_id).lower())
    with sessions.lock:
        sessions.uploads.pop(body["FileContinuationToken"], None)
    return _json(app, environ, "CommitAnnotationBlocksUploadResponse",
                 {"AnnotationId": record.id, "FileSizeInBytes": len(content)})


def _initialize_download(app: DataverseEmulator, environ: dict, body: dict[str, Any]) -> Response:
    target = _target(body)
    record = _annotation(app, str(target.get("annotationid") or ""))
    content = base64.b64decode(record.values.get("documentbody") or "")
    token = secrets.token_urlsafe(24)
    sessions = _sessions(app)
    with sessions.lock:
        sessions.downloads[token] = content
    return _json(app, environ, "InitializeAnnotationBlocksDownloadResponse",
                 {"FileContinuationToken": token, "FileSizeInBytes": len(content),
                  "FileName": record.values.get("filename")})


def _download_block(app: DataverseEmulator, environ: dict, body: dict[str, Any]) -> Response:
    offset, length = body.get("Offset"), body.get("BlockLength")
    if not isinstance(offset, int) or not isinstance(length, int) or offset < 0 or not 0 < length <= MAX_BLOCK_BYTES:
        raise odata.bad_request("Offset and BlockLength must be integers within the file.")  # unverified
    sessions = _sessions(app)
    with sessions.lock:
        token = body.get("FileContinuationToken")
        content = sessions.downloads.get(token) if isinstance(token, str) else None
    if content is None:
        raise _bad_token()
    data = base64.b64encode(content[offset:offset + length]).decode("ascii")
    return _json(app, environ, "DownloadBlockResponse", {"Data": data})


def _document_value(app: DataverseEmulator, annotation_id: str) -> Response:
    body = _annotation(app, annotation_id).values.get("documentbody")
    if body is None:
        return 204, [], b""  # OData: $value of a null property
    # The base64 text itself, as L/attachment-annotation-files shows for this URL [memory].
    return 200, [("Content-Type", "text/plain")], body.encode("ascii")


# -- helpers -------------------------------------------------------------------------------------------------------
def _target(body: dict[str, Any]) -> dict[str, Any]:
    """The ``Target`` entity without its ``@odata.type`` (which must name annotation)."""
    target = body.get("Target")
    expected = TYPE_PREFIX + "annotation"
    if not isinstance(target, dict) or target.get("@odata.type") != expected:
        raise odata.bad_request(f"Target must be an entity with '@odata.type' '{expected}'.")  # text unverified
    return {k: v for k, v in target.items() if k != "@odata.type"}


def _upload_session(sessions: _Sessions, body: dict[str, Any]) -> _Upload:
    token = body.get("FileContinuationToken")
    upload = sessions.uploads.get(token) if isinstance(token, str) else None
    if upload is None:
        raise _bad_token()
    return upload


def _bad_token() -> DataverseError:
    return odata.bad_request("The FileContinuationToken is not valid or has expired.")  # code and text unverified


def _annotation(app: DataverseEmulator, annotation_id: str):  # -> StoredRecord
    from senseimig_dagster.sandbox.dataverse_emulator.store import not_found  # store imports this module

    record = app.store.retrieve("annotation", annotation_id) if odata.is_guid(annotation_id.lower()) else None
    if record is None:
        raise not_found("annotation", annotation_id)
    return record


def _base64(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise odata.bad_request(f"{name} must be a base64 string.")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise odata.bad_request(f"{name} is not valid base64.") from None




def _json(app: DataverseEmulator, environ: dict, response_type: str, payload: dict[str, Any]) -> Response:
    body = {"@odata.context": f"{app._base(environ)}/$metadata#{TYPE_PREFIX}{response_type}", **payload}
    return 200, [("Content-Type", JSON_TYPE)], json.dumps(body).encode()
