"""File columns of the emulator.

Wire facts from L/file-column-data ("Upload a file in a single request", "Upload the file in chunks", "Download a
file in a single request", "Download the file in chunks", "Send DELETE request to the file column") and
L/file-attributes:

- Single request (files under 128 MB): ``PATCH /<set>(<id>)/<col>`` with ``Content-Type: application/octet-stream``,
  ``x-ms-file-name`` and the bytes -> 204.
- Chunked: ``PATCH /<set>(<id>)/<col>?x-ms-file-name=<n>`` with ``x-ms-transfer-mode: chunked`` and no body ->
  **200** with ``Location: .../<set>(<id>)/<col>?sessiontoken=<t>``, ``x-ms-chunk-size: 4194304``,
  ``Accept-Ranges: bytes`` (the file name header, when sent, takes precedence over the query parameter). Then
  ``PATCH <Location>`` per chunk with ``Content-Range: bytes s-e/total``, ``x-ms-file-name`` and the bytes ->
  **206**, the last **204**.
- A file larger than the column's ``MaxSizeInKB``: ``0x80044a02`` unManagedidsattachmentinvalidfilesize,
  ``Attachment file size is too big.`` (L/file-column-data "Check maximum file size"; status 400 [doc]).
- ``GET /<set>(<id>)/<col>/$value`` -> 200 with ``x-ms-file-size``, ``x-ms-file-name``, ``mimetype``; with
  ``Range: bytes=s-e`` -> 206 and ``x-ms-chunk-size`` too. ``DELETE /<set>(<id>)/<col>`` -> 204.

Stricter than documented, so a client never relies on leniency (each flagged "unverified"): chunks must arrive in
order without gaps or overlaps, each must carry ``x-ms-file-name``, and its body must be exactly its range.
Upload sessions live in memory (a restart forgets them, like an expired session token).
"""

from __future__ import annotations

import mimetypes
import re
import secrets
import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from senseimig_dagster.sandbox.dataverse_emulator import errors, odata
from senseimig_dagster.sandbox.dataverse_emulator.errors import DataverseError
from senseimig_dagster.sandbox.dataverse_emulator.files import ATTACHMENT_TOO_BIG
from senseimig_dagster.sandbox.dataverse_emulator.metadata import Column, Table
from senseimig_dagster.sandbox.dataverse_emulator.store import not_found

if TYPE_CHECKING:
    from senseimig_dagster.sandbox.dataverse_emulator.app import DataverseEmulator, Response

BASE_PATH = "/api/data/v9.2"
CHUNK_SIZE = 4 * 1024 * 1024  # x-ms-chunk-size in the documented response: 4194304
SINGLE_REQUEST_MAX_BYTES = 128 * 1024 * 1024  # "If the size of the file is less than 128 MB" (single request)
_PATH = re.compile(rf"^{re.escape(BASE_PATH)}/(?P<set>[A-Za-z_][A-Za-z0-9_]*)\((?P<id>[0-9A-Fa-f-]{{36}})\)"
                   r"/(?P<col>[A-Za-z_][A-Za-z0-9_]*)(?P<value>/\$value)?$")
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)(?:/\d+)?$")  # L/file-attributes shows a "/total" suffix too


@dataclass
class _Upload:
    table: str
    record_id: str
    column: str
    name: str
    total: int | None = None
    received: bytearray = field(default_factory=bytearray)


_SESSIONS: weakref.WeakKeyDictionary[Any, dict[str, _Upload]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def route(app: DataverseEmulator, environ: dict) -> Response | None:
    """The response when the request addresses a File column of a record, else ``None``."""
    match = _PATH.match(environ.get("PATH_INFO", ""))
    if match is None:
        return None
    table = app.catalog.table_by_entity_set(match["set"])
    column = table.columns.get(match["col"]) if table is not None else None
    if table is None or column is None or column.type != "File":
        return None
    record_id, method = match["id"].lower(), environ.get("REQUEST_METHOD", "GET")
    if match["value"]:
        if method != "GET":
            raise _method_not_allowed(method)
        return _download(app, environ, table, record_id, column)
    query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}
    if method == "DELETE":
        _record(app, table, record_id)
        app.store.delete_file(table.logical_name, record_id, column.logical_name)
        return 204, [], b""
    if method != "PATCH":
        raise _method_not_allowed(method)
    if "sessiontoken" in query:
        return _upload_chunk(app, environ, table, record_id, column, query["sessiontoken"])
    name = environ.get("HTTP_X_MS_FILE_NAME") or query.get("x-ms-file-name")  # the header takes precedence
    if not name:
        raise odata.bad_request("The file name is missing: send the x-ms-file-name header or query parameter.")
    _record(app, table, record_id)
    if environ.get("HTTP_X_MS_TRANSFER_MODE", "").lower() == "chunked":
        return _start_chunked(app, environ, table, record_id, column, name)
    return _upload_single(app, environ, table, record_id, column, name)


def _start_chunked(app: DataverseEmulator, environ: dict, table: Table, record_id: str, column: Column,
                   name: str) -> Response:
    token = secrets.token_urlsafe(24)
    with _LOCK:
        _SESSIONS.setdefault(app, {})[token] = _Upload(table.logical_name, record_id, column.logical_name, name)
    location = f"{app._base(environ)}/{table.entity_set}({record_id})/{column.logical_name}?sessiontoken={token}"
    return 200, [("Location", location), ("Accept-Ranges", "bytes"), ("x-ms-chunk-size", str(CHUNK_SIZE)),
                 ("Access-Control-Expose-Headers", "x-ms-chunk-size")], b""


