"""``POST /api/data/v9.2/$batch`` of the emulator.

The multipart body is parsed (CRLF or LF) into requests and change sets; every inner request then runs in-process
through the emulator's own WSGI handler with a synthesized environ (carrying the outer ``Authorization``), so the
record rules stay one implementation. Inner requests bypass service protection: the whole batch is admitted once,
as one request carrying ``count_requests`` records (Microsoft's "Service protection API limits").

Sources: L/webapi/execute-batch-operations-using-web-api (formats, 1000 cap, no nested batches, ``$n`` references
and the forward-reference message, stop-at-first-error with an outer 400 holding only the failed part,
``odata.continue-on-error``, ``batchresponse_``/``changesetresponse_`` boundaries, ``Location`` + ``OData-EntityId``
on creates) and OData 4.0 Part 1 §11.7. Unverified, flagged at the use site: the error codes and messages of the
1000 cap, GET in a change set, nested batches and malformed bodies, and the shape of a failed change set's answer
(OData's "a single response replaces the change set").
"""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from senseimig_dagster.sandbox.dataverse_emulator import errors, odata
from senseimig_dagster.sandbox.dataverse_emulator.errors import DataverseError

if TYPE_CHECKING:
    from senseimig_dagster.sandbox.dataverse_emulator.app import DataverseEmulator

BASE_PATH = "/api/data/v9.2"
BATCH_PATH = BASE_PATH + "/$batch"
MAX_REQUESTS = 1000  # L/webapi/execute-batch-operations-using-web-api
INNER_REQUEST = "senseimig.batch.inner"  # environ flag: an inner request of a batch (not admitted on its own)
_PARSED = "senseimig.batch.parsed"  # environ cache of the parsed body (parsed once, at admission or dispatch)
_DROPPED_INNER_HEADERS = {"content-length", "x-ms-dop-hint", "set-cookie"}  # outer-response concerns only
_ERROR_TYPE = "application/json; odata.metadata=minimal"
_REF = re.compile(r"^\$([A-Za-z0-9_.\-]+)(.*)$", re.S)

Response = tuple[int, list[tuple[str, str]], bytes]


@dataclass
class InnerRequest:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    content_id: str | None = None


@dataclass
class ChangeSet:
    requests: list[InnerRequest] = field(default_factory=list)


Item = InnerRequest | ChangeSet


# -- parsing ------------------------------------------------------------------------------------------------
def parse(environ: dict) -> list[Item]:
    """The batch's requests and change sets in order (cached in ``environ``); 400 when malformed or over the cap."""
    if _PARSED not in environ:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ[_PARSED] = _parse_body(environ.get("CONTENT_TYPE", ""), raw)
    return environ[_PARSED]


def count_requests(environ: dict) -> int:
    """How many inner requests the batch carries (change set members included); 1 for a non-POST."""
    if environ.get("REQUEST_METHOD") != "POST":
        return 1
    return sum(1 for _ in iter_parts(parse(environ)))


def is_batch(environ: dict) -> bool:
    """An outer ``POST .../$batch`` (other methods on ``$batch`` are dispatched here too, and answered 405)."""
    return environ.get("PATH_INFO", "") == BATCH_PATH and not environ.get(INNER_REQUEST)


