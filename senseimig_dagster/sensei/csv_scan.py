"""Byte-level reading of one CSV export file: the header, then chunks of string rows, each row with the physical line
it starts on, and every record that is not a row of the header's shape.

Fast path: the file is cut into blocks at record boundaries (a ``\\n`` after an even number of ``"`` ends a record
under RFC 4180) and Polars parses each block as all-String columns. Polars pads a short row with nulls without a
word, so each block is verified before use, on a zero-copy UInt8 view of its bytes (SIMD): its ``,`` bytes must be
rows x (fields - 1) plus the commas inside values (a blank or short row leaves them short; a long row makes Polars
fail) and its ``\\n`` bytes rows plus the line breaks inside values, which also give every row its physical line.

Exact path: from the first block that fails (Polars error, invalid UTF-8, a ragged or blank row, bad quoting) the
rest of the file is read record by record with the ``csv`` module, which names the line of every malformed record
and the byte offset of invalid UTF-8. A well-formed file never takes it.
"""

from __future__ import annotations

import csv
import sys
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import polars as pl
import pyarrow as pa

from senseimig_dagster import objects
from senseimig_dagster.objects import MODIFIED_AT, PRIMARY_KEY
from senseimig_dagster.sensei.errors import SenseiExportError

BOM = b"\xef\xbb\xbf"
HEADER_MAX = 1 << 20
MIN_BLOCK, MAX_BLOCK = 1 << 16, 1 << 28
NL, COMMA, QUOTE = 10, 44, 34


@dataclass(frozen=True)
class Header:
    names: tuple[str, ...]
    data_start: int  # byte offset of the first data record
    first_data_line: int  # physical line number (1-based) of the first data record


@dataclass(frozen=True)
class Malformed:
    line: int
    cause: str  # names counts and positions, never a value
    raw: str


@dataclass
class Chunk:
    """String rows (one column per header name; empty fields are null) and where each came from."""

    frame: pl.DataFrame
    lines: pl.Series  # Int64, ascending: physical line of each row's first line
    raw: Callable[[int], str]  # row index -> the record as received (only called for rejected rows)
    malformed: list[Malformed] = field(default_factory=list)


def read_header(name: str, path: Path) -> Header:
    with path.open("rb") as f:
        probe = f.read(HEADER_MAX)
    start = len(BOM) if probe.startswith(BOM) else 0
    if not probe[start:].strip():
        raise SenseiExportError(name, "header", "the file is empty: no header row")
    end = _first_boundary(probe, start)
    if end < 0:
        if len(probe) == HEADER_MAX:
            raise SenseiExportError(name, "header", f"no end of the header row in the first {HEADER_MAX} bytes")
        end = len(probe)
    try:
        text = probe[start:end].decode("utf-8")
    except UnicodeDecodeError as e:
        raise SenseiExportError(name, "header", f"not UTF-8 (byte offset {start + e.start})") from None
    names = next(csv.reader([text.rstrip("\r\n")]), [])
    if not any(n.strip() for n in names):
        raise SenseiExportError(name, "header", "the header row is empty")
    # A file that lost its header row reads its first record as the header: its cells may be PHI, so the
    # required columns are checked first and only the object's registry field names are ever quoted.
    required = [c for c in (PRIMARY_KEY, MODIFIED_AT) if c not in names]
    if required:
        raise SenseiExportError(name, "header", f"required column(s) missing: {', '.join(required)} "
                                                f"(is the header row missing?)")
    twice = sorted(n for n, k in Counter(names).items() if k > 1)
    if twice:
        obj = objects.OBJECTS.get(name)
        known = frozenset(obj.field_names if obj else (PRIMARY_KEY, MODIFIED_AT))
        quoted = [n for n in twice if n in known]
        others = len(twice) - len(quoted)
        listed = quoted + ([f"{others} other name(s) not in the registry"] if others else [])
        raise SenseiExportError(name, "header", f"column names repeated: {', '.join(listed)}")
    return Header(tuple(names), end, text.count("\n") + 1)


