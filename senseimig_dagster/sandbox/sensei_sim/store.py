"""The simulator's read-only record store: pages of a tenant's objects, served as the stored bytes.

Each ``<endpoint>.jsonl`` is indexed once (lazily, or up front with :meth:`TenantStore.warm`; see
:mod:`.indexing`) into rows sorted by (``updated_at``, ``id``, line number). The line number is a hidden last
tie-break so keyset paging stays exact even if a file holds two rows with the same (``updated_at``, ``id``). A page
is a binary search into that order plus ``pread``s of the file (neighbouring lines in one read): records go out
byte for byte as stored and are never re-encoded. File bytes are read per page rather than memory-mapped, since
mapped pages count towards the server's RSS.
"""

from __future__ import annotations

import array
import os
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from senseimig_dagster.objects import REGISTRY, SenseiObject
from senseimig_dagster.sandbox.sensei_sim.indexing import index_file

_READ_GAP = 4096  # lines closer than this in the file are fetched with one read
_MAX_LOCATION_VIEWS = 256


@dataclass(frozen=True)
class Window:
    since: int | None = None  # epoch µs, inclusive
    before: int | None = None  # epoch µs, exclusive
    location: str | None = None


@dataclass(frozen=True)
class Cursor:
    """The last row a page served: keyset position for the next page."""

    ts: int
    id: str
    line: int


@dataclass(frozen=True)
class Page:
    lines: list[bytes]
    total: int  # rows in the whole window, not just this page
    last: Cursor | None  # None when this is the last page


@dataclass(frozen=True)
class _View:
    """The sorted rows, or the subset at one location: ``lines[k]`` is the file line of row k."""

    lines: Sequence[int]
    ts: Sequence[int]


class ObjectIndex:
    def __init__(self, obj: SenseiObject, path: Path):
        self.obj = obj
        self._fd: int | None = os.open(path if path.exists() else os.devnull, os.O_RDONLY)
        self._ix = index_file(obj, path)
        self._all = _View(self._ix.order, self._ix.ts)
        self._views: dict[str, _View] = {}
        self._by_id: dict[bytes, int] | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._ix.order)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _view(self, location: str | None) -> _View:
        if location is None:
            return self._all
        code = self._ix.locations.get(location)
        if code is None:
            return _View((), ())
        with self._lock:
            view = self._views.get(location)
            if view is None:
                if len(self._views) >= _MAX_LOCATION_VIEWS:
                    self._views.clear()
                ix = self._ix
                keep = [k for k, line in enumerate(ix.order) if ix.loc_codes[line] == code]
                view = self._views[location] = _View(array.array("i", (ix.order[k] for k in keep)),
                                                     array.array("q", (ix.ts[k] for k in keep)))
            return view

    @staticmethod
    def _bounds(view: _View, window: Window) -> tuple[int, int]:
        lo = 0 if window.since is None else bisect_left(view.ts, window.since)
        hi = len(view.ts) if window.before is None else bisect_left(view.ts, window.before)
        return lo, max(lo, hi)

    def count(self, window: Window) -> int:
        lo, hi = self._bounds(self._view(window.location), window)
        return hi - lo

    def page(self, window: Window, after: Cursor | None, size: int) -> Page:
        view = self._view(window.location)
        lo, hi = self._bounds(view, window)
        start = lo if after is None else max(lo, self._position_after(view, after))
        end = min(start + size, hi)
        lines = list(view.lines[start:end])
        offs, lens = self._ix.offs, self._ix.lens
        records = self._read([offs[i] for i in lines], [lens[i] for i in lines])
        last = None
        if lines and end < hi:
            last = Cursor(view.ts[end - 1], self._ix.id_of(lines[-1]).decode(), lines[-1])
        return Page(records, hi - lo, last)

    def _position_after(self, view: _View, c: Cursor) -> int:
        """Index of the first row sorting after the cursor's (updated_at, id, line)."""
        a, b = bisect_left(view.ts, c.ts), bisect_right(view.ts, c.ts)
        if a == b:
            return a
        lines, id_of = view.lines, self._ix.id_of
        return bisect_right(range(len(lines)), (c.id.encode(), c.line), a, b,
                            key=lambda k: (id_of(lines[k]), lines[k]))

    def _read(self, offs: list[int], lens: list[int]) -> list[bytes]:
        """The lines at these spans, in this order; runs of nearby lines cost one ``pread``."""
        fd, out = self._fd, []
        i, n = 0, len(offs)
        while i < n:
            first, stop, j = offs[i], offs[i] + lens[i], i + 1
            while j < n and stop <= offs[j] <= stop + _READ_GAP:
                stop, j = offs[j] + lens[j], j + 1
            if j == i + 1:
                out.append(os.pread(fd, lens[i], first))  # type: ignore[arg-type]
            else:
                blob = os.pread(fd, stop - first, first)  # type: ignore[arg-type]
                out += [blob[o - first:o - first + ln] for o, ln in zip(offs[i:j], lens[i:j], strict=True)]
            i = j
        return out

    def find(self, record_id: str) -> bytes | None:
        """The stored line of a record by id (the latest copy if the file repeats it)."""
        with self._lock:
            if self._by_id is None:  # only content objects (documents) are looked up by id
                self._by_id = {self._ix.id_of(line): line for line in self._ix.order}
        line = self._by_id.get(record_id.encode())
        if line is None:
            return None
        return self._read([self._ix.offs[line]], [self._ix.lens[line]])[0]


class TenantStore:
    """Every registry object of a tenant directory, indexed on first use."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        if not self.data_dir.is_dir():
            raise FileNotFoundError(f"tenant directory {self.data_dir} does not exist")
        self._indexes: dict[str, ObjectIndex] = {}
        self._lock = threading.Lock()
        self._seed: int | None = None

    def index(self, obj: SenseiObject) -> ObjectIndex:
        idx = self._indexes.get(obj.name)
        if idx is None:
            with self._lock:  # one thread indexes; the others wait for it rather than repeat the work
                idx = self._indexes.get(obj.name)
                if idx is None:
                    idx = self._indexes[obj.name] = ObjectIndex(obj, self.data_dir / f"{obj.endpoint}.jsonl")
        return idx

    def warm(self) -> int:
        """Index every object now; returns the number of rows indexed."""
        return sum(len(self.index(o)) for o in REGISTRY)

    @property
    def seed(self) -> int:
        if self._seed is None:
            manifest = self.data_dir / "manifest.json"
            self._seed = int(orjson.loads(manifest.read_bytes())["seed"]) if manifest.exists() else 0
        return self._seed

    def close(self) -> None:
        with self._lock:
            for idx in self._indexes.values():
                idx.close()
            self._indexes.clear()
