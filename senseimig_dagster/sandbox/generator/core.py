"""The generation context: one seeded RNG, the tenant clock, the writer and the defect planner.

Everything random comes from ``Ctx.rng`` in a fixed order, so a (patients, seed, as_of) triple always produces
the same bytes. Ids are drawn from the same RNG (never ``uuid4``).
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import random
from collections import Counter
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, Generic, TypeVar

from senseimig_dagster.sandbox.generator.writer import TenantWriter

T = TypeVar("T")

UTC = dt.UTC
DEFAULT_AS_OF = dt.datetime(2026, 11, 1, tzinfo=UTC)
HISTORY_YEARS = 10
DAY = dt.timedelta(days=1)
CENT = Decimal("0.01")

SOFT_DELETE_RATE = 0.005
LATE_UPDATE_RATE = 0.06  # rows touched long after creation, so modification-day windows select real subsets
RECENT_UPDATE_SHARE = 0.3  # of those, updated in the last month (the delta windows a cutover replays)


_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))  # version nibble and variant bits
_UUID_SET = (4 << 76) | (0x8000 << 48)  # version 4, RFC 4122 variant


class Rng(random.Random):
    def uid(self) -> str:
        """A version-4 UUID string from this RNG (same text as ``str(uuid.UUID(int=..., version=4))``)."""
        n = (self.getrandbits(128) & _UUID_CLEAR) | _UUID_SET
        h = f"{n:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def chance(self, p: float) -> bool:
        return self.random() < p

    def between(self, lo: dt.datetime, hi: dt.datetime) -> dt.datetime:
        """A whole-second instant in [lo, hi] (lo when hi <= lo)."""
        span = int((hi - lo).total_seconds())
        return lo + dt.timedelta(seconds=self.randint(0, span)) if span > 0 else lo

    def after(self, at: dt.datetime, lo_days: float, hi_days: float) -> dt.datetime:
        """An instant between ``lo_days`` and ``hi_days`` after ``at``."""
        return at + self.uniform(lo_days, hi_days) * DAY

    def money(self, lo: float, hi: float) -> Decimal:
        return Decimal(self.randint(round(lo * 100), round(hi * 100))) * CENT

    def digits(self, n: int) -> str:
        return str(self.randrange(10**n)).zfill(n)

    def code(self, n: int, alphabet: str = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") -> str:
        return "".join(self.choice(alphabet) for _ in range(n))


class Weighted(Generic[T]):
    """A fixed weighted choice, cheaper than ``random.choices`` in hot loops."""

    def __init__(self, pairs: Sequence[tuple[T, float]]) -> None:
        self.items = [item for item, _ in pairs]
        self.cum = list(itertools.accumulate(weight for _, weight in pairs))

    def pick(self, rng: random.Random) -> T:
        return self.items[bisect.bisect(self.cum, rng.random() * self.cum[-1])]


def money(value: Decimal | float) -> Decimal:
    return Decimal(value).quantize(CENT)


class Ctx:
    """Shared state of one generation run."""

    def __init__(self, writer: TenantWriter, seed: int, as_of: dt.datetime) -> None:
        self.rng = Rng(seed)
        self.seed = seed
        self.as_of = as_of
        self.start = as_of - dt.timedelta(days=round(365.25 * HISTORY_YEARS))
        self.writer = writer
        self.row_hooks: dict[str, Callable[[Ctx, str, dict[str, Any]], None]] = {}
        self._quota_at: dict[int, list[str]] = {}
        self._pending: Counter[str] = Counter()
        self._numbers: Counter[str] = Counter()
        self.flags: set[str] = set()

    # -- rows ------------------------------------------------------------------------------------------------
    def emit(
        self, obj: str, row: dict[str, Any], created: dt.datetime, updated: dt.datetime | None = None
    ) -> None:
        """Stamp the audit columns and write the row (after any defect hook for its object)."""
        hook = self.row_hooks.get(obj)
        if hook is not None:
            hook(self, obj, row)
        self.stamp(row, created, updated)
        if obj == "document":
            self.writer.write_document(row)
        else:
            self.writer.write(obj, row)

    def stamp(self, row: dict[str, Any], created: dt.datetime, updated: dt.datetime | None) -> None:
        rng, as_of = self.rng, self.as_of
        created = min(created, as_of)
        if rng.random() < LATE_UPDATE_RATE:
            month_ago = as_of - 31 * DAY
            lo = max(created, month_ago) if rng.random() < RECENT_UPDATE_SHARE else created
            updated = rng.between(lo, as_of)
        elif updated is None:
            updated = created + dt.timedelta(seconds=int(rng.random() * 3 * 86400))
        row["created_at"] = created
        row["updated_at"] = min(max(updated, created), as_of)
        row["is_deleted"] = rng.random() < SOFT_DELETE_RATE

    def defect(self, kind: str, obj: str, id_: str, **details: str | None) -> None:
        """Record an injected defect (``field``, ``detail``, ``of``: see ``TenantWriter.defect``)."""
        self.writer.defect(kind, obj, id_, **details)

    def next_number(self, series: str) -> int:
        self._numbers[series] += 1
        return self._numbers[series]

    def peek_number(self, series: str) -> int:
        """The number ``next_number`` will hand out next (a resubmission names its successor claim)."""
        return self._numbers[series] + 1

    # -- rare defects: exact counts, spread over the patients ------------------------------------------------
    def plan_quotas(self, patients: int, rates: dict[str, float]) -> None:
        """Schedule ``max(1, round(patients * rate))`` occurrences of each kind at random patient slots."""
        for kind, rate in rates.items():
            k = min(patients, max(1, round(patients * rate))) if patients else 0
            for slot in self.rng.sample(range(patients), k):
                self._quota_at.setdefault(slot, []).append(kind)

    def open_slot(self, slot: int) -> None:
        """Patient slot ``slot`` begins: its scheduled defects become pending until a row can host them."""
        for kind in self._quota_at.pop(slot, ()):
            self._pending[kind] += 1

    def take(self, kind: str) -> bool:
        """Consume one pending occurrence of ``kind`` (True) if any is waiting for a host row."""
        if self._pending[kind] > 0:
            self._pending[kind] -= 1
            return True
        return False

    def pending(self, kind: str) -> bool:
        return self._pending[kind] > 0
