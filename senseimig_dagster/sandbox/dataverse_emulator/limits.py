"""Service protection limits of the Dataverse emulator: pure logic, no HTTP.

The app calls :meth:`ServiceProtection.route` to pick the simulated web server (affinity cookie honoured),
then :meth:`ServiceProtection.admit` when a request starts, and :meth:`Admission.release` when it ends::

    protection = ServiceProtection(Limits(), servers=4)
    server, cookie = protection.route(request.cookies.get(AFFINITY_COOKIE))
    outcome = protection.admit(user_id, server, records=len(rows))
    if isinstance(outcome, Throttled):
        return Response(429, json=outcome.body(), headers=outcome.headers())
    with outcome:                       # releases the concurrency slot
        ...handle the request...
    response.headers["x-ms-dop-hint"] = str(protection.dop_hint())

Sources (Microsoft Learn; the markdown of MicrosoftDocs/powerapps-docs was read):

* L/api-limits = https://learn.microsoft.com/power-apps/developer/data-platform/api-limits
* L/send-parallel-requests = https://learn.microsoft.com/power-apps/developer/data-platform/send-parallel-requests

What is modelled, and how:

* Limits are counted per (user, web server) over a 300 s sliding window: 6000 requests, 1,200,000 ms combined
  execution time, 52 concurrent requests (L/api-limits, "limit per web server" table; "52 or higher").
* A ``$batch`` or bulk message is one request; its records add execution time (L/api-limits: "A batch can contain up
  to 1000 operations and will avoid the number of requests limit. However, you will need to be prepared for the
  execution time limit").
* Admission rule. The request and execution-time limits "take effect" only once the window is *already* exceeded
  (L/api-limits, "The Retry-After duration": "you can expect to exceed the number of requests and execution time
  limits for a 5 minute period before the service protection API limits will take effect. However, exceeding the
  number of concurrent requests will immediately return an error"). So a request is refused when, *before* it, the
  window already holds ``requests`` requests (the 6001st is refused) or ``execution_ms`` of execution time or more;
  the request that crosses the execution-time line is still admitted and overshoots it. Concurrency is checked at
  once: with 52 in flight the 53rd is refused. Refused requests are not recorded (they do no work).
* Retry-After (integer seconds, at least 1, rounded up) is the time until the window frees enough for one more
  request to be admitted: the oldest requests age out of the window (L/api-limits: "a value indicating the duration
  before any new requests from the user can be processed"; "The more demanding the requests are, the longer it will
  take for the server to recover"). For the concurrency limit Dataverse documents no value and the end of the
  in-flight requests is unknown in advance, so Retry-After is the minimum, 1 s.
* Escalation ("If the application continues to send such demanding requests, the duration will be extended",
  L/api-limits). Microsoft documents no formula; the rule implemented here: after a request- or execution-time 429
  the (user, server) is blocked until the announced time. Every request sent before that time ("a push") is refused
  and extends the block: the remaining wait is doubled, and grows by at least one modelled second, capped at one
  window. A client that waits out each Retry-After is never penalised; the push count resets on the next admission.
* ``x-ms-dop-hint``: L/send-parallel-requests says only that the header carries "a recommended degree of
  parallelism for the environment" and gives no value. The default here is an inference: the execution-time budget
  (1,200,000 ms per 300,000 ms) sustains 4 requests executing at all times per server, so the hint is
  ``4 × servers``; set ``Limits.dop_hint`` to override.
* Held requests (``Limits.hold``): by default the emulator books a request's modelled execution time against the
  limits but answers at machine speed. With ``hold`` every admitted request keeps its concurrency slot until its
  modelled (time-scaled) execution time has passed since admission, so a client's parallelism meets the
  concurrency limit as on Dataverse (more than 52 in flight → the extra ones fail at once) and the figures measure
  the limits, not this machine. The server CLI holds whenever limits are on; in-process tests only when asked.
* Time scale: ``time_scale = k`` makes the window ``300/k`` wall seconds and every modelled execution time ``1/k``
  of its nominal value, so every ratio (requests per window, execution per window, ceilings in records per window)
  is unchanged and only the wall clock is compressed. Internally execution time is kept in nominal milliseconds
  against the nominal limit and only the window is scaled, which is the same thing. Messages quote the nominal
  numbers; Retry-After is in wall seconds (so its 1 s floor is coarser, relative to the window, when k is large;
  ``Throttled.retry_after_s`` carries the exact value).

Memory is bounded: each (user, server) keeps one deque entry per admitted request still inside the window, at most
``requests`` (+1 transient) entries; work per request is O(1) amortised (entries leave from the left once).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from senseimig_dagster.sandbox.dataverse_emulator.errors import DataverseError

# Codes and messages: L/api-limits, "Service Protection API Limit Errors returned"; the concurrency one also on
# L/send-parallel-requests. Hex code is what the Web API returns; the SDK error code is given for reference.
REQUESTS_CODE = "0x80072322"  # -2147015902
EXECUTION_TIME_CODE = "0x80072321"  # -2147015903
CONCURRENCY_CODE = "0x80072326"  # -2147015898

DOP_HINT_HEADER = "x-ms-dop-hint"
# The cookie name is Azure App Service's ARR affinity cookie; Microsoft's Dataverse pages don't name it [unverified].
AFFINITY_COOKIE = "ARRAffinity"

Reason = Literal["requests", "execution_time", "concurrency"]

_EPS = 1e-9  # float tolerance, so a client that waits exactly Retry-After (or the window) is admitted


@dataclass(frozen=True)
class CostModel:
    """Modelled server execution time of one request: ``per_request_ms + per_record_ms × records``.

    Defaults (not documented by Microsoft, chosen to be plausible and to reproduce the behaviour L/api-limits
    describes): 50 ms of fixed cost per request (authentication, pipeline, serialisation, transaction) and 10 ms
    per record (a plain create/update on a standard table without plug-ins). With them, single-record requests hit
    the *request-count* limit first (6000 × 60 ms = 360 s < 1200 s) while large batches hit the *execution-time*
    limit first (a 100-record batch costs 1050 ms, so 1143 of them fill 1200 s) — "Larger sized batches increase the
    chance you will encounter execution time limits rather than limits on the number of requests".
    """

    per_request_ms: float = 50.0
    per_record_ms: float = 10.0

    def __post_init__(self) -> None:
        if self.per_request_ms < 0 or self.per_record_ms < 0:
            raise ValueError("CostModel times must be >= 0")

    def execution_ms(self, records: int = 1) -> float:
        """Nominal (unscaled) execution time of one request carrying ``records`` records."""
        return self.per_request_ms + self.per_record_ms * max(0, records)


@dataclass(frozen=True)
class Limits:
    """Service protection limits per (user, web server); defaults are Microsoft's (L/api-limits)."""

    requests: int = 6000
    execution_ms: int = 1_200_000
    window_s: float = 300.0
    concurrency: int = 52
    enabled: bool = True  # `--limits off` → False
    time_scale: float = 1.0  # k > 1 compresses the window and modelled times by k
    cost: CostModel = field(default_factory=CostModel)
    dop_hint: int | None = None  # None → 4 per server (see module docstring)
    hold: bool = False  # keep each admitted request (and its concurrency slot) for its modelled time

    def __post_init__(self) -> None:
        if self.requests < 1 or self.execution_ms <= 0 or self.window_s <= 0 or self.concurrency < 1:
            raise ValueError("limits must be positive")
        if not (self.time_scale > 0 and math.isfinite(self.time_scale)):
            raise ValueError("time_scale must be a positive finite number")
        if self.dop_hint is not None and self.dop_hint < 1:
            raise ValueError("dop_hint must be >= 1")

    @property
    def window_wall_s(self) -> float:
        """Length of the sliding window in wall-clock seconds."""
        return self.window_s / self.time_scale

    def wall_seconds(self, nominal_ms: float) -> float:
        """Wall-clock seconds that a nominal modelled duration takes under the time scale."""
        return nominal_ms / 1000.0 / self.time_scale

    def message(self, reason: Reason) -> str:
        window = f"{self.window_s:g}"
        if reason == "requests":
            return f"Number of requests exceeded the limit of {self.requests} over time window of {window} seconds."
        if reason == "execution_time":
            return (
                f"Combined execution time of incoming requests exceeded limit of {self.execution_ms:,} milliseconds "
                f"over time window of {window} seconds. Decrease number of concurrent requests or reduce the "
                "duration of requests and try again later."
            )
        return f"Number of concurrent requests exceeded the limit of {self.concurrency}."


