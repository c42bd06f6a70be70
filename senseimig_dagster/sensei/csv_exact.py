"""The exact CSV reader: record by record with the ``csv`` module, from a record start, for whatever the fast path
(``csv_scan``) could not verify. Every record it meets is a row, or a :class:`Malformed` naming its line and cause:

- a byte sequence the file's encoding cannot decode makes *its record* an ``invalid_encoding`` reject (line and
  byte offset, never the bytes); the rest of the file is read on;
- a blank line (nothing, or only ``\\r``, before its line break) is not a record: skipped, never counted;
- a record that spans several physical lines and is still broken (an unclosed quote swallowing the records after
  it, a stray quote closing it somewhere else) is resynchronised: the first later line of the span from which a
  whole, well-formed record parses starts the next record, and only the lines before it are rejected.
"""

from __future__ import annotations

import csv
import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from senseimig_dagster.objects import PRIMARY_KEY

MALFORMED_ROW = "malformed_row"
INVALID_ENCODING = "invalid_encoding"
# A quoted record may span this many physical lines at most: past it, an unclosed quote is assumed (a note is
# never that long) and the reader resynchronises instead of holding the rest of the file in memory.
MAX_RECORD_LINES = 10_000


@dataclass(frozen=True)
class Malformed:
    line: int
    cause: str  # names counts and positions, never a value
    raw: str
    reason: str = MALFORMED_ROW
    source_id: str | None = None  # the record's id, when the record parsed and its id decoded cleanly


@dataclass(frozen=True)
class _Line:
    text: str  # decoded; an undecodable byte is kept as a lone surrogate (surrogateescape)
    number: int  # physical line number, 1-based
    bad_byte: int | None  # file offset of the first byte that did not decode


class _Lines:
    """Physical lines of a binary file, decoded, with a push-back queue for resynchronisation."""

    def __init__(self, f: BinaryIO, offset: int, line: int, encoding: str):
        self._f, self._offset, self._line, self.encoding = f, offset, line, encoding
        self._back: deque[_Line] = deque()

    def next(self) -> _Line | None:
        if self._back:
            return self._back.popleft()
        data = self._f.readline()
        if not data:
            return None
        bad = None
        try:
            text = data.decode(self.encoding)
        except UnicodeDecodeError as e:
            text, bad = data.decode(self.encoding, "surrogateescape"), self._offset + e.start
        line = _Line(text, self._line, bad)
        self._offset, self._line = self._offset + len(data), self._line + 1
        return line

    def push_back(self, lines: list[_Line]) -> None:
        self._back.extendleft(reversed(lines))

    def drop_first(self) -> None:
        self._back.popleft()


def encoding_label(encoding: str) -> str:
    return "UTF-8" if encoding == "utf-8" else encoding


class _TooLong(Exception):
    pass


@dataclass
class _Parsed:
    record: list[str] | None  # None: a csv syntax error, or nothing left
    lines: list[_Line]
    error: str | None = None

    @property
    def terminated(self) -> bool:
        return bool(self.lines) and self.lines[-1].text.endswith("\n")

    def whole(self, fields: int) -> bool:
        return self.record is not None and len(self.record) == fields and self.terminated

    @property
    def blank(self) -> bool:
        return len(self.lines) == 1 and self.lines[0].text in ("\n", "\r\n", "\r")


def _parse_one(lines: _Lines) -> _Parsed:
    """The next record (exactly the physical lines it takes)."""
    taken: list[_Line] = []

    def feed() -> Iterator[str]:
        while (line := lines.next()) is not None:
            taken.append(line)
            if len(taken) > MAX_RECORD_LINES:
                raise _TooLong
            yield line.text

    reader = csv.reader(feed(), strict=True)
    try:
        return _Parsed(next(reader), taken)
    except StopIteration:
        return _Parsed(None, taken, None if not taken else "the file ends inside this record")
    except csv.Error as e:  # the message names the syntax problem, not the data
        return _Parsed(None, taken, f"not valid CSV: {e}")
    except _TooLong:
        return _Parsed(None, taken, f"a quote left open for more than {MAX_RECORD_LINES} lines")


def _resync(lines: _Lines, taken: list[_Line], fields: int) -> int:
    """How many of ``taken``'s lines belong to the broken record: the first later line from which a whole record
    parses starts the next one (``lines`` is left positioned there); all of them when none does."""
    lines.push_back(taken[1:])
    for k in range(1, len(taken)):
        attempt = _parse_one(lines)
        lines.push_back(attempt.lines)
        if attempt.whole(fields) and not any(ln.bad_byte is not None for ln in attempt.lines):
            return k
        lines.drop_first()
    return len(taken)


def read_exact(f: BinaryIO, offset: int, line: int, names: tuple[str, ...], encoding: str
               ) -> Iterator[tuple[list[str | None], int, str] | Malformed]:
    """Rows ``(values, first line, raw text)`` and :class:`Malformed` records, in file order, from the position
    of ``f`` (a record start; ``offset`` and ``line`` are its place in the file) to the end of ``f``."""
    csv.field_size_limit(max(csv.field_size_limit(), min(sys.maxsize, 2**31 - 1)))  # long notes are fine
    lines, fields = _Lines(f, offset, line, encoding), len(names)
    while True:
        parsed = _parse_one(lines)
        if not parsed.lines:
            return
        if parsed.blank:
            continue
        taken = parsed.lines
        if not parsed.whole(fields) and len(taken) > 1:
            keep = _resync(lines, taken, fields)
            if keep < len(taken):
                taken = taken[:keep]
                yield Malformed(taken[0].number, f"a broken record over {keep} line(s) (an unclosed or stray "
                                                 "quote); read on from the next record start", _raw(taken, encoding))
                continue
        first, raw = taken[0].number, _raw(taken, encoding)
        bad = next((ln for ln in taken if ln.bad_byte is not None), None)
        if bad is not None:
            yield Malformed(first, f"not {encoding_label(encoding)} (line {bad.number}, byte offset {bad.bad_byte})", raw,
                            INVALID_ENCODING, _clean_id(parsed, names))
        elif parsed.error is not None:
            yield Malformed(first, parsed.error, raw)
        elif not parsed.terminated:
            yield Malformed(first, "the file ends inside this record (no line terminator): truncated", raw)
        elif len(parsed.record) != fields:
            yield Malformed(first, f"{len(parsed.record)} fields where the header has {fields}", raw)
        else:
            yield [v or None for v in parsed.record], first, raw


def _raw(taken: list[_Line], encoding: str) -> str:
    """The record as received, without its terminator; undecodable bytes written as ``\\xNN`` escapes."""
    text = "".join(ln.text for ln in taken).removesuffix("\n").removesuffix("\r")
    if any(ln.bad_byte is not None for ln in taken):
        text = text.encode(encoding, "surrogateescape").decode(encoding, "backslashreplace")
    return text


def _clean_id(parsed: _Parsed, names: tuple[str, ...]) -> str | None:
    """The record's id when it parsed into the header's fields and the id itself decoded cleanly."""
    if parsed.record is None or len(parsed.record) != len(names) or PRIMARY_KEY not in names:
        return None
    value = parsed.record[names.index(PRIMARY_KEY)].strip()
    return value if value and not any("\udc80" <= c <= "\udcff" for c in value) else None
