"""Microsoft Graph v1.0 stand-in for SharePoint document libraries, as a plain WSGI app (in-process under
``httpx.WSGITransport``, or served by :func:`.server.serve_graph`). The subset the documents loader uses:

    GET    /v1.0/sites/{hostname}:/{server-relative-path}     site (id "host,siteGuid,webGuid", webUrl)
    GET    /v1.0/sites/{site-id}[/drives]                      site; its document libraries
    GET    /v1.0/drives/{drive-id}[/root]                      drive; its root folder
    GET    /v1.0/drives/{d}/root:/{path}  | /items/{id}[:/{path}]          driveItem
    GET    /v1.0/drives/{d}/items/{id}/children | .../root:/{path}:/children
    POST   /v1.0/drives/{d}/items/{parent}/children            new folder (conflictBehavior fail|replace|rename)
    PUT    /v1.0/drives/{d}/items/{parent}:/{name}:/content    simple upload (201 new, 200 replaced)
    PUT    /v1.0/drives/{d}/items/{id}/content                 replace a file's content
    POST   /v1.0/drives/{d}/items/{parent}:/{name}:/createUploadSession
    PUT|GET|DELETE  <uploadUrl>                                fragments, status (resume), cancel: no bearer token
    GET    /v1.0/drives/{d}/items/{id}/content                 302 to a pre-authenticated download URL (Range ok)
    DELETE /v1.0/drives/{d}/items/{id}                         204, folders with their contents

Optional throttling (:class:`Throttle`): 429 ``activityLimitReached`` with ``Retry-After`` over a per-app budget.

Sources (Microsoft Learn / OneDrive/onedrive-api-docs, checked with the search tool): driveitem-put-content (250 MB
simple-upload limit), driveitem_createuploadsession (fragments < 60 MiB, in order, multiples of 320 KiB; 202 with
nextExpectedRanges; 201/200 with the driveItem on the last; 416 for a fragment already received; GET status;
DELETE cancels with 204; no Authorization header on the uploadUrl), driveitem_get_content (302 Found to a
pre-authenticated URL), concepts/errors (codes invalidRange, invalidRequest, itemNotFound, nameAlreadyExists and
inner codes fragmentOverlap, fragmentOutOfOrder, fragmentLengthMismatch, maxFragmentLengthExceeded,
maxFileSizeExceeded, pathIsTooLong, invalidPath, uploadSessionNotFound). Where a status/code pairing is not
documented it is marked "[unverified]" at the use site. Messages carry ids and sizes only, never names.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qs, quote

from senseimig_dagster.graph.names import MAX_PATH_LENGTH, valid_sharepoint_name
from senseimig_dagster.sandbox.graph.store import DriveStore, Item, NameTaken, Session

GRAPH_RESOURCE = "https://graph.microsoft.com"
BASE_PATH = "/v1.0"
UPLOAD_PATH = "/_upload/"
DOWNLOAD_PATH = "/_download/"
FRAGMENT_QUANTUM = 327_680  # 320 KiB: every fragment but the last is a multiple of it
MAX_FRAGMENT = 60 * 1024 * 1024  # docs: "less than 60 MiB" per request; 60 MiB itself is accepted here [unverified]
SIMPLE_UPLOAD_LIMIT = 250 * 1024 * 1024  # driveitem-put-content: "only supports files up to 250 MB"
MAX_FILE_SIZE = 250 * 1024 ** 3  # SharePoint Online's per-file limit, 250 GB [community]
SESSION_LIFETIME = 3600.0  # seconds, extended by each fragment; the real value isn't documented [unverified]
DOWNLOAD_LIFETIME = 300.0  # docs: pre-authenticated download URLs are "only valid for a short period (a few minutes)"
CONFLICT_BEHAVIORS = ("fail", "replace", "rename")
_ACTIONS = ("content", "createUploadSession", "children")
_REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 206: "Partial Content", 302: "Found",
            400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            409: "Conflict", 411: "Length Required", 413: "Request Entity Too Large",
            416: "Requested Range Not Satisfiable", 429: "Too Many Requests", 500: "Internal Server Error"}
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")

StartResponse = Callable[..., object]
TokenValidator = Callable[[str], object | None]  # EntraStandIn.token_info
Response = tuple[int, list[tuple[str, str]], bytes]


@dataclass(frozen=True)
class SiteSpec:
    """A SharePoint site to provision: ``hostname`` + server-relative ``path`` with document ``libraries``.
    Dynamics 365's SharePoint integration creates one library per enabled table, named by its logical name."""

    hostname: str = "contoso.sharepoint.com"
    path: str = "/sites/dental"
    libraries: tuple[str, ...] = ("Documents", "contact")


