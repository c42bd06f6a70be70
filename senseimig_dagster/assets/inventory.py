"""``inventory/*``: record counts per object and per location, before anything moves, for both teams to sign off.

Counts come from the landed raw tables and are compared with what the source itself reports, so an object that
came back empty (or short) while the source holds rows fails loudly instead of being migrated as "nothing".
"""


from collections.abc import Iterator

import duckdb
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetOut,
    MetadataValue,
    Output,
    multi_asset,
)
from dagster_duckdb import DuckDBResource

from senseimig_dagster.assets.raw import raw_assets
from senseimig_dagster.io_managers import REJECTS_TABLE
from senseimig_dagster.objects import MODIFIED_AT, PRIMARY_KEY, REGISTRY, SenseiObject
from senseimig_dagster.resources import SenseiSource

RECORD_COUNTS = AssetKey(["inventory", "record_counts"])
LOCATION_COUNTS = AssetKey(["inventory", "location_counts"])


def _table_exists(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND "
                             "table_name = ?", [schema, table]).fetchone()[0])


def landed_counts(conn: duckdb.DuckDBPyConnection, obj: SenseiObject) -> dict[str, int]:
    """Distinct records and row versions landed, source records rejected before landing, and landed records whose
    newer version was rejected (raw holds a stale copy of them)."""
    counts = {"records": 0, "row_versions": 0, "rejected": 0, "newer_version_rejected": 0}
    exists = _table_exists(conn, "raw", obj.name)
    if exists:
        counts["records"], counts["row_versions"] = conn.execute(
            f"SELECT count(DISTINCT {PRIMARY_KEY}), count(*) FROM raw.{obj.name}").fetchone()
    if not _table_exists(conn, "raw", REJECTS_TABLE.split(".")[1]):
        return counts
    # Source records that never landed: a duplicate copy is not a record of its own, an id rejected in one window
    # and landed in another is counted once (as landed), a record rejected twice once.
    not_landed = (f"source_id NOT IN (SELECT {PRIMARY_KEY} FROM raw.{obj.name} WHERE {PRIMARY_KEY} IS NOT NULL)"
                  if exists else "true")
    (counts["rejected"],) = conn.execute(
        f"SELECT count(DISTINCT coalesce(source_id, raw)) FROM {REJECTS_TABLE} WHERE object = ? AND "
        f"reason <> 'duplicate_primary_key' AND (source_id IS NULL OR {not_landed})", [obj.name]).fetchone()
    if exists:
        (counts["newer_version_rejected"],) = conn.execute(
            f"""SELECT count(DISTINCT r.source_id) FROM {REJECTS_TABLE} r
                JOIN (SELECT {PRIMARY_KEY}, max({MODIFIED_AT}) AS latest FROM raw.{obj.name} GROUP BY ALL) l
                  ON l.{PRIMARY_KEY} = r.source_id
                WHERE r.object = ? AND r.reason <> 'duplicate_primary_key' AND r.modified_at > l.latest""",
            [obj.name]).fetchone()
    return counts


