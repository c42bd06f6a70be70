"""A small hand-built tenant directory in the generator's format, for the simulator and client tests (which must not
depend on the generator): ``<endpoint>.jsonl`` in API wire format, registry field order, and ``manifest.json``."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from senseimig_dagster.objects import OBJECTS, Field, SenseiObject
from senseimig_dagster.sensei import wire

SEED = 7
START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
LOCATIONS = 3
PATIENTS = 240
DOCUMENTS = (("application/pdf", 2_500_000), ("image/png", 1), ("text/html", 0), ("image/jpeg", 70_000))


def _value(f: Field, rng: random.Random) -> Any:
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
        return START + dt.timedelta(seconds=rng.randint(0, 10**7))
    if f.type == "json":
        return [{"k": rng.randint(0, 9)}, "Penicillin – ü"]
    return rng.choice(["Ana", "José", "Zoë", "O'Brien", 'say "hi"', "李", "line\nbreak"]) + str(rng.randint(0, 99))


def row(obj: SenseiObject, rng: random.Random, **values: Any) -> dict[str, Any]:
    """A record in wire format, fields in registry order; ``values`` are native Python values."""
    native = {f.name: values[f.name] if f.name in values else _value(f, rng) for f in obj.fields}
    return {f.name: wire.to_json_value(f.type, native[f.name]) for f in obj.fields}


def write(tenant: Path, obj: SenseiObject, rows: list[dict[str, Any]]) -> None:
    with (tenant / f"{obj.endpoint}.jsonl").open("wb") as out:
        for r in rows:
            out.write(orjson.dumps(r) + b"\n")


def build(tenant: Path, patients: int = PATIENTS, seed: int = SEED) -> dict[str, list[dict[str, Any]]]:
    """Locations, patients (spread over time, with ties and a few null ``updated_at``) and documents."""
    tenant.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    location, patient, document = OBJECTS["location"], OBJECTS["patient"], OBJECTS["document"]
    data: dict[str, list[dict[str, Any]]] = {}
    data["location"] = [row(location, rng, updated_at=START + dt.timedelta(days=i)) for i in range(LOCATIONS)]
    loc_ids = [r["id"] for r in data["location"]]
    data["patient"] = []
    for i in range(patients):
        # Every 7 patients share one timestamp (ties are broken by id); every 50th has none.
        updated = None if i % 50 == 49 else START + dt.timedelta(hours=i // 7)
        data["patient"].append(row(patient, rng, updated_at=updated, is_deleted=(i % 40 == 3),
                                   primary_location_id=loc_ids[i % LOCATIONS]))
    rng.shuffle(data["patient"])  # file order is not paging order
    data["document"] = [row(document, rng, mime_type=mime, size_bytes=size, updated_at=START)
                        for mime, size in DOCUMENTS]
    for name, rows in data.items():
        write(tenant, OBJECTS[name], rows)
    manifest = {"seed": seed, "counts": {name: len(rows) for name, rows in data.items()}}
    (tenant / "manifest.json").write_bytes(orjson.dumps(manifest))
    (tenant / "defects.jsonl").write_bytes(b"")
    return data
