"""Byte-level reading of one CSV export file: the header, then chunks of string rows, each row with the physical line
it starts on, and every record that is not a row of the header's shape.

Fast path: the file is cut into blocks at record boundaries (a ``\\n`` after an even number of ``"`` ends a record
under RFC 4180) and Polars parses each block as all-String columns. Polars pads a short row with nulls without a
word, so each block is verified before use, on a zero-copy UInt8 view of its bytes (SIMD): its ``,`` bytes must be
rows x (fields - 1) plus the commas inside values (a blank or short row leaves them short; a long row makes Polars
fail) and its ``\\n`` bytes rows plus the line breaks inside values, which also give every row its physical line.

Exact path (``csv_exact``): a block that fails (Polars error, a byte that does not decode, a ragged or blank row,
bad quoting) is read record by record with the ``csv`` module, which names the line of every malformed record and
the byte offset of an undecodable one. When the block's only faults are undecodable records and blank lines, the
fast path resumes after it; a structural fault (a record that may run past the block) sends the rest of the file
to the exact reader. A well-formed file never takes it.

Encoding: UTF-8 (with or without BOM) unless the export is declared in another ASCII-compatible encoding (a legacy
``cp1252``), whose blocks are transcoded to UTF-8 for Polars.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import polars as pl
import pyarrow as pa

from senseimig_dagster import objects
from senseimig_dagster.objects import MODIFIED_AT, PRIMARY_KEY
from senseimig_dagster.sensei.csv_exact import INVALID_ENCODING, Malformed, encoding_label, read_exact
from senseimig_dagster.sensei.errors import SenseiExportError

BOM = b"\xef\xbb\xbf"
HEADER_MAX = 1 << 20
MIN_BLOCK, MAX_BLOCK = 1 << 16, 1 << 28
NL, CR, COMMA, QUOTE = 10, 13, 44, 34


@dataclass(frozen=True)
class Header:
    names: tuple[str, ...]
    data_start: int  # byte offset of the first data record
    first_data_line: int  # physical line number (1-based) of the first data record
    encoding: str = "utf-8"  # the file's declared encoding (an ASCII-compatible one)


@dataclass
class Chunk:
    """String rows (one column per header name; empty fields are null) and where each came from."""

    frame: pl.DataFrame
    lines: pl.Series  # Int64, ascending: physical line of each row's first line
    raw: Callable[[int], str]  # row index -> the record as received (only called for rejected rows)
    malformed: list[Malformed] = field(default_factory=list)


def read_header(name: str, path: Path, encoding: str = "utf-8") -> Header:
    encoding = _checked_encoding(name, encoding)
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
        text = probe[start:end].decode(encoding)
    except UnicodeDecodeError as e:
        raise SenseiExportError(name, "header", f"not {encoding_label(encoding)} (byte offset {start + e.start})") from None
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
    return Header(tuple(names), end, text.count("\n") + 1, encoding)


def _checked_encoding(name: str, encoding: str) -> str:
    """The codec's canonical name; only encodings that write line breaks, commas and quotes as ASCII bytes (and
    never inside another character) can be cut into records by byte."""
    try:
        codec = codecs.lookup(encoding)
    except LookupError:
        raise SenseiExportError(name, "header", f"unknown encoding {encoding!r}") from None
    if codec.name.startswith(("utf-16", "utf-32")) or '\n,"'.encode(codec.name) != b'\n,"':
        raise SenseiExportError(name, "header", f"encoding {encoding!r} is not ASCII-compatible")
    return codec.name


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
    """Data records in the file, counted apart from the reader so it can check what the reader delivered: by
    RFC 4180 quote parity (Polars' SIMD row count, ~2 GB/s), less the blank lines outside quotes (not records).
    A file whose quotes do not pair up as RFC 4180 places them (an unclosed or a stray quote) has no parity count
    to trust: its records are what the reader's resynchronisation makes of it, so the reader counts them."""
    if path.stat().st_size <= header.data_start:
        return 0
    rows = pl.scan_csv(path, infer_schema=False, quote_char='"').select(pl.len()).collect().item()
    quotes, blanks, misplaced, prev = 0, 0, False, b"\n"
    with path.open("rb") as f:
        f.seek(header.data_start)
        while buf := f.read(block):
            u8 = _u8(buf)
            at = (u8 == QUOTE).arg_true()
            misplaced = misplaced or _misplaced_quotes(u8, at, quotes % 2, prev)
            blanks += _blank_lines(buf, at, quotes, prev)
            quotes += at.len()
            prev = buf[-1:]
    if misplaced or quotes % 2:
        return sum(c.frame.height + len(c.malformed) for c in iter_chunks(path.stem, path, header, 100_000))
    return rows - blanks


_OPENS_AFTER = pl.Series([COMMA, NL, QUOTE], dtype=pl.UInt8)  # a quoted field starts after these
_CLOSES_BEFORE = pl.Series([COMMA, CR, NL, QUOTE], dtype=pl.UInt8)  # and ends before these


def _misplaced_quotes(u8: pl.Series, at: pl.Series, parity: int, prev: bytes) -> bool:
    """Whether a quote of the block is not where RFC 4180 puts one: an opening quote not at a field's start, a
    closing one not at its end (the quote count before the block gives which is which)."""
    if at.is_empty():
        return False
    n = len(u8)
    before = u8.gather((at.cast(pl.Int64) - 1).clip(0))
    if at[0] == 0:
        before = before.scatter(0, prev[0] if prev else NL)
    after = u8.gather((at.cast(pl.Int64) + 1).clip(upper_bound=n - 1))
    opening = (pl.int_range(at.len(), eager=True) + parity) % 2 == 0
    bad = (opening & ~before.is_in(_OPENS_AFTER)) | (~opening & ~after.is_in(_CLOSES_BEFORE) & (at != n - 1))
    return bool(bad.any())


def _blank_lines(buf: bytes, at: pl.Series, quotes_before: int, prev: bytes) -> int:
    """Empty lines (``\n`` or ``\r\n`` right after a line break) outside quotes in the block."""
    starts = [-1] if prev == b"\n" and (buf.startswith(b"\n") or buf.startswith(b"\r\n")) else []
    for pattern in (b"\n\n", b"\n\r\n"):
        pos = buf.find(pattern)
        while pos >= 0:
            starts.append(pos)
            pos = buf.find(pattern, pos + 1)
    if not starts:
        return 0
    before = at.search_sorted(pl.Series(starts, dtype=pl.Int64) + 1) + quotes_before
    return int((before % 2 == 0).sum())


def iter_chunks(name: str, path: Path, header: Header, chunk_rows: int,
                text_columns: Collection[str] = ()) -> Iterator[Chunk]:
    """Chunks of at most ``chunk_rows`` records, in file order. Line breaks are looked for in ``text_columns``
    first (the only ones that should hold any), in all columns when those do not hold them all."""
    names, encoding = header.names, header.encoding
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
            utf8 = _as_utf8(block, encoding)
            parsed = _fast(utf8, names, line, text) if utf8 is not None else None
            newlines = block.count(b"\n")
            if parsed is None:
                local = _exact_block(block, offset, line, names, chunk_rows, encoding)
                if local is None:  # a structural fault: its record may run past the block, read on exactly
                    f.seek(offset)
                    yield from _exact(f, offset, line, names, chunk_rows, encoding)
                    return
                yield from local
            else:
                chunk, newlines = parsed
                yield from _split(chunk, chunk_rows)
                if chunk.frame.height:
                    size = min(max(int(cut / chunk.frame.height * chunk_rows), MIN_BLOCK), MAX_BLOCK)
            offset, line = offset + cut, line + newlines
        if carry:  # the file ends inside a record: let the exact reader name it
            f.seek(offset)
            yield from _exact(f, offset, line, names, chunk_rows, encoding)


def _as_utf8(block: bytes, encoding: str) -> bytes | None:
    """The block in UTF-8 for Polars; None when some byte does not decode (the exact reader names it)."""
    if codecs.lookup(encoding).name == "utf-8":
        return block
    try:
        return block.decode(encoding).encode("utf-8")
    except UnicodeDecodeError:
        return None


def _exact_block(block: bytes, offset: int, line: int, names: tuple[str, ...], chunk_rows: int,
                 encoding: str) -> list[Chunk] | None:
    """One block by the exact reader when its only faults are records that do not decode and blank lines (the
    fast path resumes after it); None when it holds a structural fault."""
    chunks = list(_exact(io.BytesIO(block), offset, line, names, chunk_rows, encoding))
    if any(m.reason != INVALID_ENCODING for c in chunks for m in c.malformed):
        return None
    return chunks


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


def _exact(f: BinaryIO, offset: int, line: int, names: tuple[str, ...], chunk_rows: int,
           encoding: str) -> Iterator[Chunk]:
    """Read the rest of ``f`` (positioned at a record start, byte ``offset`` of the file) exactly, in chunks."""
    rows: list[list[str | None]] = []
    starts: list[int] = []
    raws: list[str] = []
    bad: list[Malformed] = []
    for item in read_exact(f, offset, line, names, encoding):
        if isinstance(item, Malformed):
            bad.append(item)
        else:
            rows.append(item[0])
            starts.append(item[1])
            raws.append(item[2])
        if len(rows) + len(bad) >= chunk_rows:
            yield _exact_chunk(names, rows, starts, raws, bad)
            rows, starts, raws, bad = [], [], [], []
    if rows or bad:
        yield _exact_chunk(names, rows, starts, raws, bad)


def _exact_chunk(names: tuple[str, ...], rows: list, starts: list[int], raws: list[str],
                 bad: list[Malformed]) -> Chunk:
    frame = pl.DataFrame(rows, schema={n: pl.String for n in names}, orient="row")
    return Chunk(frame, pl.Series(starts, dtype=pl.Int64), raws.__getitem__, bad)
