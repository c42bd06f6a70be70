"""``$batch`` for the Dataverse Web API client: encode a multipart/mixed request, parse the multipart response
(Microsoft's 'Execute batch operations using the Web API'; OData 4.0 Part 1 §11.7).

* Request: ``POST $batch`` with ``Content-Type: multipart/mixed; boundary="batch_<uuid>"``; each part is
  ``application/http`` + ``Content-Transfer-Encoding: binary``, the request line with the API path, its headers, a
  blank line and the JSON body; change sets are nested ``multipart/mixed`` parts whose members carry ``Content-ID``
  (``$n`` in a later URL or ``@odata.bind`` value refers to the record member ``n`` created). CRLF line endings.
* At most :data:`MAX_REQUESTS` requests (change set members included), refused here before sending.
* Response: parts in request order; a change set answers a nested ``changesetresponse_`` multipart, or, when it
  failed, one error part that replaces the whole set (OData's rule; Dataverse's answer is undocumented — unverified).
  Without ``Prefer: odata.continue-on-error`` Dataverse stops at the first failure and answers an outer 400 holding
  only the failed part, so the responses of requests before it are not returned.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

MAX_REQUESTS = 1000  # L/webapi/execute-batch-operations-using-web-api
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_GUID_AT_END = re.compile(r"\((" + _GUID.pattern + r")\)/?$")  # a key-form URL (col=value) never matches
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{0,64}")


@dataclass(frozen=True)
class BatchRequest:
    """One request of a batch. ``url`` is relative to the API base (``contacts``, ``contacts(<id>)``) or a
    ``$n`` reference to a change set member (``$1``, ``$1/lastname``)."""

    method: str
    url: str
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None
    content_id: str | None = None


@dataclass(frozen=True)
class ChangeSet:
    """Requests that succeed or fail together. Members without a ``content_id`` get their 1-based position in the
    whole batch."""

    requests: Sequence[BatchRequest] = field(default_factory=tuple)


BatchItem = BatchRequest | ChangeSet


@dataclass(frozen=True)
class BatchResponse:
    """The response to one inner request. ``body`` is raw; :attr:`code`/:attr:`message` read Dataverse's error
    body (the message may quote record values: never log it above DEBUG)."""

    status: int
    headers: httpx.Headers
    body: bytes
    content_id: str | None = None
    # True when this request was in a change set that failed because of another member (its changes rolled back).
    rolled_back: bool = False

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and not self.rolled_back

    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None

    def _error(self) -> dict[str, Any]:
        try:
            error = orjson.loads(self.body)["error"]
        except Exception:
            return {}
        return error if isinstance(error, dict) else {}

    @property
    def code(self) -> str | None:
        code = self._error().get("code")
        return code if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else None

    @property
    def message(self) -> str | None:
        message = self._error().get("message")
        return None if message is None else str(message)

    @property
    def entity_id(self) -> str | None:
        """The record's id from ``OData-EntityId`` (lower case) when the header names it by id; ``None`` when
        absent or in the alternate key's form, which a request addressed by key gets back."""
        match = _GUID_AT_END.search(self.headers.get("OData-EntityId", ""))
        return match[1].lower() if match else None

    def selected_id(self, column: str) -> str | None:
        """The record's id from a ``return=representation`` body that selected its primary key ``column``."""
        try:
            found = self.json()
        except ValueError:
            return None
        value = found.get(column) if isinstance(found, dict) else None
        return value.lower() if isinstance(value, str) and _GUID.fullmatch(value) else None

    @property
    def retry_after(self) -> float | None:
        try:
            return float(self.headers["Retry-After"])
        except (KeyError, ValueError):
            return None


@dataclass(frozen=True)
class BatchResult:
    """``responses`` is aligned with the batch's requests (change set members flattened, in order); ``None`` where
    Dataverse returned no response for a request (after a stop at the first error). ``status`` is the outer status
    (200, or 400 when the batch stopped at a failure)."""

    status: int
    responses: list[BatchResponse | None]

    @property
    def ok(self) -> bool:
        return all(r is not None and r.ok for r in self.responses)


def flatten(items: Sequence[BatchItem]) -> Iterator[BatchRequest]:
    for item in items:
        yield from item.requests if isinstance(item, ChangeSet) else (item,)


def encode(items: Sequence[BatchItem], api_path: str) -> tuple[str, bytes]:
    """``(content type, body)`` of the ``$batch`` POST; ``api_path`` is the base path (``/api/data/v9.2/``).
    Raises :class:`ValueError` for an empty batch, more than :data:`MAX_REQUESTS` requests, an empty change set,
    a GET inside a change set, or duplicate Content-IDs."""
    requests = list(flatten(items))
    if not requests:
        raise ValueError("a batch needs at least one request")
    if len(requests) > MAX_REQUESTS:
        raise ValueError(f"a batch holds at most {MAX_REQUESTS} requests, got {len(requests)}")
    ids = iter(content_ids(items))
    boundary = f"batch_{uuid.uuid4()}"
    lines: list[str] = []
    for item in items:
        lines.append(f"--{boundary}")
        if isinstance(item, ChangeSet):
            if not item.requests:
                raise ValueError("a change set needs at least one request")
            changeset = f"changeset_{uuid.uuid4()}"
            lines += [f'Content-Type: multipart/mixed; boundary="{changeset}"', ""]
            for request in item.requests:
                if request.method.upper() == "GET":
                    raise ValueError("a GET is not allowed inside a change set")
                lines.append(f"--{changeset}")
                lines += _part(request, api_path, next(ids))
            lines.append(f"--{changeset}--")
        else:
            lines += _part(item, api_path, next(ids))
    lines += [f"--{boundary}--", ""]
    return f'multipart/mixed; boundary="{boundary}"', "\r\n".join(lines).encode("utf-8")


