"""``senseimig review``: the review list of quarantined and rejected records (ids, object, reasons, field names; no
values) as CSV; with ``--values-out`` also the offending values, in a file only its owner can read (0600): PHI.
``senseimig release``: the ``release`` job (re-stage with the corrections file, send exactly the corrected records,
reconcile)."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import polars as pl

from senseimig_dagster.staging.review import review_list, review_values

_REJECT_COLUMNS = "object, source_id, source_ref, reason, field, raw"


def _tables(database: str) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, set[str]]]:
    with duckdb.connect(database, read_only=True) as conn:
        names = {r[0] + "." + r[1] for r in conn.execute(
            "SELECT schema_name, table_name FROM duckdb_tables()").fetchall()}
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


def write_review(database: str, out: Path, values_out: Path | None = None) -> pl.DataFrame:
    """Write the review list to ``out`` (and the values, 0600, to ``values_out``); returns the list."""
    quarantine, rejects, landed = _tables(database)
    listed = review_list(quarantine, rejects, landed)
    listed.write_csv(out)
    if values_out is not None:
        fd = os.open(values_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT: set it
        with os.fdopen(fd, "wb") as f:
            review_values(quarantine, rejects).write_csv(f)
    return listed
