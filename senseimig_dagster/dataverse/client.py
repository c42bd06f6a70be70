"""A synchronous Dataverse Web API client over httpx: record CRUD, upsert by alternate key, paged queries and
``$count``, ``$batch`` (:meth:`DataverseClient.batch`, codec in :mod:`.batch`) and the bulk messages
(``create_multiple``/``update_multiple``/``upsert_multiple``, ``bulk_supported``). The throughput engine is
:mod:`.bulk`.

Wire rules followed (Microsoft's 'Compose HTTP requests and handle errors', 'Query data using the Web API'):

* Base ``<environment>/api/data/v9.2/``. Every request sends ``Accept: application/json``,
  ``OData-MaxVersion: 4.0`` and ``OData-Version: 4.0``; ``Content-Type: application/json`` only when it has a
  body; GETs send ``If-None-Match: null`` (advised, so ``$expand`` results are never served from cache).
* Create: ``204`` with ``OData-EntityId: <base>/<set>(<guid>)``; the id is taken from that header.
* Update: ``PATCH`` with ``If-Match: *`` (so an update never creates). Upsert: ``PATCH`` by alternate key.
* Query: ``Prefer: odata.maxpagesize=N`` (1..5000); ``@odata.nextLink`` followed unchanged with the same page
  size until it is absent; ``$skip`` is not supported by Dataverse and is never sent.
* Keys: ``(col='v')``, quotes doubled; values containing any of ``/ < > * % & : \\ ? +`` make key lookups fail, so
  they are refused here with a :class:`ValueError` naming the column, never the value.

Upsert, created or updated: Microsoft's pages don't say how a Web API upsert reports which it did (both answer
``204`` with ``OData-EntityId``; only the SDK's ``UpsertResponse.RecordCreated`` tells). OData 4.0 Part 1 says an
upsert is handled as a create or an update, and with ``Prefer: return=representation`` a create answers
``201 Created`` (§11.4.2) and an update ``200 OK`` (§11.4.3). So :meth:`upsert` asks for a representation (of the
first key column only, to keep the body small) and reads 201 vs 200. Unverified against a live environment.

Retries (the shared ``transport/retry.py`` policy; Microsoft's 'Service protection API limits'): 429 waits exactly
``Retry-After`` seconds; 502/503/504, timeouts and connection failures are retried with exponential backoff and full
jitter; 401 is ``transport.entra.BearerAuth``'s business (it re-acquires
once); every other status raises at once. A create (``POST``) is not idempotent, so it is retried only when the
request never reached the server (connect errors and connect/pool timeouts) or when the server answered 429 or 503
(it refused the request without running it); a ``POST`` that may have been received (read timeout, reset,
502/504) raises instead of risking a duplicate.

Affinity: Microsoft advises turning the affinity cookie off so requests spread over web servers, each with its own
limits, so there is no cookie jar by default; ``affinity=True`` keeps the cookie (httpx's jar).

Nothing logged or raised carries a record value, a token or the server's error message (which may quote values):
only entity set, operation, status, Dataverse code and the wait. The message is on the exception's ``message``
attribute and in DEBUG logs.
"""

from __future__ import annotations

import http.cookiejar
import logging
import re
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit

import httpx
import orjson

from senseimig_dagster.dataverse import batch as batch_codec
from senseimig_dagster.dataverse.errors import (
    DataverseConflict,
    DataverseError,
    DataverseNotFound,
    DataverseThrottled,
)
from senseimig_dagster.transport.retry import RetryPolicy, parse_retry_after
from senseimig_dagster.transport.urls import require_https

log = logging.getLogger("senseimig.dataverse")

API_PATH = "/api/data/v9.2/"
MAX_PAGE_SIZE = 5000
DOP_HINT_HEADER = "x-ms-dop-hint"
# These characters in a key value make GET and PATCH by alternate key fail (Microsoft's alternate key docs).
KEY_FORBIDDEN = frozenset("/<>*%&:\\?+")
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Statuses at which the server has refused a request without executing it, so even a create may be repeated.
_REFUSED_UNEXECUTED = frozenset({429, 503})

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ENTITY_ID = re.compile(r"\((" + _GUID.pattern + r")\)/?$")
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{0,64}")  # a code token, never free text
_UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)  # the request never left this host

KeyValue = str | uuid.UUID | int
Key = Mapping[str, KeyValue]