_CODES: dict[str, str] = {
    "requests": REQUESTS_CODE,
    "execution_time": EXECUTION_TIME_CODE,
    "concurrency": CONCURRENCY_CODE,
}


@dataclass(frozen=True)
class Throttled:
    """A refused request: HTTP 429 with Retry-After and Dataverse's error body."""

    reason: Reason
    code: str
    message: str
    retry_after: int  # header value, whole seconds, >= 1
    retry_after_s: float  # exact wall-clock wait behind it
    user: str
    server: int
    status: int = 429

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}

    def to_error(self) -> DataverseError:
        return DataverseError(self.status, self.code, self.message)


@dataclass
class _State:
    """Per (user, server) accounting."""

    window: deque[tuple[float, float]] = field(default_factory=deque)  # (start time, nominal execution ms)
    execution_ms: float = 0.0  # sum over `window`
    in_flight: int = 0
    blocked_until: float = -math.inf
    blocked_reason: Reason = "requests"
    pushes: int = 0


class Admission:
    """An admitted request. Call :meth:`release` (or use as a context manager) when it ends."""

    __slots__ = ("user", "server", "execution_ms", "modelled_seconds", "_release", "_released")

    def __init__(
        self,
        user: str,
        server: int,
        execution_ms: float,
        modelled_seconds: float,
        release: Callable[[], None],
    ) -> None:
        self.user = user
        self.server = server
        self.execution_ms = execution_ms  # nominal modelled execution time
        self.modelled_seconds = modelled_seconds  # the same, in wall-clock seconds under the time scale
        self._release = release
        self._released = False

    def release(self) -> None:
        """End the request (idempotent): frees its concurrency slot."""
        if not self._released:
            self._released = True
            self._release()

    def __enter__(self) -> Admission:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass(frozen=True)
