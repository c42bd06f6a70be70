"""Reading Sensei's CSV Data Export: one ``<endpoint>.csv`` per object (UTF-8 with or without BOM, RFC 4180).

``read_export`` yields :class:`~senseimig_dagster.sensei.records.Batch` es typed by the same caster as the REST path
(``cast_batch(..., "csv")``), so both sources land identical rows. Per row:

- ``_source_ref`` is ``"line N"``: the physical line (1-based, the header is line 1) on which the record starts, so
  multi-line notes do not shift the numbers;
- ``_extra`` is a JSON object of the columns the registry does not know (kept, never dropped), else null;
- a rejected row's ``raw`` is the record's text as it is in the file.

Windows: a row belongs to ``[modified_since, modified_before)`` by its *typed* ``updated_at``. Rows that have no
valid ``updated_at`` and records that are not rows at all (too many or too few fields, a broken quote, a truncated
last record: reason ``malformed_row``; a byte the file's encoding cannot decode: ``invalid_encoding``, with line
and byte offset) belong to no window; blank lines are not records; they are reported only by the open-ended first window
(``modified_since is None``), so adjacent windows partition the file and every record is counted exactly once.

Whole-file problems raise :class:`SenseiExportError` naming the object and ``"header"`` or ``"line N"``: a missing
file, an empty file, a header without ``id``/``updated_at`` or with too few of the object's columns, a header that
does not decode (with its byte offset). A legacy export is read in its declared ``encoding`` (``cp1252``). Messages name fields, lines and counts, never values.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import polars as pl

from senseimig_dagster.objects import MODIFIED_AT, PRIMARY_KEY, SenseiObject
from senseimig_dagster.sensei import csv_exact, csv_scan
from senseimig_dagster.sensei.errors import SenseiExportError
from senseimig_dagster.sensei.records import (
    EXTRA,
    RAW,
    SOURCE_REF,
    Batch,
    Extraction,
    Reject,
    cast_batch,
    parse_datetimes,
)

log = logging.getLogger("senseimig.sensei.exports")

MALFORMED_ROW = csv_exact.MALFORMED_ROW
INVALID_ENCODING = csv_exact.INVALID_ENCODING


def export_path(obj: SenseiObject, export_dir: Path) -> Path:
    return Path(export_dir) / obj.export_file


def export_count(obj: SenseiObject, export_dir: Path, *, encoding: str = "utf-8") -> int:
    """Data records in the object's export file (all history), counted apart from the reader
    (``csv_scan.count_records``): equals landed + rejected over windows that cover all time."""
    path, header = _open(obj, export_dir, encoding)
    return csv_scan.count_records(path, header)


def extract_export(obj: SenseiObject, export_dir: Path, modified_since: dt.datetime | None,
                   modified_before: dt.datetime | None, *, chunk_rows: int = 100_000,
                   encoding: str = "utf-8") -> Extraction:
    """A lazy extraction of one window. ``source_count`` is known only for an unbounded window (the file's record
    count): the file does not say how many rows a bounded window holds without parsing it all. Header problems
    raise here, at once."""
    path, header = _open(obj, export_dir, encoding)
    batches = _read(obj, path, header, modified_since, modified_before, chunk_rows)
    unbounded = modified_since is None and modified_before is None
    return Extraction(obj.name, "export", batches,
                      source_count=csv_scan.count_records(path, header) if unbounded else None)


def read_export(obj: SenseiObject, export_dir: Path, modified_since: dt.datetime | None,
                modified_before: dt.datetime | None, *, chunk_rows: int = 100_000,
                encoding: str = "utf-8") -> Iterator[Batch]:
    """Typed batches of at most ``chunk_rows`` records of one window; header problems raise at once."""
    path, header = _open(obj, export_dir, encoding)
    return _read(obj, path, header, modified_since, modified_before, chunk_rows)


def _read(obj: SenseiObject, path: Path, header: csv_scan.Header, modified_since: dt.datetime | None,
          modified_before: dt.datetime | None, chunk_rows: int) -> Iterator[Batch]:
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    unknown = [n for n in header.names if n not in obj.field_names]
    if unknown:
        log.info("%s: %d column(s) the registry does not know kept in %s: %s", obj.name, len(unknown), EXTRA,
                 ", ".join(unknown))
    window = _Window(_utc(modified_since), _utc(modified_before))
    text = {n for n in header.names if n in unknown or obj.field(n).type in ("str", "text", "json")}
    chunks = csv_scan.iter_chunks(obj.name, path, header, chunk_rows, text)
    return (_batch(obj, chunk, unknown, window) for chunk in chunks)


def _open(obj: SenseiObject, export_dir: Path, encoding: str = "utf-8") -> tuple[Path, csv_scan.Header]:
    path = export_path(obj, export_dir)
    if not path.is_file():
        raise SenseiExportError(obj.name, "header", f"export file {obj.export_file} not found in the export folder")
    header = csv_scan.read_header(obj.name, path, encoding)
    required = [c for c in (PRIMARY_KEY, MODIFIED_AT) if c not in header.names]
    if required:
        raise SenseiExportError(obj.name, "header", f"required column(s) missing: {', '.join(required)}")
    missing = [f for f in obj.field_names if f not in header.names]
    if len(missing) * 2 > len(obj.fields):  # id and updated_at alone do not make it this object's file
        raise SenseiExportError(obj.name, "header", f"not the {obj.name} export: {len(missing)} of its "
                                                    f"{len(obj.fields)} columns are missing")
    if missing:
        log.warning("%s: column(s) missing from %s, landed as null: %s", obj.name, obj.export_file,
                    ", ".join(missing))
    return path, header


class _Window:
    def __init__(self, since: dt.datetime | None, before: dt.datetime | None):
        self.since, self.before = since, before

    def keep(self, frame: pl.DataFrame) -> pl.Series | None:
        """Which rows belong to the window; None for all of them."""
        if self.since is None and self.before is None:
            return None
        updated_at = _updated_at(frame.get_column(MODIFIED_AT))
        keep = pl.repeat(True, frame.height, eager=True)
        if self.since is not None:
            keep &= updated_at >= self.since
        if self.before is not None:
            keep &= updated_at < self.before
        keep = keep.fill_null(False)
        # Rows without a valid updated_at belong to no window: the first one reports them, once.
        return keep | updated_at.is_null() if self.since is None else keep


def _updated_at(text: pl.Series) -> pl.Series:
    """cast_batch's reading of updated_at, fast: the export's own format first (4x quicker), cast_batch's parse
    for whatever that did not read, so a row's window always agrees with the updated_at it lands with."""
    return parse_datetimes(text.str.strip_chars())


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)  # naive means UTC, like the API's modified_since


