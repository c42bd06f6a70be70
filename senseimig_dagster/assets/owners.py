"""``staging/owners``: who owns each Sensei user's records in Dataverse, decided before anything is written.

Sensei users (``raw/user``) are matched by e-mail to the environment's system users (``staging/owners.py``); the
fallback owner is ``DataverseResource.fallback_owner`` (``$SENSEIMIG_FALLBACK_OWNER``: an e-mail or a
systemuserid/teamid). The table ``staging.owners`` has one row per Sensei user, plus one per user id that staged
rows name but the extract lacks (``unknown_user``), so the writers (issue 6) join it and nothing else: ``user_id``,
``outcome``, ``systemuserid``, ``owner_id``, ``owner_type`` (``systemuser``/``team``, null = no owner).

The blocking ``owners_resolved`` check reads every staged table's ``_owner_user_id`` and fails when a row would
get no usable owner, naming the Sensei user ids and their outcomes; the writers depend on this asset, so the load
stops before its first request. E-mails stay in DuckDB's raw layer: ids, outcomes and counts only in metadata.
"""
# No `from __future__ import annotations` here: Dagster reads the context and resource annotations at runtime.

from collections.abc import Iterator

import polars as pl
from dagster import AssetExecutionContext, AssetKey, MetadataValue, Output, asset
from dagster_duckdb import DuckDBResource

from senseimig_dagster.assets.staging import DEFAULT_MAP
from senseimig_dagster.objects import get
from senseimig_dagster.resources import DataverseResource
from senseimig_dagster.staging.owners import (
    OWNER_COLUMN,
    OwnerResolution,
    fetch_systemusers,
    owner_check_result,
    owner_check_spec,
    resolve_fallback,
    resolve_owners,
)
from senseimig_dagster.staging.pipeline import written_objects

OWNERS_KEY = AssetKey(["staging", "owners"])
# Staged objects with a Sensei user reference: shape.py gives them ``_owner_user_id``.
OWNED_OBJECTS = [n for n in written_objects(DEFAULT_MAP) if any(f.references == "user" for f in get(n).fields)]


def _sensei_users(conn) -> pl.DataFrame:
    present = conn.execute("SELECT count(*) FROM information_schema.tables "
                           "WHERE table_schema = 'raw' AND table_name = 'user'").fetchone()[0]
    if not present:
        return pl.DataFrame(schema={"id": pl.String, "email": pl.String, "is_active": pl.Boolean})
    return conn.sql('SELECT CAST(id AS VARCHAR) AS id, email, is_active FROM raw."user"').pl()


def staged_owner_ids(conn) -> pl.DataFrame:
    """``_owner_user_id`` of every staged row that has one (that column only: staged rows hold PHI)."""
    tables = [r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = 'staging' AND column_name = ?",
        [OWNER_COLUMN]).fetchall()]
    frames = [conn.sql(f'SELECT CAST({OWNER_COLUMN} AS VARCHAR) AS {OWNER_COLUMN} FROM staging."{t}" '
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


@asset(key=OWNERS_KEY, group_name="staging", io_manager_key="duckdb_io_manager", kinds={"polars", "duckdb"},
       deps=[AssetKey(["raw", "user"]), *(AssetKey(["staging", n]) for n in OWNED_OBJECTS)],
       check_specs=[owner_check_spec(OWNERS_KEY)], tags={"layer": "staging"},
       description="Sensei users matched by e-mail to Dataverse system users: per user id the outcome (matched, "
                   "disabled, application, non_interactive, missing, unknown_user) and the owner its records get "
                   "(the user, the configured fallback, or none). Blocking check before any write.")
def staging_owners(context: AssetExecutionContext, store: DuckDBResource,
                   dataverse: DataverseResource) -> Iterator:
    with store.get_connection() as conn:
        users, owner_ids = _sensei_users(conn), staged_owner_ids(conn)
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
    yield owner_check_result(OWNERS_KEY, owner_ids, resolution)
