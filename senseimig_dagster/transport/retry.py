"""One retry policy for the Sensei, Dataverse and Graph clients: how long to wait before repeating a request that
failed in a way worth repeating (429, 5xx, timeouts, dropped connections; each client decides which).

The wait is the service's own ``Retry-After`` when it sends one (delta-seconds, or an HTTP-date, RFC 9110 §10.2.3),
clamped to ``retry_after_max`` when set (a gateway asking for hours is not obeyed blindly); otherwise exponential
backoff with full jitter: a uniform draw from ``[0, min(backoff_max, backoff_base * 2**attempt)]``, so clients that
failed together do not retry together.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
from dataclasses import dataclass


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for; None when it is absent, negative or unreadable. A date in the
    past is 0."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 6
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: float | None = None  # None: wait exactly what the service asks

    def wait(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (0 for the first)."""
        if retry_after is not None:
            return retry_after if self.retry_after_max is None else min(retry_after, self.retry_after_max)
        return random.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** attempt))

    def gives_up_after(self, attempt: int) -> bool:
        """Whether failed attempt ``attempt`` was the last one allowed."""
        return attempt >= self.max_retries