def _upload_chunk(app: DataverseEmulator, environ: dict, table: Table, record_id: str, column: Column,
                  token: str) -> Response:
    with _LOCK:
        upload = _SESSIONS.get(app, {}).get(token)
    if upload is None or (upload.table, upload.record_id, upload.column) != \
            (table.logical_name, record_id, column.logical_name):
        raise odata.bad_request("The sessiontoken is not valid for this file column or has expired.")  # unverified
    if not environ.get("HTTP_X_MS_FILE_NAME"):
        # L/file-column-data: each chunk request "must contain" x-ms-file-name. Code and text unverified.
        raise odata.bad_request("The x-ms-file-name header is required on every chunk.")
    match = _CONTENT_RANGE.match(environ.get("HTTP_CONTENT_RANGE", "").strip())
    if match is None:
        raise odata.bad_request("The Content-Range header must be 'bytes <start>-<end>/<size>'.")  # unverified
    start, end, total = (int(g) for g in match.groups())
    if upload.total is None and total > _max_bytes(column):
        _drop(app, token)
        raise _too_big()
    content = _body(environ)
    with _LOCK:  # check and append as one step: two chunks sent at once can't both land at the same offset
        expected = upload.total if upload.total is not None else total
        # A gap, an overlap, a changed total or a body that isn't its range: 400 (status documented for bad
        # requests; Dataverse's code and text for these are unverified).
        if total != expected or start != len(upload.received) or end < start or end >= total \
                or len(content) != end - start + 1:
            raise odata.bad_request(f"Content-Range 'bytes {start}-{end}/{total}' does not continue the upload at "
                                    f"byte {len(upload.received)} of {expected} with a body of {len(content)} bytes.")
        upload.total = total
        upload.received += content
        if end + 1 < total:
            return 206, [], b""
        _SESSIONS.get(app, {}).pop(token, None)
    app.store.put_file(table.logical_name, record_id, column.logical_name, upload.name, bytes(upload.received))
    return 204, [], b""


def _upload_single(app: DataverseEmulator, environ: dict, table: Table, record_id: str, column: Column,
                   name: str) -> Response:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length > _max_bytes(column):  # refused before reading: a body that can't be stored is never buffered
        raise _too_big()
    if length > SINGLE_REQUEST_MAX_BYTES:
        # Documented as the single-request ceiling; Dataverse's status and code for it are unverified.
        raise DataverseError(413, ATTACHMENT_TOO_BIG, "Attachment file size is too big.")
    app.store.put_file(table.logical_name, record_id, column.logical_name, name, _body(environ))
    return 204, [], b""


def _download(app: DataverseEmulator, environ: dict, table: Table, record_id: str, column: Column) -> Response:
    _record(app, table, record_id)
    stored = app.store.get_file(table.logical_name, record_id, column.logical_name)
    if stored is None:
        # Dataverse's answer for an empty file column is not documented: 404, code and text unverified.
        raise DataverseError(404, errors.INVALID_ARGUMENT,
                             f"No file attachment found for attribute '{column.logical_name}' of the "
                             f"'{table.logical_name}' record.")
    name, content = stored
    mime = mimetypes.guess_type(name)[0] or "application/octet-stream"  # [inference] from the file name
    headers = [("Content-Type", "application/octet-stream"), ("x-ms-file-size", str(len(content))),
               ("x-ms-file-name", name), ("mimetype", mime)]
    wanted = environ.get("HTTP_RANGE")
    if not wanted:
        return 200, [*headers, ("Access-Control-Expose-Headers", "x-ms-file-size; x-ms-file-name; mimetype")], \
            content
    match = _RANGE.match(wanted.strip())
    if match is None or int(match[1]) >= max(1, len(content)):
        raise odata.bad_request(f"The Range header '{wanted}' is not valid for this file.")  # unverified
    start = int(match[1])
    end = min(int(match[2]) if match[2] else len(content) - 1, len(content) - 1)
    return 206, [*headers, ("x-ms-chunk-size", str(CHUNK_SIZE)),
                 ("Access-Control-Expose-Headers", "x-ms-file-size; x-ms-file-name; x-ms-chunk-size; mimetype")], \
        content[start:end + 1]


# -- helpers -------------------------------------------------------------------------------------------------------
def _max_bytes(column: Column) -> int:
    return (column.max_size_kb or 32_768) * 1024  # MaxSizeInKB, default 32768 [doc]


def _too_big() -> DataverseError:
    return DataverseError(400, ATTACHMENT_TOO_BIG, "Attachment file size is too big.")


def _record(app: DataverseEmulator, table: Table, record_id: str) -> None:
    if app.store.retrieve(table.logical_name, record_id) is None:
        raise not_found(table.logical_name, record_id)


def _drop(app: DataverseEmulator, token: str) -> None:
    with _LOCK:
        _SESSIONS.get(app, {}).pop(token, None)


def _body(environ: dict) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return environ["wsgi.input"].read(length) if length else b""


def _method_not_allowed(method: str) -> DataverseError:
    return DataverseError(405, errors.INVALID_ARGUMENT, f"The HTTP method '{method}' is not allowed here.")