def _parse_body(content_type: str, raw: bytes) -> list[Item]:
    boundary = _boundary(content_type)
    if boundary is None:
        # Text unverified (Dataverse's answer to a $batch that isn't multipart/mixed is undocumented).
        raise odata.bad_request("The batch request must have a 'Content-Type' of multipart/mixed with a boundary.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise odata.bad_request("The batch request body is not valid UTF-8.") from None
    text = text.replace("\r\n", "\n")  # CRLF per the spec, LF as the docs render it; JSON has no raw newlines
    items: list[Item] = []
    for part in _split(text, boundary):
        headers, content = _headers(part)
        part_type = _header(headers, "content-type") or ""
        inner_boundary = _boundary(part_type)
        if inner_boundary is not None:
            changeset = ChangeSet()
            for inner in _split(content, inner_boundary):
                inner_headers, inner_content = _headers(inner)
                if _boundary(_header(inner_headers, "content-type") or "") is not None:
                    # Unverified text: OData forbids change sets inside change sets.
                    raise odata.bad_request("Change sets cannot be nested in a change set.")
                request = _request(inner_content, _header(inner_headers, "content-id"))
                if request.method == "GET":
                    # Documented: no GET inside a change set; code and text unverified.
                    raise odata.bad_request("A GET request is not allowed inside a change set.")
                changeset.requests.append(request)
            items.append(changeset)
        else:
            items.append(_request(content, _header(headers, "content-id")))
    total = sum(1 for _ in iter_parts(items))
    if total > MAX_REQUESTS:
        # The 1000 cap is documented; Dataverse's code and text for exceeding it are not (unverified).
        raise odata.bad_request(
            f"The number of requests in the batch ({total}) exceeds the maximum of {MAX_REQUESTS}.")
    return items


def _boundary(content_type: str) -> str | None:
    if not content_type.strip().lower().startswith("multipart/mixed"):
        return None
    match = re.search(r'boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', content_type, re.I)
    return None if match is None else (match[1] or match[2])


def _split(text: str, boundary: str) -> list[str]:
    """The parts between ``--boundary`` lines up to ``--boundary--`` (RFC 2046; the preamble is ignored)."""
    delimiter, parts, current = "--" + boundary, [], None
    for line in text.split("\n"):
        stripped = line.rstrip()
        if stripped == delimiter:
            if current is not None:
                parts.append("\n".join(current))
            current = []
        elif stripped == delimiter + "--":
            if current is not None:
                parts.append("\n".join(current))
            return parts
        elif current is not None:
            current.append(line)
    raise odata.bad_request(f"The batch body does not end with the closing delimiter '{delimiter}--'.")  # unverified


def _headers(text: str) -> tuple[list[tuple[str, str]], str]:
    """Header lines up to the first blank line, and what follows it."""
    lines = text.split("\n")
    headers: list[tuple[str, str]] = []
    for index, line in enumerate(lines):
        if not line.strip():
            return headers, "\n".join(lines[index + 1:])
        name, sep, value = line.partition(":")
        if not sep:
            raise odata.bad_request(f"The batch part header '{line.strip()}' is not valid.")  # unverified
        headers.append((name.strip(), value.strip()))
    return headers, ""


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name), None)


def _request(content: str, content_id: str | None) -> InnerRequest:
    """An ``application/http`` part: request line, headers, blank line, body."""
    content = content.lstrip("\n")
    line, _, rest = content.partition("\n")
    pieces = line.split()
    if len(pieces) not in (2, 3) or not pieces[0].isalpha():
        raise odata.bad_request(f"The batch part request line '{line.strip()}' is not valid.")  # unverified
    method, target = pieces[0].upper(), pieces[1]
    headers, body = _headers(rest)
    path = urlsplit(target).path if "://" in target else target.split("?")[0]
    if unquote(path).rstrip("/").endswith("/$batch"):
        # Documented: batches can't contain other batches; code and text unverified.
        raise odata.bad_request("A batch request cannot contain another batch request.")
    return InnerRequest(method, target, headers, body.strip().encode(), content_id)


# -- execution ----------------------------------------------------------------------------------------------
class _ChangeSetFailed(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response[0])
        self.response = response


def handle(app: DataverseEmulator, environ: dict) -> Response:
    """Run the batch; the outer response (200, or 400 with only the failed part when not continuing on error)."""
    if environ.get("REQUEST_METHOD") != "POST":
        raise DataverseError(405, errors.INVALID_ARGUMENT,
                             f"The HTTP method '{environ.get('REQUEST_METHOD')}' is not allowed here.")
    items = parse(environ)
    continue_on_error = "odata.continue-on-error" in odata.parse_prefer(environ.get("HTTP_PREFER"))
    refs: dict[str, str] = {}  # Content-ID -> URL of the record it created
    parts: list[str] = []
    for item in items:
        if isinstance(item, ChangeSet):
            part, ok = _run_changeset(app, environ, item, refs)
        else:
            response = _execute(app, environ, item, refs)
            part, ok = _http_part(item, response), response[0] < 400
        if not ok and not continue_on_error:
            # Microsoft's example answers an outer 400 holding only the failed part.
            return _multipart_response(400, [part])
        parts.append(part)
    return _multipart_response(200, parts)


def _run_changeset(app: DataverseEmulator, environ: dict, changeset: ChangeSet,
                   refs: dict[str, str]) -> tuple[str, bool]:
    added: list[str] = []
    done: list[tuple[InnerRequest, Response]] = []
    try:
        with app.store.transaction():
            for request in changeset.requests:
                response = _execute(app, environ, request, refs)
                if response[0] >= 400:
                    raise _ChangeSetFailed(response)
                done.append((request, response))
                if request.content_id and request.content_id not in refs:
                    url = _header(response[1], "odata-entityid")
                    if url:
                        refs[request.content_id] = url
                        added.append(request.content_id)
    except _ChangeSetFailed as failed:
        for content_id in added:  # those records were rolled back
            refs.pop(content_id, None)
        failing = changeset.requests[len(done)]
        # UNVERIFIED (Microsoft doesn't document it): per OData 4.0 §11.7.4 a single error response replaces
        # the whole change set; it echoes the failing request's Content-ID.
        return _http_part(failing, failed.response), False
    boundary = f"changesetresponse_{uuid.uuid4()}"
    inner = [_http_part(request, response) for request, response in done]
    return f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n" + _multipart(boundary, inner), True