def location_counts(conn: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    frames = []
    for obj in REGISTRY:
        if obj.location_field and _table_exists(conn, "raw", obj.name):
            frames.append(conn.sql(
                f"SELECT '{obj.name}' AS object, {obj.location_field}::VARCHAR AS location_id, "
                f"count(DISTINCT {PRIMARY_KEY}) AS records FROM raw.{obj.name} GROUP BY ALL").pl())
    schema = {"object": pl.String, "location_id": pl.String, "records": pl.Int64}
    counts = pl.concat(frames) if frames else pl.DataFrame(schema=schema)
    names = (conn.sql("SELECT DISTINCT ON (id) id AS location_id, name AS location_name FROM raw.location "
                      "ORDER BY id, updated_at DESC").pl() if _table_exists(conn, "raw", "location")
             else pl.DataFrame(schema={"location_id": pl.String, "location_name": pl.String}))
    return counts.cast(schema).join(names, on="location_id", how="left").sort("object", "location_id")


def _markdown(frame: pl.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join([header, *rows])


@multi_asset(
    outs={
        "record_counts": AssetOut(key=RECORD_COUNTS, io_manager_key="duckdb_io_manager", kinds={"duckdb"},
                                  description="Per object: what the source holds, what landed, what was rejected."),
        "location_counts": AssetOut(key=LOCATION_COUNTS, io_manager_key="duckdb_io_manager", kinds={"duckdb"},
                                    description="Per object and practice location: records landed."),
    },
    deps=[a.key for a in raw_assets],
    group_name="inventory",
    check_specs=[
        AssetCheckSpec("no_object_empty_when_source_has_rows", asset=RECORD_COUNTS, blocking=True,
                       description="Fails when an object landed nothing although the source reports rows."),
        AssetCheckSpec("every_source_record_accounted_for", asset=RECORD_COUNTS, blocking=True,
                       description="source count = records landed + rows rejected, for every object."),
        AssetCheckSpec("no_landed_record_has_a_newer_rejected_version", asset=RECORD_COUNTS, blocking=True,
                       description="Fails when a record changed at the source and its new version was rejected: "
                                   "raw would otherwise migrate the stale copy."),
    ],
)
def inventory(context: AssetExecutionContext, sensei: SenseiSource,
              store: DuckDBResource) -> Iterator[Output | AssetCheckResult]:
    with store.get_connection() as conn:
        rows = [{"object": obj.name, "source_count": sensei.count(obj), **landed_counts(conn, obj)}
                for obj in REGISTRY]
        by_location = location_counts(conn)
    counts = pl.DataFrame(rows).with_columns(
        unaccounted=pl.col("source_count") - pl.col("records") - pl.col("rejected"))
    yield Output(counts, output_name="record_counts", metadata={
        "inventory": MetadataValue.md(_markdown(counts)),
        "total_records": int(counts["records"].sum()),
        "total_rejected": int(counts["rejected"].sum()),
    })
    pivot = (by_location.pivot(on="object", index=["location_id", "location_name"], values="records")
             .sort("location_name") if by_location.height else by_location)
    yield Output(by_location, output_name="location_counts",
                 metadata={"per_location": MetadataValue.md(_markdown(pivot.fill_null(0)))})

    empty = counts.filter((pl.col("records") == 0) & (pl.col("source_count") > 0))
    yield AssetCheckResult(
        check_name="no_object_empty_when_source_has_rows", asset_key=RECORD_COUNTS, passed=empty.is_empty(),
        severity=AssetCheckSeverity.ERROR,
        metadata={"empty_objects": MetadataValue.json(empty["object"].to_list()),
                  "details": MetadataValue.md(_markdown(empty) if empty.height else "none")})
    off = counts.filter(pl.col("unaccounted") != 0)
    yield AssetCheckResult(
        check_name="every_source_record_accounted_for", asset_key=RECORD_COUNTS, passed=off.is_empty(),
        severity=AssetCheckSeverity.ERROR,
        metadata={"objects_off": MetadataValue.json(off["object"].to_list()),
                  "details": MetadataValue.md(_markdown(off) if off.height else "all objects add up")})
    stale = counts.filter(pl.col("newer_version_rejected") > 0)
    yield AssetCheckResult(
        check_name="no_landed_record_has_a_newer_rejected_version", asset_key=RECORD_COUNTS,
        passed=stale.is_empty(), severity=AssetCheckSeverity.ERROR,
        metadata={"objects": MetadataValue.json(stale["object"].to_list()),
                  "details": MetadataValue.md(
                      _markdown(stale.select("object", "newer_version_rejected"))
                      + f"\n\nThe rejected versions are in `{REJECTS_TABLE}` (reason and line/page)."
                      if stale.height else "none")})