def _batch(obj: SenseiObject, chunk: csv_scan.Chunk, unknown: list[str], window: _Window) -> Batch:
    keep = window.keep(chunk.frame)
    frame, lines = chunk.frame, chunk.lines
    if keep is not None and not keep.all():  # filtering copies every column: only when it drops something
        frame, lines = frame.filter(keep), lines.filter(keep)
    extra = pl.struct(unknown).struct.json_encode() if unknown else pl.lit(None, pl.String)
    text = frame.select(
        *[c for c in obj.field_names if c in frame.columns],
        extra.alias(EXTRA),
        pl.lit(None, pl.String).alias(RAW),  # filled in below for the few rejected rows only
    ).with_columns(pl.concat_str(pl.lit("line "), pl.lit(lines).cast(pl.String)).alias(SOURCE_REF))
    batch = cast_batch(obj, text, "csv")
    if batch.rejects:
        batch.rejects = [replace(r, raw=chunk.raw(_row_index(chunk, r))) for r in batch.rejects]
    if window.since is None:
        batch.rejects += [_malformed(obj, m) for m in chunk.malformed]
    return batch


def _row_index(chunk: csv_scan.Chunk, reject: Reject) -> int:
    line = int(reject.source_ref.removeprefix("line "))
    return int(chunk.lines.search_sorted(line))  # lines ascend within a chunk


def _malformed(obj: SenseiObject, m: csv_scan.Malformed) -> Reject:
    return Reject(obj.name, m.source_id, f"line {m.line}", m.reason, None, f"{obj.name} line {m.line}: {m.cause}",
                  m.raw)
