"""Typed frames of a generated tenant's JSONL files, and its defects (the ground truth), for staging tests."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from senseimig_dagster.objects import get
from senseimig_dagster.sandbox.generator.manifest import DEFECTS_FILE


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