@dataclass(frozen=True)
class Throttle:
    """At most ``limit`` API requests per app in each fixed ``window`` of seconds; more get 429 with Retry-After
    (the seconds left in the window). Graph's real budgets vary by tenant size and aren't modelled [inference]."""

    limit: int
    window: float


class GraphFault(Exception):
    """An error Graph would return: status, top-level code, message, optional inner (detailed) code."""

    def __init__(self, status: int, code: str, message: str, inner: str | None = None,
                 headers: Iterable[tuple[str, str]] = ()):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.inner = status, code, message, inner
        self.headers = list(headers)


def _not_found(what: str = "The resource could not be found.") -> GraphFault:
    return GraphFault(404, "itemNotFound", what)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class GraphStandIn:
    """WSGI app over ``store``. ``token_validator`` (e.g. ``EntraStandIn.token_info``) checks bearer tokens, whose
    resource must be ``https://graph.microsoft.com``; ``None`` turns auth off (in-process tests only)."""

    def __init__(self, store: DriveStore, *, token_validator: TokenValidator | None,
                 sites: Iterable[SiteSpec] = (SiteSpec(),), max_file_size: int = MAX_FILE_SIZE,
                 simple_upload_limit: int = SIMPLE_UPLOAD_LIMIT, session_lifetime: float = SESSION_LIFETIME,
                 download_lifetime: float = DOWNLOAD_LIFETIME, throttle: Throttle | None = None) -> None:
        self.store = store
        self.throttle = throttle
        self._budget: dict[str, tuple[float, int]] = {}  # app -> (window start, requests in it)
        self.token_validator = token_validator
        self.max_file_size, self.simple_upload_limit = max_file_size, simple_upload_limit
        self.session_lifetime, self.download_lifetime = session_lifetime, download_lifetime
        for spec in sites:
            store.ensure_site(spec.hostname, spec.path, spec.libraries)
        self._downloads: dict[str, tuple[str, str, float]] = {}  # token -> (drive id, item id, expiry)
        self._lock = threading.Lock()
        self.stats = {"requests": 0, "fragments": 0, "uploads_completed": 0}

    # -- WSGI ----------------------------------------------------------------------------------------------------
    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        request_id = str(uuid.uuid4())
        client_request_id = environ.get("HTTP_CLIENT_REQUEST_ID") or request_id
        with self._lock:
            self.stats["requests"] += 1
        try:
            status, headers, body = self._route(environ)
        except GraphFault as e:
            inner = {"date": _iso(self.store.clock()).split(".")[0], "request-id": request_id,
                     "client-request-id": client_request_id}
            if e.inner:
                inner["code"] = e.inner
            payload = {"error": {"code": e.code, "message": e.message, "innerError": inner}}
            status, headers, body = e.status, [("Content-Type", "application/json"), *e.headers], \
                json.dumps(payload).encode()
        headers = [*headers, ("request-id", request_id), ("client-request-id", client_request_id),
                   ("Content-Length", str(len(body)))]
        start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
        return [body]

    def _route(self, environ: dict) -> Response:
        # PEP 3333: PATH_INFO is percent-decoded and carried as latin-1; names are UTF-8.
        path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
        if path.startswith(UPLOAD_PATH):
            return self._upload_url(environ, path[len(UPLOAD_PATH):])
        if path.startswith(DOWNLOAD_PATH):
            return self._download_url(environ, path[len(DOWNLOAD_PATH):])
        if not path.startswith(BASE_PATH + "/"):
            raise GraphFault(400, "invalidRequest", "Invalid version.")  # [memory] Graph's text for a bad version
        self._admit(self._authenticate(environ))
        return self._api(environ, path[len(BASE_PATH):], environ.get("REQUEST_METHOD", "GET"))

    def _admit(self, app: str) -> None:
        if self.throttle is None:
            return
        now = self.store.clock()
        with self._lock:
            start, count = self._budget.get(app, (now, 0))
            if now - start >= self.throttle.window:
                start, count = now, 0
            self._budget[app] = (start, count + 1)
        if count >= self.throttle.limit:
            wait = max(1, math.ceil(start + self.throttle.window - now))
            # errors doc: 429 Too Many Requests, code activityLimitReached, inner throttledRequest, Retry-After.
            raise GraphFault(429, "activityLimitReached", "The app has been throttled.", "throttledRequest",
                             headers=[("Retry-After", str(wait))])

    def _authenticate(self, environ: dict) -> str:
        """The calling app (the token's client id)."""
        if self.token_validator is None:
            return "anonymous"
        header = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, token = header.partition(" ")
        # Graph's 401 code and texts [memory]: "Access token is empty." / "...validation failure...".
        if not token or scheme.lower() != "bearer":
            raise GraphFault(401, "InvalidAuthenticationToken", "Access token is empty.")
        info = self.token_validator(token.strip())
        if info is None or getattr(info, "resource", None) != GRAPH_RESOURCE:
            raise GraphFault(401, "InvalidAuthenticationToken",
                             "Access token validation failure. Invalid audience." if info is not None
                             else "Lifetime validation failed, the token is expired.")
        return str(getattr(info, "client_id", "anonymous"))

    # -- API ------------------------------------------------------------------------------------------------------
    def _api(self, environ: dict, path: str, method: str) -> Response:
        m = re.fullmatch(r"/sites/([^/:,]+):(/[^:]*?):?", path)
        if m:
            _only(method, "GET")
            site = self.store.site_by_path(m[1], m[2])
            if site is None:
                raise _not_found("Requested site could not be found")  # [memory]
            return _json(200, self._site_json(site))
        m = re.fullmatch(r"/sites/([^/]+?)(/drives)?", path)
        if m:
            _only(method, "GET")
            site = self.store.site(m[1])
            if site is None:
                raise _not_found("Requested site could not be found")
            if m[2]:
                return _json(200, {"value": [self._drive_json(d) for d in self.store.drives(site.id)]})
            return _json(200, self._site_json(site))
        m = re.fullmatch(r"/drives/([^/]+)(/.*)?", path)
        if m is None:
            raise GraphFault(400, "invalidRequest", "Resource not found for the segment.")
        drive = self.store.drive(m[1])
        if drive is None:
            raise _not_found()
        rest = m[2] or ""
        if not rest:
            _only(method, "GET")
            return _json(200, self._drive_json(drive))
        return self._items(environ, drive.id, rest, method)

    def _items(self, environ: dict, drive_id: str, rest: str, method: str) -> Response:
        drive = self.store.drive(drive_id)
        assert drive is not None
        m = re.match(r"/root|/items/([^/:]+)", rest)
        if m is None:
            raise GraphFault(400, "invalidRequest", "Resource not found for the segment.")
        base = self.store.item(drive_id, m[1]) if m[1] else self.store.item(drive_id, drive.root_id)
        if base is None:
            raise _not_found()
        rest = rest[m.end():]
        rel_path, action = None, None
        if rest.startswith(":"):  # path addressing: ':/a/b' then ':' or ':/action'
            body = rest[1:]
            tail = body.rsplit(":/", 1)
            if len(tail) == 2 and tail[1] in _ACTIONS:
                body, action = tail
            elif body.endswith(":"):
                body = body[:-1]
            rel_path = body.strip("/")
        elif rest in ("", "/"):
            action = None
        elif rest.lstrip("/") in _ACTIONS:
            action = rest.lstrip("/")
        else:
            raise GraphFault(400, "invalidRequest", "Resource not found for the segment.")

        if rel_path and method in ("PUT", "POST") and action in ("content", "createUploadSession"):
            *parents, name = rel_path.split("/")
            parent = self._walk(base, parents)
            if not parent.is_folder:
                raise GraphFault(400, "invalidRequest", "The parent is not a folder.")  # [unverified]
            self._check_name(name, parent)
            if action == "content":
                return self._simple_upload(environ, parent, name)
            return self._create_session(environ, parent, name)
        item = self._walk(base, rel_path.split("/") if rel_path else [])
        if action == "children":
            if method == "GET":
                return _json(200, {"value": [self._item_json(c) for c in self.store.children(drive_id, item.id)]})
            _only(method, "POST")
            return self._create_folder(environ, item)
        if action == "content":
            if method == "GET":
                return self._download_redirect(environ, item)
            _only(method, "PUT")
            if item.is_folder:
                raise GraphFault(400, "invalidRequest", "Cannot upload content to a folder.")  # [unverified]
            parent = self.store.item(drive_id, item.parent_id or "")
            assert parent is not None
            return self._simple_upload(environ, parent, item.name, conflict="replace")
        if action == "createUploadSession":
            raise GraphFault(400, "notSupported", "Upload sessions are created on a parent and a file name here.")
        if method == "GET":
            return _json(200, self._item_json(item))
        _only(method, "DELETE")
        if item.parent_id is None:
            raise GraphFault(403, "accessDenied", "The root folder cannot be deleted.")  # [unverified]
        self.store.delete_item(drive_id, item.id)
        return 204, [], b""

    def _walk(self, base: Item, names: list[str]) -> Item:
        item = base
        for name in names:
            if not name:
                continue
            child = self.store.child(item.drive_id, item.id, name) if item.is_folder else None
            if child is None:
                raise _not_found()
            item = child
        return item

    def _check_name(self, name: str, parent: Item) -> None:
        reason = valid_sharepoint_name(name)
        if reason is not None and reason != "too_long":
            # Top-level invalidRequest with inner invalidPath ("Name contains invalid characters", errors doc);
            # the exact pairing and message SharePoint returns are [unverified].
            raise GraphFault(400, "invalidRequest", f"The provided name is not valid ({reason}).", "invalidPath")
        if len(self._server_relative(parent, name)) > MAX_PATH_LENGTH or reason == "too_long":
            # "Paths ... cannot exceed 400 characters" (decoded, from the site's server-relative URL) [community];
            # inner pathIsTooLong (errors doc); the status/code pairing is [unverified].
            raise GraphFault(400, "invalidRequest", "The path is too long.", "pathIsTooLong")

    def _server_relative(self, parent: Item, name: str) -> str:
        drive = self.store.drive(parent.drive_id)
        site = self.store.site(drive.site_id) if drive else None
        library = "Shared Documents" if drive and drive.name == "Documents" else (drive.name if drive else "")
        return "/".join([site.path if site else "", library, *self.store.path_of(parent), name])

    # -- folders and simple upload ---------------------------------------------------------------------------
    def _create_folder(self, environ: dict, parent: Item) -> Response:
        if not parent.is_folder:
            raise GraphFault(400, "invalidRequest", "The parent is not a folder.")  # [unverified]
        body = _read_json(environ)
        name = body.get("name")
        if not isinstance(name, str) or "folder" not in body:
            raise GraphFault(400, "invalidRequest", "A folder needs 'name' and a 'folder' facet.")
        conflict = _conflict(body.get("@microsoft.graph.conflictBehavior"), default="fail")  # [memory] default
        self._check_name(name, parent)
        existing = self.store.child(parent.drive_id, parent.id, name)
        if existing is not None:
            if conflict == "fail":
                raise GraphFault(409, "nameAlreadyExists", "The specified item name already exists.")
            if conflict == "rename":
                name = self.store.free_name(parent.drive_id, parent.id, name)
            else:  # replace: the old item goes, a new (empty) folder takes its name
                self.store.delete_item(parent.drive_id, existing.id)
        try:
            folder = self.store.create_folder(parent.drive_id, parent.id, name)
        except NameTaken as e:  # lost a race with a concurrent create
            raise GraphFault(409, "nameAlreadyExists", "The specified item name already exists.") from e
        return _json(201, self._item_json(folder))

    def _simple_upload(self, environ: dict, parent: Item, name: str, conflict: str | None = None) -> Response:
        length = _content_length(environ)
        if length > min(self.simple_upload_limit, self.max_file_size):
            # 413 "The request size exceeds the maximum limit" (errors doc); inner maxFileSizeExceeded [unverified].
            raise GraphFault(413, "invalidRequest", f"Simple upload is limited to {self.simple_upload_limit} bytes.",
                             "maxFileSizeExceeded")
        data = environ["wsgi.input"].read(length) if length else b""
        if len(data) != length:
            raise GraphFault(400, "invalidRequest", "The request body is shorter than its Content-Length.")
        query = parse_qs(environ.get("QUERY_STRING", ""))
        conflict = conflict or _conflict((query.get("@microsoft.graph.conflictBehavior") or [None])[-1],
                                         default="replace")  # PUT content overwrites by default [memory]
        try:
            item, created = self.store.put_file(parent.drive_id, parent.id, name, data, conflict)
        except NameTaken as e:
            raise GraphFault(409, "nameAlreadyExists", "The specified item name already exists.") from e
        return _json(201 if created else 200, self._item_json(item))

    # -- upload sessions -------------------------------------------------------------------------------------------
    def _create_session(self, environ: dict, parent: Item, name: str) -> Response:
        body = _read_json(environ)
        item = body.get("item") or {}
        if not isinstance(item, dict):
            raise GraphFault(400, "invalidRequest", "'item' must be an object.")
        conflict = _conflict(item.get("@microsoft.graph.conflictBehavior"), default="replace")  # [memory] default
        existing = self.store.child(parent.drive_id, parent.id, name)
        if existing is not None and (conflict == "fail" or (existing.is_folder and conflict == "replace")):
            raise GraphFault(409, "nameAlreadyExists", "The specified item name already exists.")
        session = self.store.create_session(parent.drive_id, parent.id, name, conflict, self.session_lifetime)
        return _json(200, {"uploadUrl": f"{_base_url(environ)}{UPLOAD_PATH}{session.token}",
                           "expirationDateTime": _iso(session.expires), "nextExpectedRanges": ["0-"]})

    def _upload_url(self, environ: dict, token: str) -> Response:
        method = environ.get("REQUEST_METHOD", "GET")
        if environ.get("HTTP_AUTHORIZATION"):
            # Docs: "Including the Authorization header when issuing the PUT call may result in a HTTP 401
            # Unauthorized response." The stand-in always refuses it, so a client that sends it fails here first.
            raise GraphFault(401, "unauthenticated", "The upload URL is pre-authenticated; send no Authorization.")
        session = self.store.session(token)
        if session is None:  # unknown, cancelled, completed or expired
            raise GraphFault(404, "itemNotFound", "The upload session was not found.", "uploadSessionNotFound")
        if method == "GET":
            return _json(200, self._session_status(session))
        if method == "DELETE":
            self.store.drop_session(token)
            return 204, [], b""
        _only(method, "PUT")
        return self._fragment(environ, session)

    def _session_status(self, session: Session) -> dict:
        return {"expirationDateTime": _iso(session.expires), "nextExpectedRanges": [f"{session.received}-"]}

    def _fragment(self, environ: dict, session: Session) -> Response:
        m = _CONTENT_RANGE.fullmatch(environ.get("HTTP_CONTENT_RANGE", "").strip())
        if m is None:
            raise GraphFault(400, "invalidRequest", "Content-Range 'bytes start-end/total' is required.")
        start, end, total = int(m[1]), int(m[2]), int(m[3])
        length = _content_length(environ)
        if end < start or end >= total or length != end - start + 1:
            raise GraphFault(400, "invalidRequest", "Content-Range and Content-Length disagree.")  # [unverified]
        if length > MAX_FRAGMENT:
            raise GraphFault(413, "invalidRequest", f"A fragment may hold at most {MAX_FRAGMENT} bytes.",
                             "maxFragmentLengthExceeded")  # status/code pairing [unverified]
        if total > self.max_file_size:
            raise GraphFault(413, "invalidRequest", f"The file exceeds the maximum size of {self.max_file_size} "
                             "bytes.", "maxFileSizeExceeded")  # status/code pairing [unverified]
        if session.total is not None and total != session.total:
            raise GraphFault(400, "invalidRequest", "Declared total size differs from the upload session's.",
                             "fragmentLengthMismatch")  # docs: "If a byte range declares a different file size, the
            #                                             request will fail"; status [unverified]
        if start < session.received:
            # Docs: a fragment the server had already received gets 416 Requested Range Not Satisfiable.
            raise GraphFault(416, "invalidRange", "Uploaded fragment overlaps with existing data.", "fragmentOverlap")
        if start > session.received:
            # Docs: "Uploading fragments out of order will result in an error"; 416 inferred from invalidRange.
            raise GraphFault(416, "invalidRange", "Uploaded fragment is out of order.", "fragmentOutOfOrder")
        last = end + 1 == total
        if not last and length % FRAGMENT_QUANTUM:
            # Docs: sizes not a multiple of 320 KiB "will result in errors committing some files"; the stand-in
            # refuses at once so the mistake shows on every file [unverified: status and code].
            raise GraphFault(400, "invalidRequest", f"A fragment other than the last must be a multiple of "
                             f"{FRAGMENT_QUANTUM} bytes.")
        data = environ["wsgi.input"].read(length)
        if len(data) != length:  # docs: bytes of a request that fails before it completes are ignored
            raise GraphFault(400, "invalidRequest", "The request body is shorter than its Content-Length.")
        session = self.store.add_fragment(session.token, start, data, total, self.session_lifetime)
        with self._lock:
            self.stats["fragments"] += 1
        if not last:
            return _json(202, self._session_status(session))
        try:
            item, created = self.store.put_file(session.drive_id, session.parent_id, session.name,
                                                self.store.session_bytes(session.token), session.conflict)
        except NameTaken as e:
            # Docs ("Handling upload conflicts"): 409 on the last range; the session is kept until it expires.
            raise GraphFault(409, "nameAlreadyExists", "Another item exists with the same name.") from e
        self.store.drop_session(session.token)
        with self._lock:
            self.stats["uploads_completed"] += 1
        return _json(201 if created else 200, self._item_json(item))

    # -- download ------------------------------------------------------------------------------------------------
    def _download_redirect(self, environ: dict, item: Item) -> Response:
        if item.is_folder:
            raise GraphFault(400, "invalidRequest", "Only items with a file facet can be downloaded.")  # [unverified]
        token = secrets.token_urlsafe(32)
        now = self.store.clock()
        with self._lock:
            self._downloads = {t: v for t, v in self._downloads.items() if v[2] > now}
            self._downloads[token] = (item.drive_id, item.id, now + self.download_lifetime)
        return 302, [("Location", f"{_base_url(environ)}{DOWNLOAD_PATH}{token}")], b""

    def _download_url(self, environ: dict, token: str) -> Response:
        _only(environ.get("REQUEST_METHOD", "GET"), "GET")
        with self._lock:
            entry = self._downloads.get(token)
        if entry is None or entry[2] <= self.store.clock():
            raise _not_found("The download URL is unknown or has expired.")  # real status [unverified]
        item = self.store.item(entry[0], entry[1])
        if item is None:
            raise _not_found()
        data = self.store.content(item.id)
        headers = [("Content-Type", item.mime or "application/octet-stream"), ("Accept-Ranges", "bytes")]
        rng = _RANGE.fullmatch(environ.get("HTTP_RANGE", "").strip())
        if not rng or not (rng[1] or rng[2]):
            return 200, headers, data
        size = len(data)
        if rng[1]:
            first, last = int(rng[1]), min(int(rng[2]) if rng[2] else size - 1, size - 1)
        else:  # suffix range: the last n bytes
            first, last = max(size - int(rng[2]), 0), size - 1
        if first >= size or first > last:
            raise GraphFault(416, "invalidRange", "The requested range is not satisfiable.",
                             headers=[("Content-Range", f"bytes */{size}")])
        return 206, [*headers, ("Content-Range", f"bytes {first}-{last}/{size}")], data[first:last + 1]

    # -- JSON shapes -------------------------------------------------------------------------------------------
    def _site_json(self, site) -> dict:
        name = site.path.rstrip("/").rsplit("/", 1)[-1] or site.hostname
        return {"id": site.id, "name": name, "displayName": name, "webUrl": site.web_url,
                "createdDateTime": _iso(site.created), "siteCollection": {"hostname": site.hostname}}

    def _drive_json(self, drive) -> dict:
        return {"id": drive.id, "name": drive.name, "driveType": "documentLibrary", "webUrl": drive.web_url,
                "createdDateTime": _iso(drive.created), "description": ""}

    def _item_json(self, item: Item) -> dict:
        drive = self.store.drive(item.drive_id)
        assert drive is not None
        names = self.store.path_of(item)
        out: dict = {
            "id": item.id, "name": item.name, "size": item.size,
            "eTag": f'"{{{item.uid}}},{item.version}"', "cTag": f'"c:{{{item.uid}}},{item.version}"',
            "webUrl": drive.web_url + "".join("/" + quote(n) for n in names),
            "createdDateTime": _iso(item.created), "lastModifiedDateTime": _iso(item.modified),
        }
        if item.parent_id is not None:
            parent_path = "/".join(quote(n) for n in names[:-1])
            out["parentReference"] = {"driveId": drive.id, "driveType": "documentLibrary", "id": item.parent_id,
                                      "path": f"/drives/{drive.id}/root:" + (f"/{parent_path}" if parent_path else ""),
                                      "siteId": drive.site_id}
        else:
            out["root"] = {}
        if item.is_folder:
            out["folder"] = {"childCount": self.store.child_count(item.drive_id, item.id)}
        else:
            out["file"] = {"mimeType": item.mime, "hashes": {"quickXorHash": item.qxh}}
        return out


def _only(method: str, allowed: str) -> None:
    if method != allowed:
        raise GraphFault(405, "invalidRequest", f"The HTTP method '{method}' is not allowed here.")


def _conflict(value: object, default: str) -> str:
    if value is None:
        return default
    if value not in CONFLICT_BEHAVIORS:
        raise GraphFault(400, "invalidRequest", "Invalid @microsoft.graph.conflictBehavior.")
    return str(value)


def _content_length(environ: dict) -> int:
    try:
        return int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise GraphFault(400, "invalidRequest", "Invalid Content-Length.") from None


def _read_json(environ: dict) -> dict:
    length = _content_length(environ)
    raw = environ["wsgi.input"].read(length) if length else b""
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise GraphFault(400, "invalidRequest", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise GraphFault(400, "invalidRequest", "The request body must be a JSON object.")
    return body


def _json(status: int, payload: dict) -> Response:
    return status, [("Content-Type", "application/json")], json.dumps(payload).encode()


def _base_url(environ: dict) -> str:
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', '127.0.0.1')}:{environ.get('SERVER_PORT')}"
    return f"{environ.get('wsgi.url_scheme', 'http')}://{host}"
