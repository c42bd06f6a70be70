"""The Sensei Cloud REST client: keyset paging to exhaustion, one typed :class:`Batch` per page, retries that
resume from the same page token.

Failure policy, per request: 429 waits for ``Retry-After``; 5xx, timeouts, connection resets and malformed JSON
are retried with exponential backoff and full jitter, except a complete page of which some records do not parse
(a lone ``\ud800`` escape, bytes that are not UTF-8): it is split down to the record (``json_split``), the others
land and those are rejected with their page and position; 401/403 raise :class:`SenseiAuthError` at once; 400/404
raise :class:`SenseiPageError` at once; so does running out of retries. Messages name object, page and cause and
never carry the API key or a record value (records may be PHI): of an error response only ``HTTP <status> <code>``
is kept, the server's free-text message goes to DEBUG logging only.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import re
import threading
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import orjson
import polars as pl

from senseimig_dagster.objects import SenseiObject
from senseimig_dagster.sensei import records
from senseimig_dagster.sensei.errors import SenseiAuthError, SenseiPageError
from senseimig_dagster.sensei.json_split import Unparsed, split_page
from senseimig_dagster.sensei.records import EXTRA, RAW, SOURCE_REF, Batch, Extraction, Reject
from senseimig_dagster.transport.retry import RetryPolicy, parse_retry_after
from senseimig_dagster.transport.urls import require_https

log = logging.getLogger("senseimig.sensei")

API_KEY_HEADER = "Csd-Api-Key"
T = TypeVar("T")


class _ApiKeyAuth(httpx.Auth):
    """Adds the key per request, so it lives on no shared headers object that might be printed."""

    def __init__(self, key: str):
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[API_KEY_HEADER] = self._key
        yield request

    def __repr__(self) -> str:
        return "_ApiKeyAuth(***)"


class _Retryable(Exception):
    """A failed attempt worth repeating; ``wait`` overrides the backoff (from Retry-After)."""

    def __init__(self, cause: str, wait: float | None = None):
        super().__init__(cause)
        self.cause, self.wait = cause, wait


@dataclass(frozen=True)
class _Page:
    number: int
    records: list[Any]
    total_count: int | None
    next_token: str | None


def _query_time(value: dt.datetime) -> str:
    if value.tzinfo is None:  # naive means UTC here (wire.format_datetime would read it as local time)
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


_ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _error_text(response: httpx.Response, name: str, where: str) -> str:
    """``HTTP 400 bad_request`` from the API's error JSON. The server's ``message`` stays out of the text: the API
    promises nothing about not echoing values (PHI), so it is logged at DEBUG only."""
    text = f"HTTP {response.status_code}"
    try:
        err = orjson.loads(response.content)["error"]
    except Exception:
        return text
    if not isinstance(err, dict):
        return text
    code = err.get("code")
    if isinstance(code, str) and _ERROR_CODE.fullmatch(code):  # a code token, never free text
        text += f" {code}"
    # The server's message is never logged, at any level: it may quote the record's values.
    return text


class SenseiClient:
    def __init__(self, base_url: str, api_key: str, *, page_size: int = 1000, timeout: float = 30.0,
                 max_retries: int = 6, backoff_base: float = 0.5, backoff_max: float = 30.0,
                 retry_after_max: float = 300.0, transport: httpx.BaseTransport | None = None):
        if transport is None:  # a transport given in process (tests) carries nothing over a network
            require_https(base_url, "the Sensei API base URL")
        self.base_url, self.page_size = base_url.rstrip("/"), page_size
        # A Retry-After beyond retry_after_max (a misconfigured gateway asking for hours) is clamped.
        self.retry = RetryPolicy(max_retries, backoff_base, backoff_max, retry_after_max)
        self._http = httpx.Client(base_url=self.base_url, auth=_ApiKeyAuth(api_key), timeout=timeout,
                                  transport=transport, headers={"Accept": "application/json"})
        self._closed = threading.Event()
        self._sleep: Callable[[float], object] = self._closed.wait  # a retry wait ends early on close()

    def __repr__(self) -> str:
        return f"SenseiClient(base_url={self.base_url!r}, page_size={self.page_size}, api_key=***)"

    def __enter__(self) -> SenseiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()
        self._http.close()

    # -- public API ---------------------------------------------------------------------------------------------

    def iter_batches(self, obj: SenseiObject, modified_since: dt.datetime | None = None,
                     modified_before: dt.datetime | None = None, *,
                     location_id: str | None = None) -> Iterator[Batch]:
        """Every record of ``obj`` modified in [since, before), one typed batch per page (empty pages skipped).
        Lazy: nothing is fetched until the first batch is asked for."""
        yield from self.extract(obj, modified_since, modified_before, location_id=location_id).batches

    def extract(self, obj: SenseiObject, modified_since: dt.datetime | None = None,
                modified_before: dt.datetime | None = None, *, location_id: str | None = None) -> Extraction:
        """Fetches the first page now (for ``total_count``); the rest stream as the batches are consumed."""
        pages = self._pages(obj, self._filters(modified_since, modified_before, location_id))
        first = next(pages)
        return Extraction(obj.name, "api", self._batches(obj, itertools.chain([first], pages)), first.total_count)

    def count(self, obj: SenseiObject, modified_since: dt.datetime | None = None,
              modified_before: dt.datetime | None = None, *, location_id: str | None = None) -> int:
        params = self._filters(modified_since, modified_before, location_id)

        def parse(response: httpx.Response) -> int:
            body = self._json(response)
            if not isinstance(body, dict) or not isinstance(body.get("count"), int):
                raise _Retryable("malformed count response")
            return body["count"]

        return self._call(obj.name, "count", f"/v1/{obj.endpoint}/count", params, parse)

    def content(self, obj: SenseiObject, record_id: str) -> Iterator[bytes]:
        """The bytes of a record of an object with content (a document), streamed in chunks. Retries until the
        response starts; a break after that raises :class:`SenseiPageError` (a partial file is never passed off as
        whole)."""
        where = f"content of {record_id}"
        path = f"/v1/{obj.endpoint}/{quote(record_id, safe='')}/content"
        response = self._call(obj.name, where, path, {}, lambda r: r, stream=True)
        try:
            expected, received = response.headers.get("Content-Length"), 0
            for chunk in response.iter_bytes():
                received += len(chunk)
                yield chunk
        except (httpx.TransportError, OSError) as exc:
            raise SenseiPageError(obj.name, where, f"transfer broke after {received} bytes: "
                                                   f"{type(exc).__name__}") from exc
        finally:
            response.close()
        if expected is not None and received != int(expected):
            raise SenseiPageError(obj.name, where, f"received {received} of {expected} bytes")

    # -- paging -------------------------------------------------------------------------------------------------

    @staticmethod
    def _filters(since: dt.datetime | None, before: dt.datetime | None, location_id: str | None) -> dict[str, str]:
        params = {}
        if since is not None:
            params["modified_since"] = _query_time(since)
        if before is not None:
            params["modified_before"] = _query_time(before)
        if location_id is not None:
            params["location_id"] = location_id
        return params

    def _pages(self, obj: SenseiObject, filters: dict[str, str]) -> Iterator[_Page]:
        token, number = None, 1
        while True:
            params = {**filters, "page_size": str(self.page_size)}
            if token:
                params["page_token"] = token
            page = self._call(obj.name, f"page {number}", f"/v1/{obj.endpoint}", params,
                              lambda r, n=number: self._page(r, n))
            yield page
            if not page.next_token:
                return
            token, number = page.next_token, number + 1

    def _page(self, response: httpx.Response, number: int) -> _Page:
        try:
            body = self._json(response)
        except _Retryable:
            # A complete page with a record that does not parse: split it down to the record, no retry (the
            # same bytes would come back). A body cut short in transit has no complete envelope: retried.
            split = split_page(response.content)
            if split is None:
                raise
            log.warning("page %d: %d record(s) did not parse; the rest of the page is kept", number,
                        sum(isinstance(r, Unparsed) for r in split.records))
            return _Page(number, split.records, split.total_count, split.next_token)
        if (not isinstance(body, dict) or not isinstance(body.get("data"), list)
                or not isinstance(body.get("next_page_token"), (str, type(None)))):
            raise _Retryable("page is not a {data, next_page_token} object")
        total = body.get("total_count")
        return _Page(number, body["data"], total if isinstance(total, int) else None, body["next_page_token"])

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            # Only the size: the error text could quote the body, and the body holds records.
            raise _Retryable(f"malformed JSON ({len(response.content)} bytes)") from None

    def _batches(self, obj: SenseiObject, pages: Iterator[_Page]) -> Iterator[Batch]:
        for page in _prefetched(pages):
            if page.records:
                yield to_batch(obj, page.number, page.records)

    # -- one request, with retries --------------------------------------------------------------------------------

    def _call(self, name: str, where: str, path: str, params: dict[str, str],
              parse: Callable[[httpx.Response], T], *, stream: bool = False) -> T:
        for attempt in range(self.retry.max_retries + 1):
            if self._closed.is_set():
                raise SenseiPageError(name, where, "the client was closed")
            try:
                return self._attempt(name, where, path, params, parse, stream)
            except _Retryable as failed:
                if self.retry.gives_up_after(attempt):
                    raise SenseiPageError(name, where, f"{failed.cause}; gave up after {attempt + 1} attempts") \
                        from None
                wait = self.retry.wait(attempt, failed.wait)
                log.warning("sensei %s %s: %s; retry %d/%d in %.2f s", name, where, failed.cause, attempt + 1,
                            self.retry.max_retries, wait)
                self._sleep(wait)
        raise AssertionError("unreachable")

    def _attempt(self, name: str, where: str, path: str, params: dict[str, str],
                 parse: Callable[[httpx.Response], T], stream: bool) -> T:
        response = None
        try:
            request = self._http.build_request("GET", path, params=params)
            response = self._http.send(request, stream=stream)
            status = response.status_code
            if status >= 400 and stream:
                response.read()
            if status >= 300:
                error = _error_text(response, name, where)
                if status in (401, 403):
                    raise SenseiAuthError(name, where, f"{error} (the API key was refused)")
                if status == 429:
                    raise _Retryable(error, parse_retry_after(response.headers.get("Retry-After")))
                if status >= 500:
                    raise _Retryable(error)
                raise SenseiPageError(name, where, error)
            result = parse(response)
            if stream:
                response = None  # the caller streams and closes it
            return result
        except httpx.TimeoutException as exc:
            raise _Retryable(f"timeout ({type(exc).__name__})") from None
        except (httpx.TransportError, OSError) as exc:  # resets, refused connections, truncated bodies
            raise _Retryable(f"connection error ({type(exc).__name__})") from None
        finally:
            if response is not None and stream:
                response.close()


def _prefetched(pages: Iterator[_Page]) -> Iterator[_Page]:
    """Fetch (and JSON-parse) page n+1 on a worker thread while page n is typed: network waits and Polars both
    release the GIL, so this overlaps most of the two. Memory stays bounded: at most two pages are held."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="sensei-prefetch")
    try:
        future = pool.submit(next, pages, None)
        while (page := future.result()) is not None:
            future = pool.submit(next, pages, None)
            yield page
    finally:  # a consumer that stops early must not wait for a prefetch that may be sleeping between retries
        pool.shutdown(wait=False, cancel_futures=True)


