"""The tenant's manifest: what the generator wrote, for tests and the inventory to compare against."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from senseimig_dagster.sensei.wire import format_datetime

MANIFEST_FILE = "manifest.json"
DEFECTS_FILE = "defects.jsonl"
FORMAT = 1
NULL_LOCATION = "null"  # counts_by_location key for rows without a location


@dataclass(frozen=True)
class Manifest:
    format: int
    seed: int
    patients: int
    as_of: dt.datetime
    counts: dict[str, int]  # object name -> rows, registry order
    counts_by_location: dict[str, dict[str, int]]  # object name -> location id (or "null") -> rows
    defect_counts: dict[str, int]  # defect kind -> defects
    total_rows: int  # rows over all registry objects (defects.jsonl not included)
    files: dict[str, str]  # file name -> sha256 hex of its bytes

    def to_json(self) -> bytes:
        data = asdict(self)
        data["as_of"] = format_datetime(self.as_of)
        return orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n"


def write_manifest(out: Path, manifest: Manifest) -> None:
    (out / MANIFEST_FILE).write_bytes(manifest.to_json())


def read_manifest(directory: Path | str) -> Manifest:
    data = orjson.loads((Path(directory) / MANIFEST_FILE).read_bytes())
    if data.get("format") != FORMAT:
        raise ValueError(f"unsupported tenant manifest format {data.get('format')!r}")
    data["as_of"] = dt.datetime.fromisoformat(data["as_of"].replace("Z", "+00:00"))
    return Manifest(**data)
