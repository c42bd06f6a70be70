"""Per-API-key token buckets: ``burst`` requests at once, refilled at ``requests_per_second``."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    requests_per_second: float = 100.0
    burst: int = 200


class RateLimiter:
    def __init__(self, limit: RateLimit, clock=time.monotonic):
        self.limit, self._clock = limit, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> int:
        """0 when the request may proceed, else the whole seconds to wait (>= 1) for ``Retry-After``."""
        rate, burst = self.limit.requests_per_second, float(self.limit.burst)
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.get(key, (burst, now))
            tokens = min(burst, tokens + (now - at) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0
            self._buckets[key] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / rate))