def to_batch(obj: SenseiObject, page_number: int, page_records: list[Any]) -> Batch:
    """One page of API records as a typed batch: a frame of strings built by Polars' NDJSON reader (numbers and
    booleans become their JSON text, nested JSON stays JSON text), then :func:`records.cast_batch`."""
    names = obj.field_names
    known = frozenset(names)
    lines: list[bytes] = []
    extras: list[str | None] = []
    refs: list[str] = []
    bad: list[Reject] = []
    for i, rec in enumerate(page_records, 1):
        ref = f"page {page_number} row {i}"
        if isinstance(rec, Unparsed):
            bad.append(Reject(obj.name, rec.source_id, ref, rec.reason, None, f"{obj.name} {ref}: {rec.cause}",
                              rec.raw))
            continue
        raw = orjson.dumps(rec)
        if not isinstance(rec, dict):
            bad.append(Reject(obj.name, None, ref, "malformed_record", None,
                              f"{obj.name} {ref}: record is not a JSON object", raw.decode()))
            continue
        lines.append(raw)
        extras.append(None if rec.keys() <= known
                      else orjson.dumps({k: v for k, v in rec.items() if k not in known}).decode())
        refs.append(ref)
    schema = {n: pl.String() for n in names}
    text = pl.read_ndjson(b"\n".join(lines), schema=schema) if lines else pl.DataFrame(schema=schema)
    text = text.with_columns(pl.Series(EXTRA, extras, pl.String), pl.Series(SOURCE_REF, refs, pl.String),
                             pl.Series(RAW, lines, pl.Binary).cast(pl.String))
    batch = records.cast_batch(obj, text, "json")
    batch.rejects.extend(bad)
    return batch


__all__ = ["API_KEY_HEADER", "SenseiClient", "to_batch"]
