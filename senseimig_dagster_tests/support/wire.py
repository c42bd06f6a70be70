"""WSGI wrappers the tests put in front of the stand-ins, so what crossed the wire is measured there:

* :class:`Wire` in front of the Dataverse emulator: counts and keeps every write request (a ``$batch`` counts when
  one of its parts writes), can refuse chosen writes (``fault``) and can act before the n-th write (``on_write``:
  kill the loader process, drop the request or let it land);
* :func:`written` names the records a list of write requests touched, ``$batch`` parts unpacked;
* :func:`counting_transport`: an in-process transport counting requests by method;
* :class:`FaultyApp` in front of the Graph stand-in: chosen requests fail with a 503 or a connection reset before
  or after the stand-in has handled them.
"""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx
import orjson

from senseimig_dagster.sandbox.http_server import ABORT_KEY
from senseimig_dagster_tests.support.constants import SOURCE_KEY, WRITE_METHODS

# POST actions that only read (a note's body read back in blocks): not writes.
READ_ACTIONS = ("InitializeAnnotationBlocksDownload", "DownloadBlock")


def _error(start_response: Callable, status: str, code: str) -> list[bytes]:
    body = json.dumps({"error": {"code": code, "message": "injected by the test"}}).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class Wire:
    """WSGI wrapper around the current emulator (``app``; swap it to change databases between runs).

    Every write request is counted (``writes``), and kept when ``keep`` (``requests``: method, path, body); a
    ``$batch`` of reads only, and the POST actions in ``reads``, are not writes. ``fault(method, path, body)``
    true: the write is refused with a 500 (a request-level failure: no retry, no bisection). ``on_write(n)`` runs
    before the n-th write is handled and may return ``"drop"`` (the request never reaches Dataverse) or
    ``"land"``."""

    def __init__(self, app: Callable, *, reads: tuple[str, ...] = (), keep: bool = False) -> None:
        self.app, self.reads, self.keep = app, reads, keep
        self.writes = 0
        self.requests: list[tuple[str, str, bytes]] = []
        self.fault: Callable[[str, str, bytes], bool] | None = None
        self.on_write: Callable[[int], str] | None = None
        self._lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        if method not in WRITE_METHODS or (self.reads and path.endswith(self.reads)):
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        if path.endswith("$batch") and not any(f"\n{m} ".encode() in body.replace(b"\r\n", b"\n")
                                               for m in WRITE_METHODS):
            return self.app(environ, start_response)  # a $batch of reads
        with self._lock:
            self.writes += 1
            n = self.writes
            if self.keep:
                self.requests.append((method, path, body))
        if self.fault is not None and self.fault(method, path, body):
            return _error(start_response, "500 Internal Server Error", "0x80040216")
        if self.on_write is not None and self.on_write(n) == "drop":
            return _error(start_response, "503 Service Unavailable", "0x80072321")
        return self.app(environ, start_response)


# -- which records the writes touched ----------------------------------------------------------------------------------
_SEGMENT = re.compile(r"/api/data/v[\d.]+/([A-Za-z_]+)(?:\(([^)]*)\))?(?:/Microsoft\.Dynamics\.CRM\.(\w+))?$")
_REQUEST_LINE = re.compile(r"^(POST|PATCH|PUT|DELETE) (\S+) HTTP/1\.1\s*$", re.M)


def _records(method: str, url: str, body: bytes) -> list[tuple[str, str]]:
    """(entity set, source id or record GUID) of each record one write request touches."""
    match = _SEGMENT.search(unquote(url.split("?")[0]))
    if match is None:
        return [("?", url)]
    entity_set, key, message = match.groups()
    if key:
        sid = re.fullmatch(rf"{SOURCE_KEY}='(.*)'", key)
        return [(entity_set, sid.group(1).replace("''", "'") if sid else key)]
    data = orjson.loads(body) if body.strip() else {}
    targets = data.get("Targets", []) if message else [data]
    return [(entity_set, t.get(SOURCE_KEY) or _key_of(t.get("@odata.id", "?"))) for t in targets]


def _key_of(odata_id: str) -> str:
    """The source id in ``contacts(smig_sourcesystemid='x')`` (how UpsertMultiple names an existing row)."""
    found = re.search(rf"{SOURCE_KEY}='(.*)'\)$", odata_id)
    return found.group(1).replace("''", "'") if found else odata_id


def written(requests: list[tuple[str, str, bytes]]) -> list[tuple[str, str]]:
    """Every record write on the wire, ``$batch`` parts unpacked (one entry per write, repeats kept)."""
    out: list[tuple[str, str]] = []
    for method, path, body in requests:
        if not path.endswith("$batch"):
            out += _records(method, path, body)
            continue
        text = body.decode()
        lines = list(_REQUEST_LINE.finditer(text))
        for i, line in enumerate(lines):
            chunk = text[line.end():lines[i + 1].start() if i + 1 < len(lines) else len(text)]
            start, end = chunk.find("{"), chunk.rfind("}")
            out += _records(line.group(1), line.group(2), chunk[start:end + 1].encode() if start >= 0 else b"")
    return out


def counting_transport(app: Callable) -> tuple[httpx.BaseTransport, Callable[[], dict[str, int]]]:
    """An in-process transport to ``app`` counting requests by method (a no-op rollback's writes must be 0)."""
    counts: dict[str, int] = {}
    inner = httpx.WSGITransport(app=app)

    class Counting(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            counts[request.method] = counts.get(request.method, 0) + 1
            return inner.handle_request(request)

    return Counting(), lambda: dict(counts)


# -- faults in front of the Graph stand-in ---------------------------------------------------------------------------
@dataclass
class Fault:
    matches: Callable[[dict], bool]
    kind: str  # "503" | "drop_before" | "drop_after"
    times: int = 1


@dataclass
class FaultyApp:
    """Wraps a WSGI app; each request matching a pending :class:`Fault` fails as the fault says."""

    app: Callable
    faults: list[Fault] = field(default_factory=list)
    seen: list[tuple[str, str, str | None, bool]] = field(default_factory=list)  # method, path, range, auth
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        with self.lock:
            self.seen.append((environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""),
                              environ.get("HTTP_CONTENT_RANGE"), bool(environ.get("HTTP_AUTHORIZATION"))))
            fault = next((f for f in self.faults if f.times > 0 and f.matches(environ)), None)
            if fault is not None:
                fault.times -= 1
        if fault is None:
            return self.app(environ, start_response)
        if fault.kind == "503":
            body = b'{"error":{"code":"serviceNotAvailable","message":"injected"}}'
            start_response("503 Service Unavailable", [("Content-Type", "application/json"), ("Retry-After", "0"),
                                                       ("Content-Length", str(len(body)))])
            return [body]
        if fault.kind == "drop_after":
            list(self.app(environ, lambda *a, **k: None))  # the stand-in stores the fragment; the answer is lost
        else:
            environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [("Content-Length", "100")])
        return _reset(environ)


def _reset(environ: dict) -> Iterator[bytes]:
    yield b""
    environ[ABORT_KEY]()
    raise ConnectionResetError("fault injection")


def fragment_at(start: int) -> Callable[[dict], bool]:
    """Matches the upload-session PUT of the fragment starting at byte ``start``."""
    def matches(environ: dict) -> bool:
        m = re.match(r"bytes (\d+)-", environ.get("HTTP_CONTENT_RANGE", ""))
        return environ["REQUEST_METHOD"] == "PUT" and m is not None and int(m[1]) == start
    return matches