class Usage:
    """Snapshot of one (user, server)'s window, for tests and debugging."""

    requests: int
    execution_ms: float
    in_flight: int
    blocked_until: float
    pushes: int


class ServiceProtection:
    """Sliding-window service protection per (user, simulated web server). Thread-safe."""

    def __init__(
        self, limits: Limits | None = None, clock: Callable[[], float] = time.monotonic, servers: int = 1
    ):
        if servers < 1:
            raise ValueError("servers must be >= 1")
        self.limits = limits or Limits()
        self.servers = servers
        self._clock = clock
        self._lock = threading.Lock()
        self._states: dict[tuple[str, int], _State] = {}
        self._next_server = 0
        self._cookies = [
            hashlib.sha256(f"senseimig-dataverse-server-{i}".encode()).hexdigest()[:32]
            for i in range(servers)
        ]
        self._cookie_to_server = {cookie: i for i, cookie in enumerate(self._cookies)}

    # -- routing -------------------------------------------------------------------------------------------------
    def route(self, affinity_cookie: str | None = None) -> tuple[int, str]:
        """Pick the web server for a request; returns ``(server, cookie value to set)``.

        A known affinity cookie pins the request to its server (L/send-parallel-requests, "Server affinity");
        without one (or with an unknown one) requests are spread round-robin over all servers, so per-server limits
        multiply for clients that drop the cookie.
        """
        if affinity_cookie is not None and affinity_cookie in self._cookie_to_server:
            server = self._cookie_to_server[affinity_cookie]
        else:
            with self._lock:
                server = self._next_server
                self._next_server = (server + 1) % self.servers
        return server, self._cookies[server]

    def dop_hint(self) -> int:
        """Value for the ``x-ms-dop-hint`` response header."""
        if self.limits.dop_hint is not None:
            return self.limits.dop_hint
        per_server = max(1, int(self.limits.execution_ms // (self.limits.window_s * 1000)))
        return per_server * self.servers

    # -- admission -----------------------------------------------------------------------------------------------
    def admit(self, user: str, server: int = 0, records: int = 1) -> Admission | Throttled:
        """Called when a request starts. A ``$batch``/bulk call is one request whose ``records`` add execution time."""
        if not 0 <= server < self.servers:
            raise ValueError(f"server must be in [0, {self.servers})")
        limits = self.limits
        cost = limits.cost.execution_ms(records)
        modelled = limits.wall_seconds(cost)
        if not limits.enabled:
            return Admission(user, server, cost, modelled, _noop)
        key = (user, server)
        with self._lock:
            now = self._clock()
            state = self._states.get(key)
            if state is None:
                state = self._states[key] = _State()
            self._prune(state, now)

            if now < state.blocked_until - _EPS:  # pushing while told to wait
                state.pushes += 1
                remaining = state.blocked_until - now
                one_second = 1.0 / limits.time_scale
                remaining = min(limits.window_wall_s, max(2 * remaining, remaining + one_second))
                state.blocked_until = now + remaining
                return self._throttled(state.blocked_reason, remaining, user, server)

            if state.in_flight >= limits.concurrency:
                return self._throttled("concurrency", 0.0, user, server)

            reason: Reason | None = None
            if len(state.window) >= limits.requests:
                reason = "requests"
            elif state.execution_ms >= limits.execution_ms:
                reason = "execution_time"
            if reason is not None:
                wait = self._wait_until_free(state, now)
                state.blocked_until = now + wait
                state.blocked_reason = reason
                return self._throttled(reason, wait, user, server)

            state.pushes = 0
            state.window.append((now, cost))
            state.execution_ms += cost
            state.in_flight += 1
        if not limits.hold:
            return Admission(user, server, cost, modelled, lambda: self._release(key))
        # Held: the request ends no sooner than its modelled execution time after admission (real processing
        # counts within it), as on Dataverse, where a 100-record CreateMultiple takes about a second. Wall time,
        # not the injectable window clock: the hold is real waiting.
        ends = time.monotonic() + modelled

        def release_when_done() -> None:
            remaining = ends - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)
            self._release(key)

        return Admission(user, server, cost, modelled, release_when_done)

    def usage(self, user: str, server: int = 0) -> Usage:
        with self._lock:
            state = self._states.get((user, server)) or _State()
            self._prune(state, self._clock())
            return Usage(
                len(state.window), state.execution_ms, state.in_flight, state.blocked_until, state.pushes
            )

    # -- internals -----------------------------------------------------------------------------------------------
    def _release(self, key: tuple[str, int]) -> None:
        with self._lock:
            state = self._states.get(key)
            if state is not None and state.in_flight > 0:
                state.in_flight -= 1

    def _prune(self, state: _State, now: float) -> None:
        horizon = now - self.limits.window_wall_s + _EPS
        window = state.window
        while window and window[0][0] <= horizon:
            _, cost = window.popleft()
            state.execution_ms -= cost
        if not window:
            state.execution_ms = 0.0  # no float drift once empty

    def _wait_until_free(self, state: _State, now: float) -> float:
        """Seconds until enough of the oldest requests leave the window for one more to be admitted."""
        limits = self.limits
        count, total = len(state.window), state.execution_ms
        last_start = now
        for start, cost in state.window:  # O(k) only when throttling; blocked pushes don't come here
            if count < limits.requests and total < limits.execution_ms:
                break
            count -= 1
            total -= cost
            last_start = start
        return max(0.0, last_start + limits.window_wall_s - now)

    def _throttled(self, reason: Reason, wait_s: float, user: str, server: int) -> Throttled:
        retry_after = max(1, math.ceil(wait_s - _EPS))
        return Throttled(
            reason=reason,
            code=_CODES[reason],
            message=self.limits.message(reason),
            retry_after=retry_after,
            retry_after_s=wait_s,
            user=user,
            server=server,
        )


def _noop() -> None:
    return None