def _execute(app: DataverseEmulator, outer: dict, request: InnerRequest, refs: dict[str, str]) -> Response:
    """One inner request through the app's WSGI handler; a bad ``$n`` reference answers 400 without running it."""
    try:
        target = _resolve_target(request.target, refs)
        body = _resolve_body(request.body, refs)
    except DataverseError as e:
        return e.status, [("Content-Type", _ERROR_TYPE)], json.dumps(e.to_json()).encode()
    split = urlsplit(target)
    path = split.path if split.scheme or split.path.startswith("/") else f"{BASE_PATH}/{split.path}"
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote(path),
        "QUERY_STRING": split.query,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": outer.get("wsgi.errors", io.StringIO()),
        "wsgi.url_scheme": outer.get("wsgi.url_scheme", "http"),
        "wsgi.version": (1, 0),
        "SERVER_NAME": outer.get("SERVER_NAME", "localhost"),
        "SERVER_PORT": outer.get("SERVER_PORT", "80"),
        "SERVER_PROTOCOL": "HTTP/1.1",
        INNER_REQUEST: True,
    }
    for key in ("HTTP_HOST", "HTTP_AUTHORIZATION"):
        if key in outer:
            environ[key] = outer[key]
    for name, value in request.headers:
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if key == "CONTENT_TYPE":
                environ[key] = value
            continue
        environ[f"HTTP_{key}"] = value
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> None:
        captured["status"], captured["headers"] = int(status.split()[0]), headers

    chunks = app(environ, start_response)
    payload = b"".join(chunks)
    headers = [(k, v) for k, v in captured["headers"] if k.lower() not in _DROPPED_INNER_HEADERS]
    entity_id = _header(headers, "odata-entityid")
    if request.method in ("POST", "PATCH") and entity_id and _header(headers, "location") is None:
        # Documented: creates carry Location and OData-EntityId, and so does a PATCH (the execute-batch article's
        # "Reference URIs in URL and navigation properties" answers its PATCH $1 with both).
        headers.insert(0, ("Location", entity_id))
    return captured["status"], headers, payload


def _reference(name: str, refs: dict[str, str]) -> str:
    if name not in refs:
        # Documented text; the code is not given (unverified).
        raise DataverseError(400, errors.INVALID_ARGUMENT,
                             f"Content-ID Reference: '${name}' does not exist in the batch context.")
    return refs[name]


def _resolve_target(target: str, refs: dict[str, str]) -> str:
    match = _REF.match(target)
    return target if match is None else _reference(match[1], refs) + match[2]


def _resolve_body(body: bytes, refs: dict[str, str]) -> bytes:
    """``$n`` in ``@odata.bind`` / ``@odata.id`` values; other strings are left alone."""
    if b"$" not in body:
        return body
    try:
        data = json.loads(body)
    except ValueError:
        return body  # the app answers the invalid JSON itself

    def walk(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, key) for v in value]
        if isinstance(value, str) and key.endswith(("@odata.bind", "@odata.id")):
            return _resolve_target(value, refs)
        return value

    return json.dumps(walk(data)).encode()


# -- response -----------------------------------------------------------------------------------------------
def _http_part(request: InnerRequest, response: Response) -> str:
    status, headers, body = response
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if request.content_id is not None:
        lines.append(f"Content-ID: {request.content_id}")
    lines += ["", f"HTTP/1.1 {status} {_reason(status)}"]
    lines += [f"{k}: {v}" for k, v in headers]
    return "\r\n".join(lines) + "\r\n\r\n" + body.decode("utf-8")


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _multipart(boundary: str, parts: list[str]) -> str:
    return "".join(f"--{boundary}\r\n{part}\r\n" for part in parts) + f"--{boundary}--\r\n"


def _multipart_response(status: int, parts: list[str]) -> Response:
    boundary = f"batchresponse_{uuid.uuid4()}"  # always new, so never the request's boundary
    body = _multipart(boundary, parts).encode()
    return status, [("Content-Type", f"multipart/mixed; boundary={boundary}")], body


def iter_parts(items: list[Item]) -> Iterator[InnerRequest]:
    """Every inner request in order, change set members included."""
    for item in items:
        yield from item.requests if isinstance(item, ChangeSet) else (item,)
