"""``raw/<object>``: every Sensei object landed in DuckDB as received, one asset per registry entry."""
# No `from __future__ import annotations` here: Dagster reads the context and resource annotations at runtime.

import warnings

from dagster import AssetExecutionContext, AssetsDefinition, BackfillPolicy, BetaWarning, asset

from senseimig_dagster.assets.keys import raw_key
from senseimig_dagster.assets.partitions import PARTITION_EXPR, modification_days, source_window
from senseimig_dagster.io_managers import column_schema
from senseimig_dagster.objects import REGISTRY, SenseiObject
from senseimig_dagster.resources import SenseiSource
from senseimig_dagster.sensei.records import Extraction


def raw_asset(obj: SenseiObject) -> AssetsDefinition:
    @asset(
        key=raw_key(obj.name),
        group_name="raw",
        description=f"{obj.description} As received from Sensei (`/v1/{obj.endpoint}` or `{obj.export_file}`); "
                    "unknown source fields kept in `_extra`, unusable rows in `raw._rejects`.",
        partitions_def=modification_days,
        backfill_policy=BackfillPolicy.single_run(),
        metadata={"partition_expr": PARTITION_EXPR, "sensei_endpoint": f"/v1/{obj.endpoint}",
                  "export_file": obj.export_file, "dataverse_target": obj.target.table,
                  "loads_after": ", ".join(obj.parents) or "(none)", "dagster/column_schema": column_schema(obj)},
        io_manager_key="duckdb_io_manager",
        kinds={"duckdb"},
    )
    def _raw(context: AssetExecutionContext, sensei: SenseiSource) -> Extraction:
        since, before = source_window(context.partition_time_window)
        return sensei.extract(obj, since, before)

    return _raw


# `backfill_policy` is a beta parameter of `@asset` (Dagster 1.13) with no stable replacement, and the single-run
# policy is what makes a full load one run instead of one per day: its BetaWarning (one per raw asset, on every
# definitions load) is silenced here, for this parameter only.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=BetaWarning)
    raw_assets: list[AssetsDefinition] = [raw_asset(obj) for obj in REGISTRY]
