"""The Sensei Cloud REST API as a plain WSGI callable (runs in-process under ``httpx.WSGITransport`` or served over
HTTP by :mod:`.server`). Conventions of Carestream's CSD Partner Access API: ``Csd-Api-Key`` header, ``/v1/``
paths.

    GET /v1/<endpoint>?page_size=&page_token=&modified_since=&modified_before=&location_id=
    GET /v1/<endpoint>/count?modified_since=&modified_before=&location_id=
    GET /v1/<endpoint>/<id>/content          (objects with has_content: documents)
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from urllib.parse import parse_qs

import orjson

from senseimig_dagster.objects import BY_ENDPOINT, SenseiObject
from senseimig_dagster.sandbox.http_server import ABORT_KEY
from senseimig_dagster.sandbox.sensei_sim.faults import DATA_FAULTS, Faults, corrupt
from senseimig_dagster.sandbox.sensei_sim.ratelimit import RateLimit, RateLimiter
from senseimig_dagster.sandbox.sensei_sim.store import TenantStore, Window
from senseimig_dagster.sandbox.sensei_sim.tokens import BadToken, PageState, TokenCodec

log = logging.getLogger("senseimig.sandbox.sensei")

API_KEY_HEADER = "HTTP_CSD_API_KEY"  # WSGI spelling of Csd-Api-Key
DEFAULT_PAGE_SIZE = 500
# Per key. A 1000-row page per request gives 100k rows/s: well above what one client lands, so the limit only bites
# when many clients share a key (parallel extraction), as it would on the real service.
DEFAULT_RATE_LIMIT = RateLimit(requests_per_second=100.0, burst=200)
CONTENT_CHUNK = 256 * 1024
# Declared document defects (sandbox/generator/defects.py) the content endpoint acts out.
MISSING_CONTENT, CORRUPT_CONTENT = "missing_document", "corrupt_document"
_STATUS = {200: "200 OK", 400: "400 Bad Request", 401: "401 Unauthorized", 404: "404 Not Found",
           405: "405 Method Not Allowed", 429: "429 Too Many Requests", 500: "500 Internal Server Error"}

StartResponse = Callable[..., object]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: Sequence[tuple[str, str]] = ()):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, list(headers)


def _parse_time(params: dict[str, str], name: str) -> int | None:
    value = params.get(name)
    if not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(400, "bad_request", f"{name} is not an ISO 8601 timestamp") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    delta = t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class SenseiSimulator:
    """WSGI app serving a tenant directory (``<endpoint>.jsonl`` per object, ``manifest.json``)."""

    def __init__(self, data_dir: Path, api_keys: Sequence[str] = ("sandbox-key",), page_size_max: int = 5000,
                 rate_limit: RateLimit | None = DEFAULT_RATE_LIMIT,
                 faults: Faults | None = None):
        self.store = TenantStore(Path(data_dir))
        self._keys = set(api_keys)
        self.page_size_max = page_size_max
        self.limiter = RateLimiter(rate_limit) if rate_limit else None
        self.faults = faults or Faults()
        self._tokens = TokenCodec()
        self._defects: dict[str, str] | None = None

    def __repr__(self) -> str:  # never the keys
        return f"SenseiSimulator(data_dir={str(self.store.data_dir)!r}, keys={len(self._keys)})"

    def revoke_key(self, key: str) -> None:
        self._keys.discard(key)

    def add_key(self, key: str) -> None:
        self._keys.add(key)

    def warm(self) -> int:
        """Index every object now instead of on first request; returns the number of rows."""
        return self.store.warm()

    def close(self) -> None:
        self.store.close()

    # -- WSGI ---------------------------------------------------------------------------------------------------

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        try:
            return self._route(environ, start_response)
        except ApiError as e:
            return _json(start_response, e.status, {"error": {"code": e.code, "message": e.message}}, e.headers)
        except Exception:
            log.exception("simulator error on %s", environ.get("PATH_INFO"))
            return _json(start_response, 500, {"error": {"code": "internal_error", "message": "internal error"}})

    def _route(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        key = environ.get(API_KEY_HEADER)
        if not key or key not in self._keys:
            raise ApiError(401, "unauthorized", "missing or invalid Csd-Api-Key")
        if self.limiter and (wait := self.limiter.take(key)):
            raise ApiError(429, "rate_limited", f"rate limit exceeded; retry in {wait} s",
                           [("Retry-After", str(wait))])
        if environ.get("REQUEST_METHOD", "GET") != "GET":
            raise ApiError(405, "method_not_allowed", "only GET is supported")
        parts = _path(environ).strip("/").split("/")
        if len(parts) < 2 or parts[0] != "v1" or parts[1] not in BY_ENDPOINT:
            raise ApiError(404, "not_found", "no such resource")
        obj = BY_ENDPOINT[parts[1]]
        params = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}
        if len(parts) == 2:
            return self._list(obj, params, environ, start_response)
        if len(parts) == 3 and parts[2] == "count":
            count = self.store.index(obj).count(self._window(obj, params))
            return _json(start_response, 200, {"object": obj.name, "count": count})
        if len(parts) == 4 and parts[3] == "content" and obj.has_content:
            return self._content(obj, parts[2], start_response)
        raise ApiError(404, "not_found", "no such resource")

    def _window(self, obj: SenseiObject, params: dict[str, str]) -> Window:
        location = params.get("location_id") or None
        if location is not None and obj.location_field is None:
            raise ApiError(400, "bad_request", f"{obj.endpoint} cannot be filtered by location_id")
        return Window(_parse_time(params, "modified_since"), _parse_time(params, "modified_before"), location)

    def _list(self, obj: SenseiObject, params: dict[str, str], environ: dict,
              start_response: StartResponse) -> Iterable[bytes]:
        try:
            size = int(params.get("page_size") or min(DEFAULT_PAGE_SIZE, self.page_size_max))
        except ValueError:
            raise ApiError(400, "bad_request", "page_size must be an integer") from None
        if not 1 <= size <= self.page_size_max:
            raise ApiError(400, "bad_request", f"page_size must be between 1 and {self.page_size_max}")
        window = self._window(obj, params)
        page_no, after = 1, None
        if token := params.get("page_token"):
            state = self._resume(obj, token, window, params)
            page_no, after, window = state.page, state.after, state.window

        faults = self.faults.take(obj.name, page_no)
        kinds = {f.kind for f in faults}
        if "http_500" in kinds:
            raise ApiError(500, "internal_error", "injected failure")
        if "slow" in kinds:
            time.sleep(max(f.seconds for f in faults if f.kind == "slow"))

        page = self.store.index(obj).page(window, after, size)
        lines = page.lines
        # Rows are numbered as stored: in-place changes first, inserted duplicates last.
        for f in sorted((f for f in faults if f.kind in DATA_FAULTS), key=lambda f: f.kind == "duplicate_record"):
            lines = corrupt(obj, lines, f)
        next_token = None
        if page.last is not None:
            next_token = self._tokens.encode(PageState(obj.endpoint, page_no + 1, page.last, window))
        body = b"".join((b'{"object":', orjson.dumps(obj.name), b',"data":[', b",".join(lines),
                         b'],"next_page_token":', orjson.dumps(next_token),
                         b',"total_count":', str(page.total).encode(), b"}"))
        if "malformed_json" in kinds:
            body = body[: len(body) // 2]
        start_response(_STATUS[200], [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        if "reset" in kinds:
            return _reset_midway(body, environ)
        return [body]

    def _resume(self, obj: SenseiObject, token: str, window: Window, params: dict[str, str]) -> PageState:
        try:
            state = self._tokens.decode(token)
        except BadToken as e:
            raise ApiError(400, "bad_request", str(e)) from None
        if state.endpoint != obj.endpoint:
            raise ApiError(400, "bad_request", "page_token belongs to another object")
        # Filters may be repeated with the token or left out; changing them mid-paging is a client bug.
        asked = (window.since, window.before, window.location)
        issued = (state.window.since, state.window.before, state.window.location)
        given = [bool(params.get(k)) for k in ("modified_since", "modified_before", "location_id")]
        if any(g and a != i for g, a, i in zip(given, asked, issued, strict=True)):
            raise ApiError(400, "bad_request", "filters differ from those the page_token was issued for")
        return state

    def _content(self, obj: SenseiObject, record_id: str, start_response: StartResponse) -> Iterable[bytes]:
        line = self.store.index(obj).find(record_id)
        if line is None:
            raise ApiError(404, "not_found", f"no such {obj.name}")
        row = orjson.loads(line)
        defect = self._content_defects().get(record_id)
        if defect == MISSING_CONTENT:  # the record is listed but its file is gone, as on the real service
            raise ApiError(404, "not_found", f"no content for this {obj.name}")
        size, mime = row.get("size_bytes"), row.get("mime_type")
        size = size if isinstance(size, int) and size >= 0 else 0  # a broken size still serves (as empty)
        mime = mime if isinstance(mime, str) and mime else "application/octet-stream"
        from senseimig_dagster.sandbox import documents  # written by the generator; imported only when needed

        chunks = documents.iter_document_bytes(self.store.seed, record_id, size, mime, chunk_size=CONTENT_CHUNK)
        if defect == CORRUPT_CONTENT:  # same length, other bytes: the recorded sha256 no longer matches
            chunks = _flip_first_byte(chunks)
        start_response(_STATUS[200], [("Content-Type", mime), ("Content-Length", str(size))])
        return chunks

    def _content_defects(self) -> dict[str, str]:
        """Document id -> content defect the generator declared (defects.jsonl), read once."""
        if self._defects is None:
            path, found = self.store.data_dir / "defects.jsonl", {}
            if path.exists():
                for line in path.read_bytes().splitlines():
                    d = orjson.loads(line)
                    if d.get("kind") in (MISSING_CONTENT, CORRUPT_CONTENT):
                        found[d["id"]] = d["kind"]
            self._defects = found
        return self._defects


def _flip_first_byte(chunks: Iterator[bytes]) -> Iterator[bytes]:
    first = True
    for chunk in chunks:
        if first and chunk:
            chunk, first = bytes([chunk[0] ^ 0xFF]) + chunk[1:], False
        yield chunk


def _path(environ: dict) -> str:
    """PATH_INFO as text. PEP 3333 hands it over as latin-1-decoded bytes; httpx's in-process transport as text."""
    path = environ.get("PATH_INFO", "")
    try:
        return path.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return path


def _json(start_response: StartResponse, status: int, payload: dict,
          headers: Sequence[tuple[str, str]] = ()) -> list[bytes]:
    body = orjson.dumps(payload)
    start_response(_STATUS.get(status, f"{status} Error"),
                   [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers])
    return [body]


def _reset_midway(body: bytes, environ: dict) -> Iterator[bytes]:
    yield body[: len(body) // 2]
    abort = environ.get(ABORT_KEY)
    if abort is not None:  # over real HTTP: send a TCP RST
        abort()
    raise ConnectionResetError("fault injection: connection reset mid-response")
