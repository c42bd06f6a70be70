"""Tiny synthetic tenant directories for export tests: registry-shaped JSONL records full of nasty values
(commas, quotes, multi-line notes, non-ASCII, empty-ish strings, nulls), written with ``wire.to_json_value``."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from senseimig_dagster.objects import MODIFIED_AT, PRIMARY_KEY, REGISTRY, FieldType, SenseiObject
from senseimig_dagster.sensei import wire

NASTY_STR = [
    "plain", "Smith, John", 'He said "hi"', '"quoted"', 'ends with quote"', "Zoë Ångström-Łódź", "日本語テキスト",
    "tooth 🦷", " padded ", "=SUM(A1)", "tab\there", "semi;colon", "back\\slash", "O'Brien", "a\x00nul",
]
NASTY_TEXT = [
    *NASTY_STR, "line one\r\nline two", "unix\nnewline", 'mixed\r\nlines, "quoted"\n\nend', "cr\ronly",
    "trailing newline\r\n", "\r\nleading newline", 'x' * 5000 + ',"\r\n' + "y" * 5000,
]
JSON_VALUES: list[Any] = [[], ["Penicillin allergy"], [{"state": "CO", "number": "DEN.12345"}],
                          {"preventive": 100, "basic": 80, "note": "Zoë, \"q\"\nx"}, ["é", "🦷"]]
BASE_TIME = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)


def native_value(type_: FieldType, rng: random.Random) -> Any:
    """A random native Python value of a registry type."""
    if type_ == "uuid":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if type_ == "str":
        return rng.choice(NASTY_STR)
    if type_ == "text":
        return rng.choice(NASTY_TEXT)
    if type_ == "int":
        return rng.choice([0, 1, -7, 60, 2**40])
    if type_ == "decimal":
        return rng.choice([Decimal("125.00"), Decimal("-80.00"), Decimal("0.00"), Decimal("9999999999.99")])
    if type_ == "bool":
        return rng.random() < 0.5
    if type_ == "date":
        return dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(40_000))
    if type_ == "datetime":
        return BASE_TIME + dt.timedelta(seconds=rng.randrange(60 * 86_400))
    return rng.choice(JSON_VALUES)


def make_record(obj: SenseiObject, rng: random.Random, updated_at: dt.datetime | None = None,
                null_rate: float = 0.1) -> dict[str, Any]:
    """One API-wire record in registry field order; non-key fields are null now and then."""
    record = {}
    for f in obj.fields:
        value = None if f.name not in (PRIMARY_KEY, MODIFIED_AT) and rng.random() < null_rate else \
            native_value(f.type, rng)
        if f.name == MODIFIED_AT and updated_at is not None:
            value = updated_at
        record[f.name] = wire.to_json_value(f.type, value)
    return record


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("wb") as f:
        for r in records:
            f.write(orjson.dumps(r) + b"\n")


def make_tenant(directory: Path, rows: dict[str, int] | None = None, seed: int = 1) -> Path:
    """A tenant directory: ``rows`` maps object name to row count (default 20 of every object)."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    counts = {}
    for obj in REGISTRY:
        n = (rows or {}).get(obj.name, 0 if rows else 20)
        write_jsonl(directory / f"{obj.endpoint}.jsonl", [make_record(obj, rng) for _ in range(n)])
        counts[obj.name] = n
    (directory / "manifest.json").write_bytes(orjson.dumps({"seed": seed, "counts": counts}))
    (directory / "defects.jsonl").write_bytes(b"")
    return directory