def key_segment(key: Key) -> str:
    """``{"smig_sourcesystemid": "O'Neil-1"}`` -> ``(smig_sourcesystemid='O''Neil-1')``, one ``col=value`` per
    column, in the mapping's order.

    Strings are quoted with single quotes doubled; :class:`uuid.UUID` and ints are written bare, and so is a
    string for a lookup key column (``_x_value``), which must be a GUID. Raises :class:`ValueError` (naming the
    column, never the value) for an empty key, a bad column name, a lookup value that is no GUID, or a value
    with any of ``/ < > * % & : \\ ? +`` (those make key lookups fail; sanitise source ids first).
    """
    if not key:
        raise ValueError("an alternate key needs at least one column")
    parts = []
    for column, value in key.items():
        if not isinstance(column, str) or not _NAME.fullmatch(column):
            raise ValueError(f"invalid key column name {column!r}")
        parts.append(f"{column}={_key_literal(column, value)}")
    return "(" + ",".join(parts) + ")"


def _key_literal(column: str, value: KeyValue) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"key column {column}: unsupported value type {type(value).__name__}")
    if isinstance(value, int):
        return str(value)
    if column.startswith("_") and column.endswith("_value"):  # a lookup in a key: a bare GUID
        if not _GUID.fullmatch(value):
            raise ValueError(f"key column {column}: a lookup key value must be a GUID")
        return value.lower()
    if not value:
        raise ValueError(f"key column {column}: empty value")
    if KEY_FORBIDDEN.intersection(value):
        raise ValueError(f"key column {column}: value contains a character Dataverse key lookups reject "
                         "(one of / < > * % & : \\ ? +)")
    # Percent-encode for the URL path (spaces, '#', non-ASCII...); the quote itself stays literal.
    return "'" + quote(value.replace("'", "''"), safe="'@") + "'"


def record_segment(id_or_key: str | uuid.UUID | Key) -> str:
    """``(<guid>)`` for an id (str or UUID), :func:`key_segment` for a mapping."""
    if isinstance(id_or_key, uuid.UUID):
        return f"({id_or_key})"
    if isinstance(id_or_key, str):
        if not _GUID.fullmatch(id_or_key):
            raise ValueError("a record id must be a GUID (pass a mapping to address a record by alternate key)")
        return f"({id_or_key.lower()})"
    return key_segment(id_or_key)


def _entity_set_path(entity_set: str) -> str:
    if not _NAME.fullmatch(entity_set):
        raise ValueError(f"invalid entity set name {entity_set!r}")
    return entity_set


class _Retry(Exception):
    """A failed attempt that may be repeated; ``wait`` overrides the backoff (from Retry-After)."""

    def __init__(self, error: DataverseError, wait: float | None = None, executed: bool = True):
        super().__init__(str(error))
        # ``executed``: the server may have run the request (False only when it never left this host).
        self.error, self.wait, self.executed = error, wait, executed