def content_ids(items: Sequence[BatchItem]) -> list[str | None]:
    """The Content-ID of each request (flattened): the given one, or for a change set member without one its
    1-based position in the batch (made unique). Raises :class:`ValueError` on duplicates."""
    given = [r.content_id for r in flatten(items) if r.content_id is not None]
    if len(given) != len(set(given)):
        raise ValueError("Content-IDs must be unique within a batch")
    taken, out, position = set(given), [], 0
    for item in items:
        for request in (item.requests if isinstance(item, ChangeSet) else (item,)):
            position += 1
            content_id = request.content_id
            if content_id is None and isinstance(item, ChangeSet):
                content_id = str(position)
                while content_id in taken:
                    content_id += "_"
                taken.add(content_id)
            out.append(content_id)
    return out


def _part(request: BatchRequest, api_path: str, content_id: str | None) -> list[str]:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        lines.append(f"Content-ID: {content_id}")
    target = request.url if request.url.startswith("$") else api_path + request.url.lstrip("/")
    lines += ["", f"{request.method.upper()} {target} HTTP/1.1"]
    headers = dict(request.headers or {})
    if request.body is not None:
        headers.setdefault("Content-Type", "application/json; type=entry")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append("")
    # A GET part is followed by two blank lines (as Microsoft's examples send it); otherwise the JSON body (orjson:
    # no raw newlines).
    lines.append(orjson.dumps(request.body).decode("utf-8") if request.body is not None else "")
    return lines


# -- response -----------------------------------------------------------------------------------------------------

def decode(items: Sequence[BatchItem], status: int, content_type: str, body: bytes) -> BatchResult:
    """Align the multipart response with the requests. Raises :class:`ValueError` when it isn't multipart."""
    boundary = _boundary(content_type)
    if boundary is None:
        raise ValueError("the $batch response is not multipart/mixed")
    parts = [_parse_part(p) for p in _split(body.decode("utf-8", "replace").replace("\r\n", "\n"), boundary)]
    responses: list[BatchResponse | None] = []
    stopped = status >= 400  # only the failed part came back
    queue = list(parts)
    ids = iter(content_ids(items))
    for item in items:
        members = [next(ids) for _ in (item.requests if isinstance(item, ChangeSet) else (item,))]
        if stopped:
            responses += _place_stopped(members, queue)
            continue
        part = queue.pop(0) if queue else None
        if part is None:
            responses += [None] * len(members)
        elif isinstance(part, list):  # a change set's nested responses, in member order
            responses += part[:len(members)] + [None] * (len(members) - len(part))
        elif len(members) == 1:
            responses.append(part)
        else:  # one error part replaces a failed change set (unverified, see module notes)
            responses += [part if part.content_id in (None, m) else
                          BatchResponse(part.status, part.headers, part.body, m, rolled_back=True)
                          for m in members]
    return BatchResult(status, responses)


def _place_stopped(members: list[str | None], queue: list) -> list[BatchResponse | None]:
    # Only the failed part came back; place it by its Content-ID when it has one, else leave every slot unknown.
    return [next((p for p in queue if isinstance(p, BatchResponse) and p.content_id is not None
                  and p.content_id == member), None) for member in members]


def _boundary(content_type: str) -> str | None:
    if not content_type.strip().lower().startswith("multipart/mixed"):
        return None
    match = re.search(r'boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', content_type, re.I)
    return None if match is None else (match[1] or match[2])


def _split(text: str, boundary: str) -> list[str]:
    # The emulator parses multipart on its own (sandbox/dataverse_emulator/batch.py) on purpose: one shared parser
    # would hide a wire-format mistake from both sides.
    delimiter, parts, current = "--" + boundary, [], None
    for line in text.split("\n"):
        stripped = line.rstrip()
        if stripped in (delimiter, delimiter + "--"):
            if current is not None:
                parts.append("\n".join(current))
            if stripped.endswith("--") and stripped != delimiter:
                return parts
            current = []
        elif current is not None:
            current.append(line)
    raise ValueError("the $batch response has no closing delimiter")


def _headers(text: str) -> tuple[httpx.Headers, str]:
    lines = text.split("\n")
    headers = httpx.Headers()
    for index, line in enumerate(lines):
        if not line.strip():
            return headers, "\n".join(lines[index + 1:])
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    return headers, ""


def _parse_part(text: str) -> BatchResponse | list[BatchResponse]:
    outer, content = _headers(text)
    inner_boundary = _boundary(outer.get("Content-Type", ""))
    if inner_boundary is not None:
        return [r for r in (_parse_part(p) for p in _split(content, inner_boundary))
                if isinstance(r, BatchResponse)]
    content = content.lstrip("\n")
    status_line, _, rest = content.partition("\n")
    pieces = status_line.split()
    if len(pieces) < 2 or not pieces[1].isdigit():
        raise ValueError("a $batch response part has no HTTP status line")
    headers, body = _headers(rest)
    return BatchResponse(int(pieces[1]), headers, body.strip().encode("utf-8"), outer.get("Content-ID"))


__all__ = ["MAX_REQUESTS", "BatchItem", "BatchRequest", "BatchResponse", "BatchResult", "ChangeSet", "content_ids",
           "decode", "encode", "flatten"]