def _first_boundary(buf: bytes, start: int) -> int:
    """Index just after the first record terminator at or after ``start``, or -1."""
    quotes, pos = 0, start
    while (nl := buf.find(b"\n", pos)) >= 0:
        quotes += buf.count(b'"', pos, nl)
        if quotes % 2 == 0:
            return nl + 1
        pos = nl + 1
    return -1


def _last_boundary(buf: bytes, quotes: int) -> int:
    """Index just after the last record terminator of ``buf`` (which starts at a record start), or 0."""
    end = len(buf)
    while (nl := buf.rfind(b"\n", 0, end)) >= 0:
        quotes -= buf.count(b'"', nl, end)
        if quotes % 2 == 0:
            return nl + 1
        end = nl
    return 0


def _u8(buf: bytes) -> pl.Series:
    return pl.Series(pa.Array.from_buffers(pa.uint8(), len(buf), [None, pa.py_buffer(buf)]))  # no copy


def count_records(path: Path, header: Header, block: int = 1 << 26) -> int:
    """Data records in the file by RFC 4180 quote parity: record terminators outside quotes, plus a last record
    without one. Counted apart from the reader (Polars' SIMD row count, ~2 GB/s), so it can check what the
    reader delivered; they differ only for a stray quote inside an unquoted field, which RFC 4180 forbids."""
    if path.stat().st_size <= header.data_start:
        return 0
    rows = pl.scan_csv(path, infer_schema=False, quote_char='"').select(pl.len()).collect().item()
    quotes, last = 0, b""
    with path.open("rb") as f:
        f.seek(header.data_start)
        while buf := f.read(block):
            quotes += int((_u8(buf) == QUOTE).sum())
            last = buf[-1:]
    # Polars does not count a last record that opens a quote and ends with a line break inside it.
    return rows + (1 if quotes % 2 and last == b"\n" else 0)


def iter_chunks(name: str, path: Path, header: Header, chunk_rows: int,
                text_columns: Collection[str] = ()) -> Iterator[Chunk]:
    """Chunks of at most ``chunk_rows`` records, in file order. Line breaks are looked for in ``text_columns``
    first (the only ones that should hold any), in all columns when those do not hold them all."""
    names = header.names
    text = [i for i, n in enumerate(names) if n in text_columns]
    size = min(max(chunk_rows * 256, MIN_BLOCK), 1 << 26)
    with path.open("rb") as f:
        f.seek(header.data_start)
        offset, line, carry = header.data_start, header.first_data_line, b""
        while data := f.read(size):
            buf = carry + data if carry else data
            u8 = _u8(buf)
            cut = _last_boundary(buf, int((u8 == QUOTE).sum()))
            if cut == 0:  # one record longer than the block: read on
                carry, size = buf, min(size * 2, MAX_BLOCK)
                continue
            block, carry = buf[:cut], buf[cut:]
            parsed = _fast(block, names, line, text)
            if parsed is None:
                yield from _exact(name, f, offset, line, names, chunk_rows)
                return
            chunk, newlines = parsed
            yield from _split(chunk, chunk_rows)
            offset, line = offset + cut, line + newlines
            if chunk.frame.height:
                size = min(max(int(cut / chunk.frame.height * chunk_rows), MIN_BLOCK), MAX_BLOCK)
        if carry:  # the file ends inside a record: let the exact reader name it
            yield from _exact(name, f, offset, line, names, chunk_rows)


