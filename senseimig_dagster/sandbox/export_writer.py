"""Sensei's CSV Data Export, written from a sandbox tenant directory.

One ``<endpoint>.csv`` per registry object, as Sensei's Excel-minded export writes it: UTF-8 with a BOM, a header
row of registry field names, CRLF row terminators, RFC 4180 quoting (only fields holding a comma, a quote, CR or LF
are quoted; embedded quotes doubled) and values in the export's formats (``wire.json_wire_to_csv``: US dates,
Yes/No, JSON as text, null as an empty field).

The input is the tenant's ``<endpoint>.jsonl`` (the REST API's records), so the simulator's API and this export
always hold the same data. A missing JSONL file is an empty object (the simulator serves it empty too). Keys the
registry does not know become extra columns after the registry's, in order of first appearance, so nothing the API
would serve is dropped. Files are streamed line by line (bounded memory) and their bytes are deterministic.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from senseimig_dagster.objects import REGISTRY, FieldType, SenseiObject
from senseimig_dagster.sensei import wire

BOM = "\ufeff"
_BUFFER = 1 << 20


def write_export(tenant_dir: Path, out_dir: Path) -> dict[str, int]:
    """Write every registry object's export file into ``out_dir``; returns data rows per file name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return {obj.export_file: write_object(obj, tenant_dir / f"{obj.endpoint}.jsonl", out_dir / obj.export_file)
            for obj in REGISTRY}


def write_object(obj: SenseiObject, jsonl: Path, out: Path) -> int:
    """Write one object's export file from its JSONL records; returns the number of data rows."""
    rows, extra = _write(obj, jsonl, out, ())
    if extra:  # rare: unknown keys seen only while writing, so write again with them as columns
        rows, _ = _write(obj, jsonl, out, tuple(extra))
    return rows


def _write(obj: SenseiObject, jsonl: Path, out: Path, extra_columns: tuple[str, ...]) -> tuple[int, list[str]]:
    known = set(obj.field_names)
    converters = [(f.name, _converter(f.type)) for f in obj.fields]
    unknown: dict[str, None] = {}  # ordered set of keys not in the registry
    tmp = out.with_name(out.name + ".tmp")
    rows = 0
    # newline="" hands the CRLF terminators to the csv module untranslated.
    with tmp.open("w", encoding="utf-8", newline="", buffering=_BUFFER) as f:
        f.write(BOM)
        writer = csv.writer(f, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL, strict=True)
        writer.writerow([*obj.field_names, *extra_columns])
        for record in _records(jsonl):
            row = [convert(record.get(name)) for name, convert in converters]
            if not record.keys() <= known:
                unknown.update((k, None) for k in record if k not in known)
                row += [_extra_value(record.get(k)) for k in extra_columns]
            elif extra_columns:
                row += [""] * len(extra_columns)
            writer.writerow(row)
            rows += 1
    os.replace(tmp, out)
    new = [k for k in unknown if k not in extra_columns]
    return rows, ([*extra_columns, *new] if new else [])


def _records(jsonl: Path) -> Iterator[dict[str, Any]]:
    if not jsonl.exists():
        return
    with jsonl.open("rb", buffering=_BUFFER) as f:
        for line in f:
            if line.strip():
                yield orjson.loads(line)


def _converter(type_: FieldType) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if value is None:
            return ""
        if type(value) is str and type_ in ("uuid", "str", "text", "decimal", "datetime"):
            return value  # the common case, without a call per value
        if type_ == "bool" and not isinstance(value, bool):
            return str(value)  # a malformed source value stays malformed (not truthy "Yes")
        try:
            return wire.json_wire_to_csv(type_, value)
        except (TypeError, ValueError):
            # Not a valid wire value (e.g. a bad date): export it verbatim, as Sensei would show it, so the
            # reader rejects it exactly as the API path does.
            return str(value)

    return convert


def _extra_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def csv_text(rows: list[list[str]]) -> str:
    """Rows as this export writes them (no BOM); handy for building test files."""
    buf = io.StringIO(newline="")
    csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL).writerows(rows)
    return buf.getvalue()
