"""A SharePoint document library through Microsoft Graph v1.0: folders, simple and resumable uploads, lookup,
download and delete, for the document load (files too large for a note, and imaging exports).

Wire rules followed (Microsoft Learn, checked; see ``sandbox/graph/app.py`` for sources):

* App-only tokens for scope ``https://graph.microsoft.com/.default`` through msal (``EntraTokenProvider`` is a
  generic client-credentials provider; it is reused with Graph's resource), re-acquired once on a 401.
* Files up to :data:`SIMPLE_UPLOAD_MAX` (4 MiB, Microsoft's advice for simple upload; the hard limit is 250 MB) go
  in one ``PUT .../items/{parent}:/{name}:/content``; larger ones through an upload session: fragments of
  ``chunk_size`` (a multiple of 320 KiB, at most 60 MiB) ``PUT`` to the pre-authenticated ``uploadUrl`` **without**
  an Authorization header, in order, each answered 202 with ``nextExpectedRanges`` until the last (201/200 with the
  driveItem). After a dropped connection, a 5xx or a 416 the client asks the session for ``nextExpectedRanges``
  (``GET uploadUrl``) and resumes there. ``conflictBehavior`` is ``replace`` so a re-run is idempotent.
* Every upload is verified: the stored size and ``quickXorHash`` must equal those of the bytes sent.
* 429/503 wait ``Retry-After`` seconds (else exponential backoff with jitter); 502/504 and transport errors are
  retried with backoff; other statuses raise :class:`~.errors.GraphError` at once.

Nothing logged or raised carries a file or folder name or Graph's message (which may quote names): only the
operation, status, codes and request id.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

import httpx

from senseimig_dagster.graph.errors import (
    GraphConflict,
    GraphError,
    GraphNotFound,
    GraphThrottled,
    UploadVerificationError,
)
from senseimig_dagster.graph.names import valid_sharepoint_name
from senseimig_dagster.graph.quickxor import QuickXorHash
from senseimig_dagster.transport.entra import DEFAULT_AUTHORITY_HOST, BearerAuth, EntraTokenProvider
from senseimig_dagster.transport.retry import RetryPolicy, parse_retry_after
from senseimig_dagster.transport.urls import require_https

log = logging.getLogger("senseimig.graph")

GRAPH_RESOURCE = "https://graph.microsoft.com"
FRAGMENT_QUANTUM = 327_680  # 320 KiB
MAX_FRAGMENT = 60 * 1024 * 1024
SIMPLE_UPLOAD_MAX = 4 * 1024 * 1024
_RETRY = frozenset({429, 500, 502, 503, 504})
_RESUME = frozenset({416, 500, 502, 503, 504})  # a fragment answered so: ask the session where to go on

__all__ = ["DriveFile", "GraphDrive", "valid_sharepoint_name"]


@dataclass(frozen=True)
class DriveFile:
    id: str
    name: str
    size: int
    web_url: str
    quick_xor_hash: str | None

    @classmethod
    def from_json(cls, item: dict) -> DriveFile:
        hashes = (item.get("file") or {}).get("hashes") or {}
        return cls(item["id"], item["name"], int(item.get("size") or 0), item.get("webUrl", ""),
                   hashes.get("quickXorHash"))


class GraphDrive:
    """One SharePoint document library through Microsoft Graph. Thread-safe."""

    def __init__(self, *, graph_url: str, tenant_id: str, client_id: str, client_secret: str,
                 authority_host: str = DEFAULT_AUTHORITY_HOST, site_url: str, library: str = "contact",
                 verify: str | bool = True, chunk_size: int = 10 * FRAGMENT_QUANTUM, timeout: float = 60.0,
                 max_retries: int = 6, backoff_base: float = 0.5, backoff_max: float = 30.0,
                 sleep: Callable[[float], object] | None = None) -> None:
        if chunk_size <= 0 or chunk_size % FRAGMENT_QUANTUM or chunk_size > MAX_FRAGMENT:
            raise ValueError("chunk_size must be a positive multiple of 327,680 bytes (320 KiB), at most 60 MiB")
        site = urlsplit(site_url.rstrip("/"))
        if site.scheme != "https" or not site.hostname:
            raise ValueError("site_url must look like https://contoso.sharepoint.com/sites/name")
        self.graph_url = require_https(graph_url, "the Microsoft Graph URL").rstrip("/")
        self.site_host, self.site_path = site.hostname, site.path or "/"
        self.library, self.chunk_size = library, chunk_size
        self.retry = RetryPolicy(max_retries, backoff_base, backoff_max)  # 429/503: exactly Retry-After
        self._sleep = sleep or threading.Event().wait
        self._tokens = EntraTokenProvider(tenant_id, client_id, client_secret, GRAPH_RESOURCE,
                                              authority_host=authority_host, verify=verify, timeout=timeout)
        context: bool | ssl.SSLContext = (ssl.create_default_context(cafile=verify) if isinstance(verify, str)
                                          else verify)
        timeouts = httpx.Timeout(timeout, connect=min(timeout, 30.0))
        self._api = httpx.Client(auth=BearerAuth(self._tokens), verify=context, timeout=timeouts,
                                 follow_redirects=False, headers={"Accept": "application/json"})
        # Upload and download URLs are pre-authenticated: this client never carries a bearer token.
        self._plain = httpx.Client(verify=context, timeout=timeouts, follow_redirects=False)
        self._lock = threading.Lock()
        self._drive: tuple[str, str] | None = None  # (drive id, library webUrl)
        self._folders: dict[str, str] = {}  # folder path (casefolded) -> item id

    def __repr__(self) -> str:
        return f"GraphDrive(site=https://{self.site_host}{self.site_path}, library={self.library!r})"

    def __enter__(self) -> GraphDrive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._api.close()
        self._plain.close()
        self._tokens.close()

    # -- library -------------------------------------------------------------------------------------------------
    def _library(self) -> tuple[str, str]:
        with self._lock:
            if self._drive is None:
                site = self._call("GET", f"{self.graph_url}/sites/{self.site_host}:{quote(self.site_path)}",
                                  operation="site").json()
                drives = self._call("GET", f"{self.graph_url}/sites/{site['id']}/drives",
                                    operation="drives").json().get("value", [])
                match = next((d for d in drives if d.get("name", "").casefold() == self.library.casefold()), None)
                if match is None:
                    raise GraphNotFound(404, "itemNotFound", None, operation="library")
                self._drive = (match["id"], match["webUrl"])
            return self._drive

    @property
    def drive_id(self) -> str:
        return self._library()[0]

    @property
    def library_url(self) -> str:
        """webUrl of the library (the parent of each contact's ``sharepointdocumentlocation``)."""
        return self._library()[1]

    def name_problem(self, folder: str, name: str) -> str | None:
        """Why SharePoint would refuse ``name`` in ``folder`` (see :func:`valid_sharepoint_name`), or ``None``.
        Counts the whole decoded path from the site's server-relative URL against the 400-character limit."""
        segments = [s for s in folder.split("/") if s]
        for segment in segments:
            reason = valid_sharepoint_name(segment)
            if reason:
                return reason
        full = "/".join([unquote(urlsplit(self.library_url).path), *segments, name])
        return valid_sharepoint_name(name, path_length=len(full))

    # -- folders -------------------------------------------------------------------------------------------------
    def ensure_folder(self, folder: str) -> str:
        """The item id of ``folder`` (``"a"`` or ``"a/b"``) under the library root, created if missing."""
        return self.make_folder(folder)[0]

    def make_folder(self, folder: str) -> tuple[str, bool]:
        """:meth:`ensure_folder`, and whether this call created the (last) folder: what the audit log records,
        so a rollback removes only folders the migration made."""
        created = False
        drive_id = self.drive_id
        segments = [s for s in folder.split("/") if s]
        if not segments:
            if "" not in self._folders:
                self._folders[""] = self._call("GET", f"{self.graph_url}/drives/{drive_id}/root",
                                               operation="root").json()["id"]
            return self._folders[""], False
        parent: str | None = None
        for depth in range(1, len(segments) + 1):
            key = "/".join(segments[:depth]).casefold()
            if key in self._folders:
                parent = self._folders[key]
                continue
            reason = valid_sharepoint_name(segments[depth - 1])
            if reason:
                raise ValueError(f"folder name refused by SharePoint's rules: {reason}")
            item = self._get_item("/".join(segments[:depth]))
            created = item is None
            if item is None:
                item = self._create_folder(drive_id, parent, segments[depth - 1], "/".join(segments[:depth]))
            elif "folder" not in item:
                raise GraphConflict(409, "nameAlreadyExists", None, operation="ensure_folder")
            self._folders[key] = parent = item["id"]
        return parent, created  # type: ignore[return-value]

    def _create_folder(self, drive_id: str, parent: str | None, name: str, path: str) -> dict:
        url = (f"{self.graph_url}/drives/{drive_id}/items/{parent}/children" if parent
               else f"{self.graph_url}/drives/{drive_id}/root/children")
        body = {"name": name, "folder": {}, "@microsoft.graph.conflictBehavior": "fail"}
        try:
            return self._call("POST", url, json=body, operation="create_folder", expect=(201,)).json()
        except GraphConflict:  # created meanwhile (another worker, or a retried POST that had gone through)
            item = self._get_item(path)
            if item is None or "folder" not in item:
                raise
            return item

    def _get_item(self, path: str) -> dict | None:
        try:
            return self._call("GET", f"{self.graph_url}/drives/{self.drive_id}/root:/{_quote_path(path)}",
                              operation="get_item").json()
        except GraphNotFound:
            return None

    # -- files ---------------------------------------------------------------------------------------------------
    def find(self, folder: str, name: str) -> DriveFile | None:
        """The file ``name`` in ``folder``, or ``None``."""
        item = self._get_item("/".join([*(s for s in folder.split("/") if s), name]))
        return DriveFile.from_json(item) if item is not None and "file" in item else None

    def upload(self, folder: str, name: str, content: Callable[[int, int], bytes], size: int) -> DriveFile:
        """Upload ``size`` bytes read by ``content(offset, length)`` as ``folder/name``, replacing a file of that
        name; the stored size and quickXorHash are checked against the bytes sent. Raises :class:`ValueError`
        (with the named reason, never the name) when SharePoint's naming rules refuse the name."""
        if size < 0:
            raise ValueError("size must be >= 0")
        reason = self.name_problem(folder, name)
        if reason:
            raise ValueError(f"file name refused by SharePoint's rules: {reason}")
        parent = self.ensure_folder(folder)
        target = f"{self.graph_url}/drives/{self.drive_id}/items/{parent}:/{quote(name, safe='')}:"
        hasher = _Hasher(content)
        if size <= SIMPLE_UPLOAD_MAX:
            data = _read(content, 0, size)
            hasher.feed(0, data)
            item = self._call("PUT", f"{target}/content", content=data, operation="upload",
                              params={"@microsoft.graph.conflictBehavior": "replace"},
                              headers={"Content-Type": "application/octet-stream"}, expect=(200, 201)).json()
        else:
            item = self._session_upload(target, content, size, hasher, folder, name)
        stored = DriveFile.from_json(item)
        expected = hasher.result(size)
        if stored.size != size or (stored.quick_xor_hash is not None and stored.quick_xor_hash != expected):
            raise UploadVerificationError(None, "hashMismatch", None, operation="upload")
        return stored

    def _session_upload(self, target: str, content: Callable[[int, int], bytes], size: int, hasher: _Hasher,
                        folder: str, name: str) -> dict:
        session = self._call("POST", f"{target}/createUploadSession", operation="create_upload_session",
                             json={"item": {"@microsoft.graph.conflictBehavior": "replace"}}).json()
        upload_url, offset, failures = session["uploadUrl"], 0, 0
        while True:
            length = min(self.chunk_size, size - offset)
            data = _read(content, offset, length)
            try:
                response: httpx.Response | None = self._plain.put(
                    upload_url, content=data,
                    headers={"Content-Range": f"bytes {offset}-{offset + length - 1}/{size}"})
            except httpx.TransportError as e:
                log.info("upload fragment at %d: %s; resuming", offset, type(e).__name__)
                response = None
            if response is not None and response.status_code in (200, 201):
                hasher.feed(offset, data)
                return response.json()
            if response is not None and response.status_code == 202:
                hasher.feed(offset, data)
                offset, failures = _next_offset(response.json(), size), 0
                continue
            if response is not None and response.status_code not in _RESUME | {429}:
                error = _error(response, "upload_fragment")
                if response.status_code != 409:  # on a name conflict Graph keeps the session for a retry
                    self._cancel(upload_url)
                raise error
            failures += 1
            if failures > self.retry.max_retries:
                self._cancel(upload_url)
                raise _error(response, "upload_fragment") if response is not None else \
                    GraphError(None, None, None, operation="upload_fragment")
            self._sleep(self._wait(failures, response))
            try:
                status = self._call("GET", upload_url, operation="upload_status", client=self._plain).json()
            except GraphNotFound:
                # The session is gone: the last fragment went through but its answer was lost, or it expired.
                done = self.find(folder, name)
                if done is not None and offset + length == size:
                    return {"id": done.id, "name": done.name, "size": done.size, "webUrl": done.web_url,
                            "file": {"hashes": {"quickXorHash": done.quick_xor_hash}}}
                raise
            offset = _next_offset(status, size)

    def _cancel(self, upload_url: str) -> None:
        with contextlib.suppress(httpx.TransportError):  # else the session expires by itself
            self._plain.delete(upload_url)

    def download(self, item_id: str) -> Iterator[bytes]:
        """The file's bytes, in pieces: Graph answers ``/content`` with 302 to a pre-authenticated URL."""
        redirect = self._call("GET", f"{self.graph_url}/drives/{self.drive_id}/items/{item_id}/content",
                              operation="download", expect=(302,))
        location = redirect.headers.get("Location")
        if not location:
            raise GraphError(302, None, None, operation="download")
        with self._plain.stream("GET", location) as response:
            if response.status_code != 200:
                response.read()
                raise _error(response, "download")
            yield from response.iter_bytes(1 << 20)

    def delete(self, item_id: str) -> None:
        """Delete an item (a folder with its contents); already gone is fine, so rollback is idempotent."""
        try:
            self._call("DELETE", f"{self.graph_url}/drives/{self.drive_id}/items/{item_id}", operation="delete",
                       expect=(204,))
        except GraphNotFound:
            return
        with self._lock:
            self._folders = {k: v for k, v in self._folders.items() if v != item_id}

    def delete_folder_if_empty(self, item_id: str) -> str:
        """Delete a folder only if it holds nothing (a person may have added files since the migration made it):
        ``"deleted"``, ``"not_empty"`` or ``"absent"``."""
        try:
            item = self._call("GET", f"{self.graph_url}/drives/{self.drive_id}/items/{item_id}",
                              operation="get_item").json()
        except GraphNotFound:
            return "absent"
        if (item.get("folder") or {}).get("childCount", 0):
            return "not_empty"
        self.delete(item_id)
        return "deleted"

    # -- HTTP ----------------------------------------------------------------------------------------------------
    def _call(self, method: str, url: str, *, operation: str, expect: tuple[int, ...] = (200,),
              client: httpx.Client | None = None, **kwargs) -> httpx.Response:
        client = client or self._api
        for attempt in range(self.retry.max_retries + 1):
            try:
                response = client.request(method, url, **kwargs)
            except httpx.TransportError as e:
                if self.retry.gives_up_after(attempt):
                    raise GraphError(None, None, None, operation=operation) from e
                self._sleep(self._wait(attempt + 1, None))
                continue
            if response.status_code in expect:
                return response
            if response.status_code in _RETRY and not self.retry.gives_up_after(attempt):
                self._sleep(self._wait(attempt + 1, response))
                continue
            raise _error(response, operation)
        raise AssertionError("unreachable")

    def _wait(self, attempt: int, response: httpx.Response | None) -> float:
        return self.retry.wait(attempt, parse_retry_after(response.headers.get("Retry-After")) if response else None)


class _Hasher:
    """quickXorHash of the bytes in order; catches up through ``content`` if the server moved past us (a
    fragment stored although its answer was lost)."""

    def __init__(self, content: Callable[[int, int], bytes]):
        self._content, self._hash, self._done = content, QuickXorHash(), 0

    def feed(self, offset: int, data: bytes) -> None:
        if offset > self._done:
            self._catch_up(offset)
        if offset == self._done:
            self._hash.update(data)
            self._done += len(data)

    def _catch_up(self, to: int) -> None:
        while self._done < to:
            piece = _read(self._content, self._done, min(1 << 22, to - self._done))
            self._hash.update(piece)
            self._done += len(piece)

    def result(self, size: int) -> str:
        self._catch_up(size)
        return self._hash.b64digest()


def _read(content: Callable[[int, int], bytes], offset: int, length: int) -> bytes:
    data = content(offset, length)
    if len(data) != length:
        raise ValueError(f"content({offset}, {length}) returned {len(data)} bytes")
    return data


def _next_offset(status: dict, size: int) -> int:
    ranges = status.get("nextExpectedRanges") or []
    if not ranges:
        return size
    return int(str(ranges[0]).split("-", 1)[0])


def _quote_path(path: str) -> str:
    return "/".join(quote(s, safe="") for s in path.split("/") if s)


def _error(response: httpx.Response, operation: str) -> GraphError:
    try:
        error = response.json().get("error") or {}
    except ValueError:
        error = {}
    inner = error.get("innerError") or error.get("innererror") or {}
    request_id = inner.get("request-id") or response.headers.get("request-id")
    cls = {404: GraphNotFound, 409: GraphConflict, 429: GraphThrottled, 503: GraphThrottled}.get(
        response.status_code, GraphError)
    return cls(response.status_code, error.get("code"), error.get("message"), request_id, operation=operation,
               inner_code=inner.get("code"))
