"""``staging/owners``: who owns each Sensei user's records in Dataverse, decided before anything is written.

Sensei users (``raw/user``) are matched by e-mail to the environment's system users (``staging/owners.py``); the
fallback owner is ``DataverseResource.fallback_owner`` (``$SENSEIMIG_FALLBACK_OWNER``: an e-mail or a
systemuserid/teamid). The table ``staging.owners`` has one row per Sensei user, plus one per user id that staged
rows name but the extract lacks (``unknown_user``), so the writers join it and nothing else: ``user_id``,
``outcome``, ``systemuserid``, ``owner_id``, ``owner_type`` (``systemuser``/``team``, null = no owner).

The blocking ``owners_resolved`` check reads every staged table's ``_owner_user_id`` and fails when a row would
get no usable owner, naming the Sensei user ids and their outcomes; the writers depend on this asset, so the load
stops before its first request. E-mails stay in DuckDB's raw layer: ids, outcomes and counts only in metadata.
"""
# No `from __future__ import annotations` here: Dagster reads the context and resource annotations at runtime.

from collections.abc import Iterator
from typing import Any

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    MetadataValue,
    Output,
    asset,
)

from senseimig_dagster.assets.keys import OWNERS, raw_key, staging_key
from senseimig_dagster.assets.metadata import KeyLike, markdown_table
from senseimig_dagster.mapping import default_map
from senseimig_dagster.mapping.scope import written_objects
from senseimig_dagster.objects import PRIMARY_KEY, STAFF_USER, get
from senseimig_dagster.resources import DataverseResource, StoreResource
from senseimig_dagster.staging.owners import (
    CHECK_NAME,
    OWNER_COLUMN,
    OwnerResolution,
    fetch_systemusers,
    owner_problems,
    resolve_fallback,
    resolve_owners,
)
from senseimig_dagster.store import Store, quoted

# Staged objects with a Sensei user reference: staging gives them ``_owner_user_id``.
OWNED_OBJECTS = [n for n in written_objects(default_map()) if get(n).references_to(STAFF_USER.name)]


def _sensei_users(db: Store) -> pl.DataFrame:
    users = db.raw(STAFF_USER, f"CAST({PRIMARY_KEY} AS VARCHAR) AS id, email, is_active")
    return users if users is not None else pl.DataFrame(schema={"id": pl.String, "email": pl.String,
                                                                 "is_active": pl.Boolean})


def staged_owner_ids(db: Store) -> pl.DataFrame:
    """``_owner_user_id`` of every staged row that has one (that column only: staged rows hold PHI)."""
    tables = [r[0] for r in db.conn.execute(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = 'staging' AND column_name = ?",
        [OWNER_COLUMN]).fetchall()]
    frames = [db.conn.sql(f"SELECT CAST({OWNER_COLUMN} AS VARCHAR) AS {OWNER_COLUMN} FROM staging.{quoted(t)} "
                          f"WHERE {OWNER_COLUMN} IS NOT NULL").pl() for t in sorted(tables)]
    return pl.concat([pl.DataFrame(schema={OWNER_COLUMN: pl.String}), *frames])


def with_unknown_users(resolution: OwnerResolution, owner_ids: pl.DataFrame) -> OwnerResolution:
    """The resolution plus a row per user id the staged rows name but the extract lacks (owned by the fallback)."""
    fb = resolution.fallback
    unknown = (owner_ids.select(pl.col(OWNER_COLUMN).alias("user_id")).unique()
               .join(resolution.owners.select("user_id"), on="user_id", how="anti").sort("user_id"))
    extra = unknown.select("user_id", pl.lit("unknown_user").alias("outcome"), pl.lit(None, pl.String)
                           .alias("systemuserid"), pl.lit(fb.id if fb else None, pl.String).alias("owner_id"),
                           pl.lit(fb.type if fb else None, pl.String).alias("owner_type"))
    return OwnerResolution(pl.concat([resolution.owners, extra.cast(resolution.owners.schema)]), fb)


def owner_check_spec(asset_key: KeyLike) -> AssetCheckSpec:
    return AssetCheckSpec(CHECK_NAME, asset=asset_key, blocking=True,
                          description="Every staged row's Sensei user maps to an enabled interactive Dataverse "
                                      "owner (or the configured fallback); nothing is loaded otherwise.")


def owner_check_result(asset_key: KeyLike, frame: pl.DataFrame, resolution: OwnerResolution) -> AssetCheckResult:
    """Fails when a row's owner resolves to nobody; metadata lists those user ids with their outcome, and the
    problem users who got the fallback (reported before any write even when the check passes)."""
    problems = owner_problems(frame, resolution)
    report = resolution.report.select("user_id", "outcome", "owner_id")
    metadata: dict[str, Any] = {"outcome_counts": MetadataValue.json(resolution.outcome_counts()),
                                "rows_without_owner": int(problems.get_column("rows").sum()) if problems.height else 0,
                                "fallback_owner": resolution.fallback.id if resolution.fallback else "none"}
    if problems.height:
        metadata["unresolved_users"] = MetadataValue.md(markdown_table(problems))
    if report.height:
        metadata["problem_users"] = MetadataValue.md(markdown_table(report))
    description = ("every row has an owner" if not problems.height else
                   f"{problems.height} Sensei users own {metadata['rows_without_owner']} rows but map to no owner: "
                   + ", ".join(f"{u} ({o})" for u, o, _ in problems.head(20).iter_rows())
                   + "; configure a fallback owner or fix the users in Dataverse")
    return AssetCheckResult(asset_key=AssetKey.from_coercible(asset_key), check_name=CHECK_NAME,
                            passed=not problems.height, severity=AssetCheckSeverity.ERROR, metadata=metadata,
                            description=description)


@asset(key=OWNERS, group_name="staging", io_manager_key="duckdb_io_manager", kinds={"polars", "duckdb"},
       deps=[raw_key(STAFF_USER.name), *(staging_key(n) for n in OWNED_OBJECTS)],
       check_specs=[owner_check_spec(OWNERS)],
       description="Sensei users matched by e-mail to Dataverse system users: per user id the outcome (matched, "
                   "disabled, application, non_interactive, missing, unknown_user) and the owner its records get "
                   "(the user, the configured fallback, or none). Blocking check before any write.")
def staging_owners(context: AssetExecutionContext, store: StoreResource, dataverse: DataverseResource) -> Iterator:
    with store.open() as db:
        users, owner_ids = _sensei_users(db), staged_owner_ids(db)
    with dataverse.client() as client:
        systemusers = fetch_systemusers(client)
        # FallbackOwnerInvalid (a disabled user, an unknown id...) fails the asset: its message has ids only.
        fallback = resolve_fallback(dataverse.fallback_owner, systemusers, client) \
            if dataverse.fallback_owner else None
    resolution = with_unknown_users(resolve_owners(users, systemusers, fallback), owner_ids)
    counts = resolution.outcome_counts()
    context.log.info("owners: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    owners = resolution.owners.sort("user_id")
    yield Output(owners, metadata={
        "users": owners.height, "outcome_counts": MetadataValue.json(counts),
        "fallback_owner": fallback.id if fallback else "none",
        "without_owner": owners.filter(pl.col("owner_id").is_null()).height,
        "rows_with_sensei_owner": owner_ids.height})
    yield owner_check_result(OWNERS, owner_ids, resolution)