class DataverseClient:
    """One Dataverse environment. Thread-safe for concurrent requests (httpx's pool); :attr:`dop_hint` is the
    latest ``x-ms-dop-hint`` seen (``None`` until a response carried one)."""

    def __init__(self, environment_url: str, auth: httpx.Auth | None, *,
                 transport: httpx.BaseTransport | None = None, timeout: float = 120, max_retries: int = 8,
                 backoff_base: float = 0.5, backoff_max: float = 60, user_agent: str = "senseimig",
                 affinity: bool = False, sleep: Callable[[float], object] | None = None, pool_size: int = 64,
                 verify: ssl.SSLContext | bool = True):
        parts = urlsplit(environment_url.rstrip("/"))
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ValueError("environment_url must be an absolute http(s) URL, e.g. https://org.crm.dynamics.com")
        if transport is None:  # a transport given in process (tests) carries nothing over a network
            require_https(environment_url, "the Dataverse environment URL")
        self.environment_url = f"{parts.scheme}://{parts.netloc}{parts.path}"
        self.base_url = self.environment_url + API_PATH
        self.retry = RetryPolicy(max_retries, backoff_base, backoff_max)  # 429: exactly Retry-After
        self.affinity = affinity
        self.dop_hint: int | None = None
        # One httpx.Client is shared by every thread; its pool must hold as many connections as requests run in
        # parallel, or the extra threads wait for (or churn) connections. BulkLoader checks this.
        self.pool_size = pool_size
        # Without affinity, a jar whose policy accepts no cookie: the ARRAffinity cookie is never sent back.
        cookies = None if affinity else http.cookiejar.CookieJar(
            policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        self._http = httpx.Client(
            base_url=self.base_url, auth=auth, transport=transport, cookies=cookies, follow_redirects=False,
            verify=verify, limits=httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size),
            # Explicit timeouts: connecting should be quick; a long-running write may take up to ``timeout``.
            timeout=httpx.Timeout(timeout, connect=min(timeout, 30.0)),
            headers={"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0",
                     "User-Agent": user_agent})
        self._closed = threading.Event()
        self._sleep: Callable[[float], object] = sleep if sleep is not None else self._closed.wait

    def __repr__(self) -> str:
        return f"DataverseClient({self.environment_url!r}, affinity={self.affinity})"

    def __enter__(self) -> DataverseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()  # a retry wait ends early
        self._http.close()

    # -- records --------------------------------------------------------------------------------------------

    def create(self, entity_set: str, body: Mapping[str, Any]) -> str:
        """Create a record; its id (lower-case GUID) from the ``OData-EntityId`` header of the 204."""
        path = _entity_set_path(entity_set)
        response = self._request("POST", path, entity_set, "create", json_body=body)
        match = _ENTITY_ID.search(response.headers.get("OData-EntityId", ""))
        if response.status_code != 204 or match is None:
            raise DataverseError(response.status_code, None, None, entity_set, "create",
                                 cause="response carried no OData-EntityId", request_id=_request_id(response))
        return match[1].lower()

    def retrieve(self, entity_set: str, id_or_key: str | uuid.UUID | Key,
                 select: Sequence[str] | None = None) -> dict[str, Any]:
        """The record (with ``@odata.etag``); only the ``select`` columns when given. 404 ->
        :class:`DataverseNotFound`."""
        params = {"$select": _select(select)} if select else None
        response = self._request("GET", _entity_set_path(entity_set) + record_segment(id_or_key), entity_set,
                                 "retrieve", params=params)
        return self._json_object(response, entity_set, "retrieve")

    def update(self, entity_set: str, id_or_key: str | uuid.UUID | Key, changes: Mapping[str, Any],
               if_match: str | None = "*") -> None:
        """PATCH the changed columns only. ``If-Match: *`` (default) makes a missing record a 404 instead of a
        create; pass an ETag for optimistic concurrency (mismatch -> :class:`DataverseConflict`), or ``None`` to
        allow the PATCH to create."""
        headers = {"If-Match": if_match} if if_match is not None else None
        self._request("PATCH", _entity_set_path(entity_set) + record_segment(id_or_key), entity_set, "update",
                      json_body=changes, headers=headers)

    def upsert(self, entity_set: str, key: Key, body: Mapping[str, Any]) -> Literal["created", "updated"]:
        """PATCH by alternate key: creates the record if no record has these key values, else updates it.
        ``"created"``/``"updated"`` from 201/200 under ``Prefer: return=representation`` (see module notes)."""
        segment = key_segment(key)
        first_column = next(iter(key))
        response = self._request("PATCH", _entity_set_path(entity_set) + segment, entity_set, "upsert",
                                 json_body=body, params={"$select": first_column},
                                 headers={"Prefer": "return=representation"})
        if response.status_code == 201:
            return "created"
        if response.status_code == 200:
            return "updated"
        raise DataverseError(response.status_code, None, None, entity_set, "upsert", request_id=_request_id(response),
                             cause="return=representation not honoured; cannot tell created from updated")

    def delete(self, entity_set: str, id_or_key: str | uuid.UUID | Key) -> None:
        """DELETE the record; 404 -> :class:`DataverseNotFound`, except after an attempt whose outcome was
        unknown (timeout, reset): then the earlier attempt deleted it and the 404 is success."""
        self._request("DELETE", _entity_set_path(entity_set) + record_segment(id_or_key), entity_set, "delete",
                      not_found_ok_after_retry=True)

    # -- queries --------------------------------------------------------------------------------------------

    def query(self, entity_set: str, select: Sequence[str], filter: str | None = None,
              orderby: str | None = None, page_size: int = MAX_PAGE_SIZE) -> Iterator[dict[str, Any]]:
        """Every matching record, page by page (``Prefer: odata.maxpagesize``), following ``@odata.nextLink``
        unchanged. Lazy: nothing is fetched until the first record is asked for. ``filter`` and ``orderby`` are
        OData expressions passed as given (quote string literals yourself)."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        if not select:
            raise ValueError("select at least one column (Dataverse returns every column otherwise)")
        params = {"$select": _select(select)}
        if filter:
            params["$filter"] = filter
        if orderby:
            params["$orderby"] = orderby
        return self._pages(entity_set, params, page_size)

    def _pages(self, entity_set: str, params: dict[str, str], page_size: int) -> Iterator[dict[str, Any]]:
        headers = {"Prefer": f"odata.maxpagesize={page_size}"}
        url: str | None = _entity_set_path(entity_set)
        page = 1
        while url is not None:
            response = self._request("GET", url, entity_set, f"query page {page}", params=params, headers=headers)
            body = self._json_object(response, entity_set, f"query page {page}")
            rows = body.get("value")
            if not isinstance(rows, list):
                raise DataverseError(response.status_code, None, None, entity_set, f"query page {page}",
                                     cause="response has no value array", request_id=_request_id(response))
            yield from rows
            url, params, page = self._next_link(body, entity_set, page), None, page + 1

    def _next_link(self, body: dict[str, Any], entity_set: str, page: int) -> str | None:
        link = body.get("@odata.nextLink")
        if link is None:
            return None
        # The bearer token goes wherever the link points: only follow links into this environment's API.
        if not isinstance(link, str) or not self._in_api(link):
            raise DataverseError(200, None, None, entity_set, f"query page {page}",
                                 cause="@odata.nextLink points outside the environment's Web API")
        return link

    def _in_api(self, url: str) -> bool:
        link, base = urlsplit(url), urlsplit(self.base_url)
        return ((link.scheme.lower(), link.netloc.lower()) == (base.scheme.lower(), base.netloc.lower())
                and link.path.startswith(base.path))

    def count(self, entity_set: str) -> int:
        """``GET <set>/$count``. Dataverse caps it at 5000; use ``RetrieveTotalRecordCount``
        for a snapshot count above that."""
        response = self._request("GET", _entity_set_path(entity_set) + "/$count", entity_set, "count")
        text = response.content.decode("utf-8-sig", "replace").strip()
        if not text.isdigit():
            raise DataverseError(response.status_code, None, None, entity_set, "count",
                                 cause="response is not a number", request_id=_request_id(response))
        return int(text)

    # -- $batch and bulk messages ---------------------------------------------------------------------------------

    def batch(self, items: Sequence[batch_codec.BatchItem], *, continue_on_error: bool = False,
              retry_throttled: bool = True) -> batch_codec.BatchResult:
        """Send a ``$batch`` (requests and :class:`~.batch.ChangeSet` s, at most 1000 requests); the per-request
        responses aligned with the requests. With ``continue_on_error`` every request runs and answers on its own;
        without it Dataverse stops at the first failure (outer 400, only that part returned). Sent once unless
        refused unexecuted (429/503): a batch of creates is not idempotent."""
        content_type, body = batch_codec.encode(items, urlsplit(self.base_url).path)
        headers = {"Prefer": "odata.continue-on-error"} if continue_on_error else None
        response = self._request("POST", "$batch", "$batch", "batch", content=body, content_type=content_type,
                                 headers=headers, retry_throttled=retry_throttled, ok_statuses=frozenset({400}))
        try:
            return batch_codec.decode(items, response.status_code, response.headers.get("Content-Type", ""),
                                      response.content)
        except ValueError as exc:
            if response.status_code >= 400:  # a refusal of the whole batch (malformed, over the cap...)
                raise self._error(response, "$batch", "batch") from None
            raise DataverseError(response.status_code, None, None, "$batch", "batch", cause=str(exc),
                                 request_id=_request_id(response)) from None

    def create_multiple(self, entity_set: str, logical_name: str, rows: Sequence[Mapping[str, Any]], *,
                        retry_throttled: bool = True) -> list[str]:
        """``CreateMultiple``: the new ids (lower case) in row order. All-or-nothing on standard tables: one bad
        row fails the request with that row's error and nothing is written."""
        response = self._bulk(entity_set, "CreateMultiple", _targets(logical_name, rows), retry_throttled)
        ids = self._json_object(response, entity_set, "CreateMultiple").get("Ids")
        if not isinstance(ids, list) or len(ids) != len(rows) or not all(isinstance(i, str) for i in ids):
            raise DataverseError(response.status_code, None, None, entity_set, "CreateMultiple",
                                 cause="response has no Ids array matching the targets",
                                 request_id=_request_id(response))
        return [i.lower() for i in ids]

    def update_multiple(self, entity_set: str, logical_name: str, rows: Sequence[Mapping[str, Any]], *,
                        retry_throttled: bool = True) -> None:
        """``UpdateMultiple``: every row carries its primary key column plus the changed columns only."""
        self._bulk(entity_set, "UpdateMultiple", _targets(logical_name, rows), retry_throttled)

    def upsert_multiple(self, entity_set: str, logical_name: str, rows: Sequence[Mapping[str, Any]],
                        key_columns: Sequence[str], *, retry_throttled: bool = True) -> None:
        """``UpsertMultiple`` by alternate key: each target is addressed by ``"@odata.id": "<set>(<key>)"`` built
        from its ``key_columns`` (which leave the body, as in Microsoft's example). Answers 204 without ids
        (L/webapi/reference/upsertmultiple). A key value Dataverse can't address raises :class:`ValueError`."""
        _entity_set_path(entity_set)
        targets = []
        for row in rows:
            key = {column: row[column] for column in key_columns}
            target = {k: v for k, v in row.items() if k not in key}
            target["@odata.id"] = entity_set + key_segment(key)
            targets.append(target)
        self._bulk(entity_set, "UpsertMultiple", _targets(logical_name, targets), retry_throttled)

    def bulk_supported(self, logical_name: str, message: str = "CreateMultiple") -> bool:
        """Whether ``message`` (CreateMultiple, UpdateMultiple, UpsertMultiple...) is available on the table: a
        message filter exists for it (the documented ``sdkmessagefilters`` query)."""
        if not _NAME.fullmatch(logical_name) or not _NAME.fullmatch(message):
            raise ValueError("invalid table or message name")
        params = {"$select": "sdkmessagefilterid",
                  "$filter": f"sdkmessageid/name eq '{message}' and primaryobjecttypecode eq '{logical_name}'"}
        response = self._request("GET", "sdkmessagefilters", "sdkmessagefilters", f"{message} support",
                                 params=params)
        rows = self._json_object(response, "sdkmessagefilters", f"{message} support").get("value")
        return isinstance(rows, list) and len(rows) > 0

    def _bulk(self, entity_set: str, message: str, targets: list[dict[str, Any]],
              retry_throttled: bool) -> httpx.Response:
        if not targets:
            raise ValueError(f"{message} needs at least one row")
        path = f"{_entity_set_path(entity_set)}/Microsoft.Dynamics.CRM.{message}"
        return self._request("POST", path, entity_set, message, json_body={"Targets": targets},
                             retry_throttled=retry_throttled)

    # -- one request, with retries ----------------------------------------------------------------------------

    def _request(self, method: str, url: str, entity_set: str, operation: str, *,
                 params: Mapping[str, str] | None = None, json_body: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None,
                 not_found_ok_after_retry: bool = False, content: bytes | None = None,
                 content_type: str = "application/json", retry_throttled: bool = True,
                 ok_statuses: frozenset[int] = frozenset()) -> httpx.Response:
        """Send with retries; a 2xx response, or the typed error. ``url`` is relative to the API base or an
        absolute link into it. ``content`` is a raw body (instead of ``json_body``) of ``content_type``. With
        ``retry_throttled=False`` a 429 raises :class:`DataverseThrottled` at once, for a caller that paces every
        sender of the user itself (:class:`~.bulk.BulkLoader`)."""
        if json_body is not None:
            content = orjson.dumps(json_body)
        request_headers = dict(headers or {})
        if content is not None:
            request_headers["Content-Type"] = content_type
        if method == "GET":
            request_headers.setdefault("If-None-Match", "null")
        outcome_unknown = False  # an earlier attempt may have been executed by the server
        for attempt in range(self.retry.max_retries + 1):
            if self._closed.is_set():
                raise DataverseError(None, None, None, entity_set, operation, cause="the client was closed")
            try:
                response = self._attempt(method, url, entity_set, operation, params, content, request_headers)
                if response.status_code == 404 and not_found_ok_after_retry and outcome_unknown:
                    return response
                if response.status_code in ok_statuses:
                    return response
                return self._check(response, method, entity_set, operation)
            except _Retry as retry:
                error = retry.error
                if error.status is None and retry.executed:
                    outcome_unknown = True
                if self.retry.gives_up_after(attempt) or (error.status == 429 and not retry_throttled):
                    if error.status == 429:
                        cause = f"gave up after {attempt + 1} attempts" if retry_throttled else None
                        raise DataverseThrottled(429, error.code, error.message, entity_set, operation,
                                                 request_id=error.request_id, retry_after=error.retry_after,
                                                 cause=cause) from None
                    error.cause = (f"{error.cause}; " if error.cause else "") + \
                        f"gave up after {attempt + 1} attempts"
                    error.args = (error._text(),)
                    raise error from None
                wait = self.retry.wait(attempt, retry.wait)
                what = f"HTTP {error.status}" if error.status is not None else (error.cause or "no response")
                log.warning("dataverse %s %s: %s; retry %d/%d in %.2f s", entity_set, operation, what,
                            attempt + 1, self.retry.max_retries, wait)
                self._sleep(wait)
        raise AssertionError("unreachable")

    def _attempt(self, method: str, url: str, entity_set: str, operation: str,
                 params: Mapping[str, str] | None, content: bytes | None,
                 headers: Mapping[str, str]) -> httpx.Response:
        if params:
            # OData option names keep their '$' and spaces become %20 (not '+', which OData reads as a plus).
            url += "?" + urlencode(dict(params), quote_via=quote, safe="$,'()")
        try:
            response = self._http.request(method, url, content=content, headers=headers)
        except httpx.TimeoutException as exc:
            error = DataverseError(None, None, None, entity_set, operation, cause=f"timeout ({type(exc).__name__})")
            if method == "POST" and not isinstance(exc, _UNSENT):
                raise error from exc  # the create may have run: repeating it could duplicate the record
            raise _Retry(error, executed=not isinstance(exc, _UNSENT)) from exc
        except httpx.TransportError as exc:  # refused connections, resets, truncated responses
            error = DataverseError(None, None, None, entity_set, operation,
                                   cause=f"connection error ({type(exc).__name__})")
            if method == "POST" and not isinstance(exc, _UNSENT):
                raise error from exc
            raise _Retry(error, executed=not isinstance(exc, _UNSENT)) from exc
        hint = response.headers.get(DOP_HINT_HEADER)
        if hint is not None and hint.strip().isdigit() and int(hint) > 0:
            self.dop_hint = int(hint)
        return response

    def _check(self, response: httpx.Response, method: str, entity_set: str, operation: str) -> httpx.Response:
        status = response.status_code
        if status < 300:
            return response
        error = self._error(response, entity_set, operation)
        if status in RETRY_STATUSES and (method != "POST" or status in _REFUSED_UNEXECUTED):
            # Retry-After is exact for 429 (service protection); honoured on 503 too when present.
            raise _Retry(error, error.retry_after if status in (429, 503) else None)
        raise error

    @staticmethod
    def _error(response: httpx.Response, entity_set: str, operation: str) -> DataverseError:
        code = message = None
        try:
            err = orjson.loads(response.content)["error"]
        except Exception:
            err = None
        if isinstance(err, dict):
            raw_code, raw_message = err.get("code"), err.get("message")
            if isinstance(raw_code, str) and _ERROR_CODE.fullmatch(raw_code):
                code = raw_code
            if raw_message is not None:  # kept on the exception for the caller; never logged (it may quote values)
                message = str(raw_message)
        status = response.status_code
        cls = {404: DataverseNotFound, 412: DataverseConflict, 429: DataverseThrottled}.get(status, DataverseError)
        return cls(status, code, message, entity_set, operation, request_id=_request_id(response),
                   retry_after=parse_retry_after(response.headers.get("Retry-After")))

    @staticmethod
    def _json_object(response: httpx.Response, entity_set: str, operation: str) -> dict[str, Any]:
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):  # only the size: the text could quote record values
            raise DataverseError(response.status_code, None, None, entity_set, operation,
                                 cause=f"response is not a JSON object ({len(response.content)} bytes)",
                                 request_id=_request_id(response))
        return body


def _targets(logical_name: str, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each row with ``@odata.type`` (required on every bulk target)."""
    if not _NAME.fullmatch(logical_name):
        raise ValueError(f"invalid table name {logical_name!r}")
    odata_type = f"Microsoft.Dynamics.CRM.{logical_name}"
    return [{"@odata.type": odata_type, **row} for row in rows]


def _select(columns: Sequence[str]) -> str:
    if isinstance(columns, str):
        columns = [columns]
    for column in columns:
        if not _NAME.fullmatch(column):
            raise ValueError(f"invalid column name {column!r} in select")
    return ",".join(columns)


def _request_id(response: httpx.Response) -> str | None:
    return response.headers.get("REQ_ID") or response.headers.get("x-ms-service-request-id")


__all__ = ["API_PATH", "DataverseClient", "KEY_FORBIDDEN", "key_segment", "record_segment"]
