"""Indexing one ``<endpoint>.jsonl`` file: where each line is, and the keys pages are ordered and filtered by.

The result is a handful of stdlib ``array``s and one ``bytes`` blob (about 70 bytes a row, exactly, with no
allocator slack). Polars parses the file one block at a time and nothing it allocates outlives the block: a whole
file parsed by Polars leaves ~250 bytes a row of allocator slack behind, which a long-running server keeps.
"""

from __future__ import annotations

import array
import logging
from dataclasses import dataclass
from pathlib import Path

import orjson
import polars as pl

from senseimig_dagster.objects import MODIFIED_AT, PRIMARY_KEY, SenseiObject

log = logging.getLogger("senseimig.sandbox.sensei")

NULL_TS = -(2**63)  # rows without a parseable updated_at sort first and only match windows without a start
TS_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%#z"
BLOCK = 1 << 20  # small blocks keep Polars' transient parse memory small


@dataclass
class FileIndex:
    """Per line, in file order: byte span, id (slice of one blob), location code; plus the page order."""

    offs: array.array  # "q": byte offset of line i
    lens: array.array  # "i": byte length of line i (newline and trailing whitespace excluded)
    id_blob: bytes  # UTF-8 ids of all lines, concatenated
    id_ends: array.array  # "q": id of line i is id_blob[id_ends[i]:id_ends[i + 1]]
    locations: dict[str, int]  # location value -> code
    loc_codes: array.array  # "i": code of line i's location (-1: none)
    order: array.array  # "i": the lines sorted by (updated_at, id, line)
    ts: array.array  # "q": updated_at (epoch µs) of order[k], so pages bisect on it

    def id_of(self, line: int) -> bytes:
        return self.id_blob[self.id_ends[line]:self.id_ends[line + 1]]


def index_file(obj: SenseiObject, path: Path) -> FileIndex:
    loc = obj.location_field
    schema = {PRIMARY_KEY: pl.String, MODIFIED_AT: pl.String} | ({loc: pl.String} if loc else {})
    b = _Builder(loc, schema, path)
    if path.exists():
        with path.open("rb") as f:
            base, carry = 0, b""
            while True:
                chunk = f.read(BLOCK)
                data = carry + chunk
                cut = len(data) if not chunk else data.rfind(b"\n") + 1  # whole lines only
                if cut:
                    b.add(data[:cut], base)
                    base += cut
                carry = data[cut:]
                if not chunk:
                    break
    return b.finish()


class _Builder:
    def __init__(self, loc: str | None, schema: dict, path: Path):
        self.loc, self.schema, self.path = loc, schema, path
        self.offs, self.lens, self.ts = array.array("q"), array.array("i"), array.array("q")
        self.id_parts: list[bytes] = []
        self.id_ends = array.array("q", [0])
        self.locations: dict[str, int] = {}
        self.loc_codes = array.array("i")

    def add(self, block: bytes, base: int) -> None:
        offs, lens = _line_spans(block)
        try:
            keys = pl.read_ndjson(block, schema=self.schema)
        except Exception:  # a line that is not a JSON object: fall back to line by line
            keys = None
        if keys is None or keys.height != len(offs):
            offs, lens, keys = self._parse_slowly(block, base, offs, lens)
        self.offs.extend(base + o for o in offs)
        self.lens.extend(lens)
        ts = keys.get_column(MODIFIED_AT).str.to_datetime(TS_FORMAT, time_zone="UTC", strict=False)
        self.ts.extend(ts.dt.epoch("us").fill_null(NULL_TS).to_list())
        ids = keys.get_column(PRIMARY_KEY).fill_null("")
        self.id_parts.append("".join(ids.to_list()).encode())
        end = self.id_ends[-1]
        for n in ids.str.len_bytes().to_list():
            end += n
            self.id_ends.append(end)
        if self.loc:
            codes = self.locations
            self.loc_codes.extend(-1 if v is None else codes.setdefault(v, len(codes))
                                  for v in keys.get_column(self.loc).to_list())

    def _parse_slowly(self, block: bytes, base: int, offs: array.array,
                      lens: array.array) -> tuple[array.array, array.array, pl.DataFrame]:
        rows: dict[str, list] = {k: [] for k in self.schema}
        kept_offs, kept_lens = array.array("q"), array.array("i")
        for o, n in zip(offs, lens, strict=True):
            try:
                rec = orjson.loads(block[o:o + n])
            except orjson.JSONDecodeError:
                # Serving it would break the whole page's JSON, so the line is left out (and said so).
                log.warning("%s: the line at byte %d is not valid JSON; the simulator does not serve it",
                            self.path.name, base + o)
                continue
            kept_offs.append(o)
            kept_lens.append(n)
            for k in self.schema:
                v = rec.get(k) if isinstance(rec, dict) else None
                rows[k].append(None if v is None else v if isinstance(v, str) else orjson.dumps(v).decode())
        return kept_offs, kept_lens, pl.DataFrame(rows, schema=self.schema)

    def finish(self) -> FileIndex:
        # Sorted by (updated_at, line) in Polars (integers only); runs of equal updated_at then by (id, line).
        frame = pl.DataFrame({"ts": pl.Series(self.ts, dtype=pl.Int64)}).with_row_index("line")
        order = array.array("i", frame.sort(["ts", "line"]).get_column("line").to_list())
        del frame
        ts = array.array("q", (self.ts[i] for i in order))
        blob = b"".join(self.id_parts)
        index = FileIndex(self.offs, self.lens, blob, self.id_ends, self.locations, self.loc_codes, order, ts)
        _sort_ties_by_id(index)
        return index


def _line_spans(block: bytes) -> tuple[array.array, array.array]:
    """Offset and length of every non-blank line of the block (trailing whitespace and newline excluded)."""
    offs, lens = array.array("q"), array.array("i")
    pos, size = 0, len(block)
    while pos < size:  # no per-line Python objects: they would fragment the heap for good
        end = block.find(b"\n", pos)
        end = size if end < 0 else end
        stop = end
        while stop > pos and block[stop - 1] in b" \t\r":
            stop -= 1
        if stop > pos:
            offs.append(pos)
            lens.append(stop - pos)
        pos = end + 1
    return offs, lens


def _sort_ties_by_id(index: FileIndex) -> None:
    ts, order, n = index.ts, index.order, len(index.order)
    i = 0
    while i < n:
        j = i + 1
        while j < n and ts[j] == ts[i]:
            j += 1
        if j - i > 1:
            order[i:j] = array.array("i", sorted(order[i:j], key=lambda line: (index.id_of(line), line)))
        i = j
