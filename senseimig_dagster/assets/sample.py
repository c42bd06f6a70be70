"""``mapping/sample_diff`` and the ``sample_migration`` job: N patients, reproducibly chosen and
stratified across locations, with all their children through the whole graph, then the field diff the engineer
confirms the map on.

Steps: the raw tables (upstream assets) from DuckDB -> ``sample_rows`` of ``sample_patient_ids`` -> ``stage_tenant``
(the same staging as the full run) -> the schema (``SchemaSetup``, idempotent) -> ``load_staged`` (the unaudited
load, ``load/upsert.py``) -> read back -> ``field_diff``. Owners are left to Dataverse's default (no owner map: the
sample environment's users are not the production ones), so lookups to users are not written and not compared.

The gate: the sample writes only to the ``sample_dataverse`` resource's environment (default: the sandbox
emulator; ``SAMPLE_DATAVERSE_URL`` points it at a customer's sandbox environment). It runs *before* the map is
confirmed - it is how the map gets confirmed - so it carries no confirmation gate; writes to the production
``dataverse`` resource are gated (the writers, ``assets/gate.py``). Its schema changes are not written to
``audit.schema_changes``, which records the production environment's.

PHI: the differing values (source, staged and read-back) are kept in the store's ``verify.differences`` (kind
``sample``; ``senseimig export differences`` writes them to a file on request); metadata and logs carry counts, ids,
column names and the masked Markdown view only.
"""
# No `from __future__ import annotations` here: Dagster reads the context and config annotations at runtime.

from collections.abc import Mapping

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field as ConfigField

from senseimig_dagster.assets.keys import SAMPLE_DIFF, raw_key
from senseimig_dagster.assets.staging import read_raw
from senseimig_dagster.dataverse.bulk import LoadResult
from senseimig_dagster.dataverse.schema_setup import SchemaSetup
from senseimig_dagster.load.frames import resolve_users
from senseimig_dagster.load.read_back import build_readback
from senseimig_dagster.load.upsert import landed_per_table, load_staged
from senseimig_dagster.mapping.sample import diff_markdown, field_diff, sample_patient_ids, sample_rows
from senseimig_dagster.mapping.scope import tables_of
from senseimig_dagster.objects import PATIENT, REGISTRY
from senseimig_dagster.resources import DataverseResource, MappingResource, StagingResource, StoreResource
from senseimig_dagster.staging.pipeline import stage_tenant
from senseimig_dagster.verify.differences import DIFFERENCES, record_differences

SAMPLE_DIFF_KEY = SAMPLE_DIFF


class SampleMigrationConfig(Config):
    patients: int = ConfigField(default=25, ge=1, description="patients to migrate with all their children")
    seed: int = ConfigField(default=0, description="same seed, same patients")


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
       deps=[raw_key(o.name) for o in REGISTRY],
       description="Sample migration: N patients (config) with all their children staged, loaded into the sample "
                   "Dataverse environment and read back; the field diff (source | staged | Dataverse) is where the "
                   "map is confirmed. Differing values kept in the store; PHI masked here.")
def sample_diff(context: AssetExecutionContext, config: SampleMigrationConfig, store: StoreResource,
                mapping: MappingResource, sample_dataverse: DataverseResource,
                staging_rules: StagingResource) -> MaterializeResult:
    fmap = mapping.load()
    plan = sample_dataverse.plan()
    raw = read_raw(store)
    patients = raw.get(PATIENT.name)
    patient_ids = sample_patient_ids(patients, config.patients, config.seed) if patients is not None else []
    # Objects without sampled rows are left out: stage_tenant fails on a 0-row object (staging/values/check.py
    # builds its null mask as a Null-typed Series); reported, staging is not this module's to change.
    rows = {name: frame for name, frame in sample_rows(raw, patient_ids).items() if frame.height}
    staging = stage_tenant(rows, fmap, plan=plan, fallback_provider_id=staging_rules.fallback_provider_id)
    staged = staging.staged
    context.log.info(f"sample: {len(patient_ids)} patients, staged " +
                     ", ".join(f"{k} {v.height}" for k, v in staged.items()))
    with sample_dataverse.session() as session:
        SchemaSetup(session.metadata, plan, tier=sample_dataverse.dataverse_tier).run()
        catalog = session.catalog
        sets = session.entity_sets(tables_of(fmap, staged))
        results = load_staged(session.loader, staged, fmap, catalog, sets)
        # The diff compares what was sent: lookups to users left out, as load_staged does without an owner map.
        sent = {name: resolve_users(frame, fmap.objects[name].tables, catalog) for name, frame in staged.items()}
        readback = build_readback(session.client, sent, fmap, catalog, sets)
    diff = field_diff(fmap, rows, sent, readback, catalog)
    with store.open() as db:
        kept = record_differences(db.conn, "sample", context.run_id, diff)
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
        "differences_kept_in": f"{DIFFERENCES} (values: `senseimig export differences --kind sample`)",
        "differences_kept": kept,
        "environment": sample_dataverse.environment_url,
    })

