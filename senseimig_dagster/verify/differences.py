"""The differences a read-back found, kept in the migration's DuckDB store (``verify.differences``): one row per
value that differs between source, staging and Dataverse, for the writers' field checks (``kind`` ``verify``) and
the sample migration (``sample``). Equal values are not kept: they say nothing a count does not.

The values are PHI: they stay in the store (encrypted when the store is). A person who needs them in a file asks
for it (``senseimig export differences``), which writes an owner-only, formula-safe CSV.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import duckdb
import polars as pl

DIFFERENCES = "verify.differences"
Kind = Literal["verify", "sample"]
VALUE_COLUMNS = ("object", "source_id", "field", "column", "source_value", "staged_value", "dataverse_value")
_DDL = f"""
CREATE SCHEMA IF NOT EXISTS verify;
CREATE TABLE IF NOT EXISTS {DIFFERENCES} (run_id VARCHAR NOT NULL, kind VARCHAR NOT NULL, object VARCHAR,
    source_id VARCHAR, field VARCHAR, "column" VARCHAR, source_value VARCHAR, staged_value VARCHAR,
    dataverse_value VARCHAR, "at" TIMESTAMP NOT NULL);
"""


def only_differences(diff: pl.DataFrame) -> pl.DataFrame:
    """The rows of a field diff (``mapping.sample.field_diff``'s columns) whose values differ, without ``equal``."""
    if diff.is_empty():
        return pl.DataFrame(schema=dict.fromkeys(VALUE_COLUMNS, pl.String))
    return diff.filter(~pl.col("equal")).select(pl.col(c).cast(pl.String) for c in VALUE_COLUMNS)


def record_differences(conn: duckdb.DuckDBPyConnection, kind: Kind, run_id: str, diff: pl.DataFrame) -> int:
    """Keep the differing rows of ``diff`` for this run; how many were kept."""
    conn.execute(_DDL)
    rows = only_differences(diff).with_columns(
        pl.lit(run_id).alias("run_id"), pl.lit(kind).alias("kind"),
        pl.lit(dt.datetime.now(dt.UTC).replace(tzinfo=None)).alias("at"))
    if rows.height:
        conn.register("_differences", rows.to_arrow())
        try:
            conn.execute(f'INSERT INTO {DIFFERENCES} (run_id, kind, {", ".join(_quoted(VALUE_COLUMNS))}, "at") '
                         f'SELECT run_id, kind, {", ".join(_quoted(VALUE_COLUMNS))}, "at" FROM _differences')
        finally:
            conn.unregister("_differences")
    return rows.height


def read_differences(conn: duckdb.DuckDBPyConnection, *, run_id: str | None = None, kind: Kind | None = None,
                     object_name: str | None = None) -> pl.DataFrame:
    """The kept differences, oldest first, filtered by run, kind and object when given."""
    if not _exists(conn):
        return pl.DataFrame(schema={"run_id": pl.String, "kind": pl.String, **dict.fromkeys(VALUE_COLUMNS, pl.String),
                                    "at": pl.Datetime})
    where, params = [], []
    for column, value in (("run_id", run_id), ("kind", kind), ("object", object_name)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    sql = f"SELECT * FROM {DIFFERENCES}" + (f" WHERE {' AND '.join(where)}" if where else "") + \
        ' ORDER BY "at", object, source_id, "column"'
    return conn.execute(sql, params).pl()


def _quoted(names: tuple[str, ...]) -> list[str]:
    return [f'"{n}"' for n in names]


def _exists(conn: duckdb.DuckDBPyConnection) -> bool:
    return bool(conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'verify' "
                             "AND table_name = 'differences'").fetchone()[0])

