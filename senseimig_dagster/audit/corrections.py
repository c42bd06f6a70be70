"""The audit trail of corrections: append-only ``audit.corrections`` in the audit store (encrypted when a key is
set), one row per correction per staging run, with who, why, the outcome and the value before and after (PHI: it
lives here, never in the migration's DuckDB file or in Dagster's metadata)."""

from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl

TABLE = "audit.corrections"
_DDL = f"""
CREATE SCHEMA IF NOT EXISTS audit;
CREATE TABLE IF NOT EXISTS {TABLE} (
    run_id VARCHAR NOT NULL, "at" TIMESTAMP NOT NULL, object VARCHAR NOT NULL, record_id VARCHAR NOT NULL,
    field VARCHAR NOT NULL, "by" VARCHAR NOT NULL, why VARCHAR NOT NULL, outcome VARCHAR NOT NULL,
    "before" VARCHAR, "after" VARCHAR);
"""


def record_corrections(conn: duckdb.DuckDBPyConnection, run_id: str, values: pl.DataFrame) -> int:
    """Append one row per correction (``staging.corrections.VALUES_SCHEMA``); returns how many."""
    conn.execute(_DDL)
    if values.is_empty():
        return 0
    rows = values.with_columns(pl.lit(run_id).alias("run_id"),
                               pl.lit(dt.datetime.now(dt.UTC).replace(tzinfo=None)).alias("at"))
    conn.register("_corrections", rows.to_arrow())
    try:
        conn.execute(f"INSERT INTO {TABLE} BY NAME SELECT * FROM _corrections")
    finally:
        conn.unregister("_corrections")
    return values.height


def corrections_trail(conn: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Every correction recorded, oldest first (an empty frame before the first; works read-only)."""
    try:
        return conn.sql(f"SELECT * FROM {TABLE} ORDER BY \"at\", record_id, field").pl()
    except duckdb.CatalogException:
        return pl.DataFrame()
