"""``inventory/*``: record counts per object and per location, before anything moves, for both teams to sign off.

Counts come from the landed raw tables and are compared with what the source itself reports, so an object that
came back empty (or short) while the source holds rows fails loudly instead of being migrated as "nothing".
"""


from collections.abc import Iterator

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetOut,
    MetadataValue,
    Output,
    multi_asset,
)

from senseimig_dagster.assets.keys import LOCATION_COUNTS, RECORD_COUNTS, raw_key
from senseimig_dagster.assets.metadata import markdown_table
from senseimig_dagster.io_managers import REJECTS_TABLE
from senseimig_dagster.objects import LOCATION, MODIFIED_AT, PRIMARY_KEY, REGISTRY, SenseiObject
from senseimig_dagster.resources import SenseiSource, StoreResource
from senseimig_dagster.sensei.records import DUPLICATE_REASONS
from senseimig_dagster.store import Store, quoted

_COPIES = "('" + "', '".join(DUPLICATE_REASONS) + "')"


def landed_counts(db: Store, obj: SenseiObject) -> dict[str, int]:
    """Distinct records and row versions landed, source records rejected before landing, extra copies of an id
    (collapsed when identical, rejected when conflicting), and landed records whose newer version was rejected
    (raw holds a stale copy of them)."""
    counts = {"records": 0, "row_versions": 0, "rejected": 0, "duplicate_copies": 0, "newer_version_rejected": 0}
    conn, table = db.conn, f"raw.{quoted(obj.name)}"
    exists = db.exists("raw", obj.name)
    if exists:
        counts["records"], counts["row_versions"] = conn.execute(
            f"SELECT count(DISTINCT {PRIMARY_KEY}), count(*) FROM {table}").fetchone()
    if not db.exists("raw", REJECTS_TABLE.split(".")[1]):
        return counts
    # Source records that never landed: a duplicate copy is not a record of its own, an id rejected in one window
    # and landed in another is counted once (as landed), a record rejected twice once.
    not_landed = (f"source_id NOT IN (SELECT {PRIMARY_KEY} FROM {table} WHERE {PRIMARY_KEY} IS NOT NULL)"
                  if exists else "true")
    (counts["rejected"],) = conn.execute(
        f"SELECT count(DISTINCT coalesce(source_id, raw)) FROM {REJECTS_TABLE} WHERE object = ? AND "
        f"reason NOT IN {_COPIES} AND (source_id IS NULL OR {not_landed})", [obj.name]).fetchone()
    (counts["duplicate_copies"],) = conn.execute(
        f"SELECT count(*) FROM {REJECTS_TABLE} WHERE object = ? AND reason IN {_COPIES}", [obj.name]).fetchone()
    if exists:
        (counts["newer_version_rejected"],) = conn.execute(
            f"""SELECT count(DISTINCT r.source_id) FROM {REJECTS_TABLE} r
                JOIN (SELECT {PRIMARY_KEY}, max({MODIFIED_AT}) AS latest FROM {table} GROUP BY ALL) l
                  ON l.{PRIMARY_KEY} = r.source_id
                WHERE r.object = ? AND r.reason NOT IN {_COPIES} AND r.modified_at > l.latest""",
            [obj.name]).fetchone()
    return counts


def location_counts(db: Store) -> pl.DataFrame:
    frames = []
    for obj in REGISTRY:
        if obj.location_field and db.exists("raw", obj.name):
            frames.append(db.conn.execute(
                f"SELECT ? AS object, {obj.location_field}::VARCHAR AS location_id, "
                f"count(DISTINCT {PRIMARY_KEY}) AS records FROM raw.{quoted(obj.name)} GROUP BY ALL",
                [obj.name]).pl())
    schema = {"object": pl.String, "location_id": pl.String, "records": pl.Int64}
    counts = pl.concat(frames) if frames else pl.DataFrame(schema=schema)
    names = db.raw(LOCATION, f"{PRIMARY_KEY} AS location_id, name AS location_name")
    if names is None:
        names = pl.DataFrame(schema={"location_id": pl.String, "location_name": pl.String})
    return counts.cast(schema).join(names.cast({"location_id": pl.String}), on="location_id", how="left").sort(
        "object", "location_id")


def _objects(frame: pl.DataFrame) -> str:
    return ", ".join(frame.get_column("object"))