def _fast(block: bytes, names: tuple[str, ...], first_line: int, text: list[int]) -> tuple[Chunk, int] | None:
    """Parse one block with Polars and verify it; None when the block needs the exact reader."""
    try:
        frame = pl.read_csv(block, has_header=False, schema={n: pl.String for n in names}, quote_char='"',
                            encoding="utf8", raise_if_empty=False)
    except pl.exceptions.PolarsError:  # too many fields, invalid UTF-8, bad quoting
        return None
    rows = frame.height
    if not rows:
        return None
    u8 = _u8(block)
    newlines, commas = int((u8 == NL).sum()), int((u8 == COMMA).sum())
    everything = list(range(frame.width))
    # Commas are counted in every value: one missed could hide a short row of the same block. Line breaks are
    # exact either way (each is a terminator or inside a value), so the text columns are enough when they add up.
    inner = frame.select(_in_values("\n", text or everything).alias("nl"), _in_values(",", everything).sum().alias("c"))
    inner_nl = inner.get_column("nl")
    if text and newlines != rows + int(inner_nl.sum()):
        inner_nl = frame.select(_in_values("\n", everything)).to_series()
    if newlines != rows + int(inner_nl.sum()) or commas - int(inner["c"][0]) != rows * (len(names) - 1):
        return None  # a short or blank row (Polars pads them with nulls), or a line break it did not see
    spans = inner_nl + 1
    lines = (spans.cum_sum() - spans + first_line).cast(pl.Int64)

    ends: list[pl.Series] = []  # byte offsets of the block's newlines, computed for the first reject only

    def raw(i: int) -> str:
        if not ends:
            ends.append((u8 == NL).arg_true())
        k = int(lines[i]) - first_line  # the record's first line, counted from the block's start
        start = int(ends[0][k - 1]) + 1 if k else 0
        return block[start:int(ends[0][k + int(inner_nl[i])])].decode("utf-8").removesuffix("\r")

    return Chunk(frame, lines, raw), newlines


def _in_values(char: str, columns: list[int]) -> pl.Expr:
    """How often ``char`` occurs inside each row's values (columns by position: header names are arbitrary)."""
    return pl.sum_horizontal(pl.nth(i).str.count_matches(char, literal=True).fill_null(0) for i in columns)


def _split(chunk: Chunk, chunk_rows: int) -> Iterator[Chunk]:
    if chunk.frame.height <= chunk_rows:
        yield chunk
        return
    for start in range(0, chunk.frame.height, chunk_rows):
        yield Chunk(chunk.frame.slice(start, chunk_rows), chunk.lines.slice(start, chunk_rows),
                    lambda i, s=start: chunk.raw(s + i), chunk.malformed if start == 0 else [])


def _exact(name: str, f: BinaryIO, offset: int, line: int, names: tuple[str, ...],
           chunk_rows: int) -> Iterator[Chunk]:
    """Read the rest of the file from ``offset`` (a record start) with the csv module, record by record."""
    csv.field_size_limit(max(csv.field_size_limit(), min(sys.maxsize, 2**31 - 1)))  # long notes are fine
    f.seek(offset)
    pending: list[str] = []  # physical lines of the record being read
    at = [offset, line]  # byte offset and line number of the next physical line

    def physical_lines() -> Iterator[str]:
        for data in f:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                raise SenseiExportError(name, f"line {at[1]}", f"not UTF-8 (byte offset {at[0] + e.start})") from None
            at[0], at[1] = at[0] + len(data), at[1] + 1
            pending.append(text)
            yield text

    reader = csv.reader(physical_lines(), strict=True)
    rows: list[list[str | None]] = []
    starts: list[int] = []
    raws: list[str] = []
    bad: list[Malformed] = []
    while True:
        first = at[1]
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as e:  # the message names the syntax problem, not the data
            bad.append(Malformed(first, f"not valid CSV: {e}", _chomp("".join(pending))))
            pending.clear()
            continue
        raw = "".join(pending)
        pending.clear()
        if not raw.endswith("\n"):
            bad.append(Malformed(first, "the file ends inside this record (no line terminator): truncated", raw))
        elif len(record) != len(names):
            bad.append(Malformed(first, f"{len(record)} fields where the header has {len(names)}", _chomp(raw)))
        else:
            rows.append([v or None for v in record])
            starts.append(first)
            raws.append(_chomp(raw))
        if len(rows) + len(bad) >= chunk_rows:
            yield _exact_chunk(names, rows, starts, raws, bad)
            rows, starts, raws, bad = [], [], [], []
    if rows or bad:
        yield _exact_chunk(names, rows, starts, raws, bad)


def _chomp(record: str) -> str:
    """The record without its line terminator."""
    return record.removesuffix("\n").removesuffix("\r")


def _exact_chunk(names: tuple[str, ...], rows: list, starts: list[int], raws: list[str],
                 bad: list[Malformed]) -> Chunk:
    frame = pl.DataFrame(rows, schema={n: pl.String for n in names}, orient="row")
    return Chunk(frame, pl.Series(starts, dtype=pl.Int64), raws.__getitem__, bad)
