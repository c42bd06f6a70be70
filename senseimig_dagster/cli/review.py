"""``senseimig review``: the review list of quarantined and rejected records (ids, object, reasons, field names; no
values) as CSV; with ``--values-out`` also the offending values, in a file only its owner can read (0600): PHI.
``senseimig release``: the ``release`` job (re-stage with the corrections file, send exactly the corrected records,
reconcile)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from senseimig_dagster.privacy.export import write_private_csv
from senseimig_dagster.staging.review import review_list, review_values

_REJECT_COLUMNS = "object, source_id, source_ref, reason, field, raw"


def _tables(conn: duckdb.DuckDBPyConnection) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, set[str]]]:
    names = {r[0] + "." + r[1] for r in conn.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database()").fetchall()}
    quarantine = (conn.sql("SELECT object, source_id, field, rule, severity, raw_value FROM staging.quarantine")
                  .pl() if "staging.quarantine" in names else
                  pl.DataFrame(schema={c: pl.String for c in ("object", "source_id", "field", "rule",
                                                              "severity", "raw_value")}))
    rejects = (conn.sql(f"SELECT {_REJECT_COLUMNS} FROM raw._rejects").pl() if "raw._rejects" in names else
               pl.DataFrame(schema={c.strip(): pl.String for c in _REJECT_COLUMNS.split(",")}))
    landed: dict[str, set[str]] = {}
    for name in rejects.get_column("object").unique().to_list():
        if f"raw.{name}" in names:
            landed[name] = {r[0] for r in conn.execute(
                f'SELECT DISTINCT id::VARCHAR FROM raw."{name}" WHERE id IS NOT NULL').fetchall()}
    return quarantine, rejects, landed


def write_review(conn: duckdb.DuckDBPyConnection, out: Path, values_out: Path | None = None) -> pl.DataFrame:
    """Write the review list to ``out`` (and the values to ``values_out``: owner-only, formula-safe cells); returns
    the list. ``conn`` is the migration's store (encrypted or not: the caller opens it)."""
    quarantine, rejects, landed = _tables(conn)
    listed = review_list(quarantine, rejects, landed)
    listed.write_csv(out)
    if values_out is not None:
        write_private_csv(review_values(quarantine, rejects), values_out)
    return listed