def inventory_checks(counts: pl.DataFrame) -> list[AssetCheckResult]:
    """The three blocking checks over the per-object counts; a failure's description names the objects and counts."""
    empty = counts.filter((pl.col("records") == 0) & (pl.col("source_count") > 0))
    off = counts.filter(pl.col("unaccounted") != 0)
    stale = counts.filter(pl.col("newer_version_rejected") > 0)
    return [
        AssetCheckResult(
            check_name="no_object_empty_when_source_has_rows", asset_key=RECORD_COUNTS, passed=empty.is_empty(),
            severity=AssetCheckSeverity.ERROR,
            description=f"{empty.height} objects landed nothing although the source reports "
                        f"{int(empty['source_count'].sum())} rows: {_objects(empty)}" if empty.height else
                        f"every object with source rows landed some ({counts.height} objects)",
            metadata={"empty_objects": MetadataValue.json(empty["object"].to_list()),
                      "details": MetadataValue.md(markdown_table(empty) if empty.height else "none")}),
        AssetCheckResult(
            check_name="every_source_record_accounted_for", asset_key=RECORD_COUNTS, passed=off.is_empty(),
            severity=AssetCheckSeverity.ERROR,
            description=f"{int(off['unaccounted'].abs().sum())} source records unaccounted for in {off.height} "
                        "objects: " + ", ".join(f"{o} ({n:+d})" for o, n in off.select("object", "unaccounted")
                                                .iter_rows()) if off.height else
                        f"{int(counts['source_count'].sum())} source records landed or rejected",
            metadata={"objects_off": MetadataValue.json(off["object"].to_list()),
                      "details": MetadataValue.md(markdown_table(off) if off.height else "all objects add up")}),
        AssetCheckResult(
            check_name="no_landed_record_has_a_newer_rejected_version", asset_key=RECORD_COUNTS,
            passed=stale.is_empty(), severity=AssetCheckSeverity.ERROR,
            description=f"{int(stale['newer_version_rejected'].sum())} landed records have a newer version that was "
                        f"rejected ({REJECTS_TABLE}): {_objects(stale)}" if stale.height else
                        "no landed record has a newer rejected version",
            metadata={"objects": MetadataValue.json(stale["object"].to_list()),
                      "details": MetadataValue.md(
                          markdown_table(stale.select("object", "newer_version_rejected"))
                          + f"\n\nThe rejected versions are in `{REJECTS_TABLE}` (reason and line/page)."
                          if stale.height else "none")}),
    ]


@multi_asset(
    outs={
        "record_counts": AssetOut(key=RECORD_COUNTS, io_manager_key="duckdb_io_manager", kinds={"duckdb"},
                                  description="Per object: what the source holds, what landed, what was rejected."),
        "location_counts": AssetOut(key=LOCATION_COUNTS, io_manager_key="duckdb_io_manager", kinds={"duckdb"},
                                    description="Per object and practice location: records landed."),
    },
    deps=[raw_key(o.name) for o in REGISTRY],
    group_name="inventory",
    check_specs=[
        AssetCheckSpec("no_object_empty_when_source_has_rows", asset=RECORD_COUNTS, blocking=True,
                       description="Fails when an object landed nothing although the source reports rows."),
        AssetCheckSpec("every_source_record_accounted_for", asset=RECORD_COUNTS, blocking=True,
                       description="source count = records landed + rows rejected (+ the extra copies of a "
                                   "duplicated id, when the source counts them), for every object."),
        AssetCheckSpec("no_landed_record_has_a_newer_rejected_version", asset=RECORD_COUNTS, blocking=True,
                       description="Fails when a record changed at the source and its new version was rejected: "
                                   "raw would otherwise migrate the stale copy."),
    ],
)
def inventory(context: AssetExecutionContext, sensei: SenseiSource,
              store: StoreResource) -> Iterator[Output | AssetCheckResult]:
    with store.open() as db:
        rows = [{"object": obj.name, "source_count": sensei.count(obj), **landed_counts(db, obj)}
                for obj in REGISTRY]
        by_location = location_counts(db)
    # A duplicated id's extra copies count when the source counts every row it holds (an export file, an API
    # holding a row twice), not when they are the same record seen twice while paging: either way is accounted.
    seen = pl.col("records") + pl.col("rejected")
    counts = pl.DataFrame(rows).with_columns(
        unaccounted=pl.when(pl.col("source_count") < seen).then(pl.col("source_count") - seen)
        .when(pl.col("source_count") > seen + pl.col("duplicate_copies"))
        .then(pl.col("source_count") - seen - pl.col("duplicate_copies")).otherwise(0))
    yield Output(counts, output_name="record_counts", metadata={
        "inventory": MetadataValue.md(markdown_table(counts)),
        "total_records": int(counts["records"].sum()),
        "total_rejected": int(counts["rejected"].sum()),
    })
    pivot = (by_location.pivot(on="object", index=["location_id", "location_name"], values="records")
             .sort("location_name") if by_location.height else by_location)
    yield Output(by_location, output_name="location_counts",
                 metadata={"per_location": MetadataValue.md(markdown_table(pivot.fill_null(0)))})

    yield from inventory_checks(counts)
