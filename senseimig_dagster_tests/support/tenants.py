"""Tenants the tests read or serve, besides the generator's (``sandbox/generator``):

* a generated tenant's JSONL files as typed frames (:func:`read_object`) and its declared defects, the ground truth
  (:func:`read_defects`);
* the simulator and client tests' hand-built tenant (:func:`build_sim_tenant`: locations, patients spread over time
  with ties and a few null ``updated_at``, documents), which must not depend on the generator;
* tiny tenants full of nasty values for the CSV export tests (:func:`make_tenant`: commas, quotes, multi-line
  notes, non-ASCII, empty-ish strings, nulls).

Hand-built records are in API wire format (``wire.to_json_value``), fields in registry order.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from senseimig_dagster.objects import (
    MODIFIED_AT,
    OBJECTS,
    PRIMARY_KEY,
    REGISTRY,
    Field,
    FieldType,
    SenseiObject,
    get,
)
from senseimig_dagster.sandbox.generator.manifest import DEFECTS_FILE
from senseimig_dagster.sensei import wire


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("wb") as f:
        for r in records:
            f.write(orjson.dumps(r) + b"\n")


# -- a generated tenant's files ----------------------------------------------------------------------------------------
def read_object(tenant: Path, name: str) -> pl.DataFrame:
    """One object's rows with dates and datetimes typed as the raw layer types them."""
    obj = get(name)
    frame = pl.read_ndjson(tenant / f"{obj.endpoint}.jsonl", infer_schema_length=None)
    casts = []
    for f in obj.fields:
        if f.name in frame.columns and frame.schema[f.name] == pl.Null and f.type in ("uuid", "str", "text"):
            casts.append(pl.col(f.name).cast(pl.String))  # all null in a small tenant
        elif f.name in frame.columns and frame.schema[f.name] == pl.String:
            if f.type == "date":
                casts.append(pl.col(f.name).str.to_date())
            elif f.type == "datetime":
                casts.append(pl.col(f.name).str.to_datetime(time_zone="UTC"))
    return frame.with_columns(casts)


def read_defects(tenant: Path) -> pl.DataFrame:
    return pl.read_ndjson(tenant / DEFECTS_FILE, infer_schema_length=None)


# -- the simulator and client tests' tenant ----------------------------------------------------------------------------
SIM_SEED = 7
SIM_START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
SIM_LOCATIONS = 3
SIM_PATIENTS = 240
SIM_DOCUMENTS = (("application/pdf", 2_500_000), ("image/png", 1), ("text/html", 0), ("image/jpeg", 70_000))


def _sim_value(f: Field, rng: random.Random) -> Any:
    if f.type == "uuid":
        return str(uuid.UUID(int=rng.getrandbits(128)))
    if f.type == "int":
        return rng.randint(0, 99)
    if f.type == "decimal":
        return Decimal(rng.randint(-10000, 10000)) / 100
    if f.type == "bool":
        return rng.random() < 0.5
    if f.type == "date":
        return dt.date(1950, 1, 1) + dt.timedelta(days=rng.randint(0, 25000))
    if f.type == "datetime":
        return SIM_START + dt.timedelta(seconds=rng.randint(0, 10**7))
    if f.type == "json":
        return [{"k": rng.randint(0, 9)}, "Penicillin – ü"]
    return rng.choice(["Ana", "José", "Zoë", "O'Brien", 'say "hi"', "李", "line\nbreak"]) + str(rng.randint(0, 99))


def sim_row(obj: SenseiObject, rng: random.Random, **values: Any) -> dict[str, Any]:
    """A record in wire format, fields in registry order; ``values`` are native Python values."""
    native = {f.name: values[f.name] if f.name in values else _sim_value(f, rng) for f in obj.fields}
    return {f.name: wire.to_json_value(f.type, native[f.name]) for f in obj.fields}


def build_sim_tenant(tenant: Path, patients: int = SIM_PATIENTS,
                     seed: int = SIM_SEED) -> dict[str, list[dict[str, Any]]]:
    """Locations, patients (spread over time, with ties and a few null ``updated_at``) and documents."""
    tenant.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    location, patient, document = OBJECTS["location"], OBJECTS["patient"], OBJECTS["document"]
    data: dict[str, list[dict[str, Any]]] = {}
    data["location"] = [sim_row(location, rng, updated_at=SIM_START + dt.timedelta(days=i))
                        for i in range(SIM_LOCATIONS)]
    loc_ids = [r["id"] for r in data["location"]]
    data["patient"] = []
    for i in range(patients):
        # Every 7 patients share one timestamp (ties are broken by id); every 50th has none.
        updated = None if i % 50 == 49 else SIM_START + dt.timedelta(hours=i // 7)
        data["patient"].append(sim_row(patient, rng, updated_at=updated, is_deleted=(i % 40 == 3),
                                       primary_location_id=loc_ids[i % SIM_LOCATIONS]))
    rng.shuffle(data["patient"])  # file order is not paging order
    data["document"] = [sim_row(document, rng, mime_type=mime, size_bytes=size, updated_at=SIM_START)
                        for mime, size in SIM_DOCUMENTS]
    for name, rows in data.items():
        write_jsonl(tenant / f"{OBJECTS[name].endpoint}.jsonl", rows)
    manifest = {"seed": seed, "counts": {name: len(rows) for name, rows in data.items()}}
    (tenant / "manifest.json").write_bytes(orjson.dumps(manifest))
    (tenant / "defects.jsonl").write_bytes(b"")
    return data


# -- tiny tenants of nasty values (CSV export) -------------------------------------------------------------------------
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
