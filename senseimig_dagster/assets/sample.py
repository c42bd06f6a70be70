"""``mapping/sample_diff`` and the ``sample_migration`` job (issue 4 §6): N patients, reproducibly chosen and
stratified across locations, with all their children through the whole graph, then the field diff the engineer
confirms the map on.

Steps: the raw tables (upstream assets) from DuckDB -> ``sample_rows`` of ``sample_patient_ids`` -> ``stage_tenant``
(the same staging as the full run) -> the schema (``SchemaSetup``, idempotent) -> ``load_staged`` (the product's
load path, dataverse/load.py) -> read back -> ``field_diff``. Owners are left to Dataverse's default (no owner map:
issue 6 wires owners), so lookups to users are not written and not compared.

The gate: the sample writes only to the ``sample_dataverse`` resource's environment (default: the sandbox
emulator; ``SAMPLE_DATAVERSE_URL`` points it at a customer's sandbox environment). It runs *before* the map is
confirmed - it is how the map gets confirmed - so it carries no confirmation gate; writes to the production
``dataverse`` resource are gated (issue 6 writers, ``mapping.gate``). Its schema changes are not written to
``audit.schema_changes``, which records the production environment's.

PHI: the full diff (source, staged and read-back values) goes to ``sample_diff_<run id>.csv`` next to the DuckDB
file, which stays local; metadata and logs carry counts, ids, column names and the masked Markdown view only.
"""
# No `from __future__ import annotations` here: Dagster reads the context and config annotations at runtime.

import os
from collections.abc import Mapping
from pathlib import Path

from dagster import AssetExecutionContext, AssetKey, Config, MaterializeResult, MetadataValue, asset
from dagster_duckdb import DuckDBResource
from pydantic import Field as ConfigField

from senseimig_dagster.assets.staging import _map, _read_raw
from senseimig_dagster.dataverse.load import (
    build_readback,
    entity_sets,
    landed_per_table,
    load_staged,
    resolve_users,
    tables_of,
)
from senseimig_dagster.dataverse.loader import BulkLoader, LoadResult
from senseimig_dagster.dataverse.schema_setup import SchemaSetup
from senseimig_dagster.mapping.sample import diff_markdown, field_diff, sample_patient_ids, sample_rows
from senseimig_dagster.mapping.targets import TargetCatalog
from senseimig_dagster.objects import REGISTRY
from senseimig_dagster.resources import DataverseResource, MappingResource
from senseimig_dagster.staging.pipeline import stage_tenant

SAMPLE_DIFF_KEY = AssetKey(["mapping", "sample_diff"])


class SampleMigrationConfig(Config):
    patients: int = ConfigField(default=25, ge=1, description="patients to migrate with all their children")
    seed: int = ConfigField(default=0, description="same seed, same patients")


def diff_csv_path(store: DuckDBResource, run_id: str) -> Path:
    return Path(store.database).resolve().parent / f"sample_diff_{run_id}.csv"


def _failures_markdown(results: Mapping[str, LoadResult]) -> str:
    """Failed rows per object and Dataverse error code (Dataverse's messages may quote values: left out)."""
    counts: dict[tuple[str, str], int] = {}
    for name, result in results.items():
        for f in result.failed:
            key = (name, f"{f.status or '-'} {f.code or ''}".strip())
            counts[key] = counts.get(key, 0) + 1
    if not counts:
        return "none"
    return "| object | status / code | rows |\n|---|---|---|\n" + "\n".join(
        f"| {name} | {code} | {n} |" for (name, code), n in sorted(counts.items()))


@asset(key=SAMPLE_DIFF_KEY, group_name="mapping", kinds={"dataverse", "polars"},
       deps=[AssetKey(["raw", o.name]) for o in REGISTRY],
       description="Sample migration: N patients (config) with all their children staged, loaded into the sample "
                   "Dataverse environment and read back; the field diff (source | staged | Dataverse) is where the "
                   "map is confirmed. Full values in a local CSV; PHI masked here.")
def sample_diff(context: AssetExecutionContext, config: SampleMigrationConfig, store: DuckDBResource,
                mapping: MappingResource, sample_dataverse: DataverseResource) -> MaterializeResult:
    fmap = _map(mapping)
    plan = sample_dataverse.plan()
    raw = _read_raw(store)
    patient_ids = sample_patient_ids(raw["patient"], config.patients, config.seed) if "patient" in raw else []
    # Objects without sampled rows are left out: stage_tenant fails on a 0-row object (staging/values/check.py
    # builds its null mask as a Null-typed Series); reported, staging is not this module's to change.
    rows = {name: frame for name, frame in sample_rows(raw, patient_ids).items() if frame.height}
    staging = stage_tenant(rows, fmap, plan=plan,
                           fallback_provider_id=os.environ.get("SENSEIMIG_FALLBACK_PROVIDER_ID") or None)
    staged = staging.staged
    context.log.info(f"sample: {len(patient_ids)} patients, staged " +
                     ", ".join(f"{k} {v.height}" for k, v in staged.items()))
    catalog = TargetCatalog(plan)
    clients = sample_dataverse.clients()
    try:
        meta = sample_dataverse.metadata(clients[0])
        SchemaSetup(meta, plan, tier=sample_dataverse.dataverse_tier).run()
        sets = entity_sets(meta, tables_of(fmap, staged))
        results = load_staged(BulkLoader(clients), staged, fmap, catalog, sets)
        # The diff compares what was sent: lookups to users left out, as load_staged does without an owner map.
        sent = {name: resolve_users(frame, fmap.objects[name].tables, catalog) for name, frame in staged.items()}
        readback = build_readback(clients[0], sent, fmap, catalog, sets)
    finally:
        for client in clients:
            client.close()
    diff = field_diff(fmap, rows, sent, readback, catalog)
    path = diff_csv_path(store, context.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    diff.write_csv(path)
    loaded = landed_per_table(staged, results, fmap)
    equal = int(diff.get_column("equal").sum()) if diff.height else 0
    failed = sum(len(r.failed) for r in results.values())
    context.log.info(f"sample: {sum(loaded.values())} rows loaded, {failed} failed; {equal} of {diff.height} "
                     "values equal after the round trip")
    return MaterializeResult(metadata={
        "patients": len(patient_ids),
        "rows_loaded": sum(loaded.values()),
        "rows_loaded_per_table": MetadataValue.json(loaded),
        "rows_failed": failed,
        "failures": MetadataValue.md(_failures_markdown(results)),
        "rows_quarantined": int(staging.counts.get_column("quarantined").sum()),  # reasons: the staging assets
        "values_compared": diff.height,
        "values_equal": equal,
        "values_differing": diff.height - equal,
        "diff": MetadataValue.md(diff_markdown(diff)),
        "diff_csv": MetadataValue.path(str(path)),
        "environment": sample_dataverse.environment_url,
    })

