"""Releasing corrected records: staging applies the corrections file on every run (``staging/corrections.py``)
and records each correction's outcome here, in ``staging.corrections`` (ids, fields, who, why: no values; the
values are in the encrypted audit store); a run tagged ``senseimig/release`` (the ``release`` job) then has every
writer send exactly the records a correction changed in that run, nothing else."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import polars as pl

from senseimig_dagster.load.frames import SOURCE_ID
from senseimig_dagster.staging.corrections import OUTCOME_SCHEMA
from senseimig_dagster.store import Store

RELEASE_TAG = "senseimig/release"
TABLE = "staging.corrections"
_DDL = (f"CREATE TABLE IF NOT EXISTS {TABLE} (run_id VARCHAR, \"at\" TIMESTAMP, object VARCHAR, record_id VARCHAR, "
        "field VARCHAR, \"by\" VARCHAR, why VARCHAR, outcome VARCHAR)")


def record_outcomes(db: Store, run_id: str, outcomes: pl.DataFrame) -> None:
    """Append this run's correction outcomes (every run's stay: the history of what was corrected when)."""
    db.conn.execute("CREATE SCHEMA IF NOT EXISTS staging")
    db.conn.execute(_DDL)
    if outcomes.is_empty():
        return
    rows = outcomes.select(list(OUTCOME_SCHEMA)).with_columns(
        pl.lit(run_id).alias("run_id"), pl.lit(dt.datetime.now(dt.UTC).replace(tzinfo=None)).alias("at"))
    db.conn.register("_outcomes", rows.to_arrow())
    try:
        db.conn.execute(f"INSERT INTO {TABLE} BY NAME SELECT * FROM _outcomes")
    finally:
        db.conn.unregister("_outcomes")


def released_ids(db: Store, run_id: str, name: str) -> set[str]:
    """The records of ``name`` a correction changed in run ``run_id``."""
    if not db.exists("staging", "corrections"):
        return set()
    rows = db.conn.execute(f"SELECT DISTINCT record_id FROM {TABLE} WHERE run_id = ? AND object = ? AND "
                           "outcome = 'applied'", [run_id, name]).fetchall()
    return {r[0] for r in rows}


def release_rows(tags: Mapping[str, str], run_id: str, db: Store, name: str,
                 staged: pl.DataFrame) -> tuple[pl.DataFrame, dict]:
    """In a release run, the staged rows of records corrected in this run; otherwise ``staged`` as is."""
    if RELEASE_TAG not in tags:
        return staged, {}
    ids = released_ids(db, run_id, name)
    picked = staged.filter(pl.col(SOURCE_ID).cast(pl.String).is_in(sorted(ids))) if ids else staged.head(0)
    return picked, {"release": True, "rows_released": picked.height,
                    "rows_not_corrected_not_sent": staged.height - picked.height}
