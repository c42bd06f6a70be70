"""Jobs a migration engineer runs from the UI or the CLI."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from senseimig_dagster.assets.audit import export_audit, rollback
from senseimig_dagster.assets.keys import DELETIONS, GO_LIVE, SAMPLE_DIFF, SCHEMA
from senseimig_dagster.assets.mapping import confirm_mapping
from senseimig_dagster.assets.release import RELEASE_TAG
from senseimig_dagster.assets.writers import WRITER_KEYS

RAW = AssetSelection.groups("raw")
INVENTORY = AssetSelection.groups("inventory")

# Extraction and inventory. Launched over the whole partition range it is the first full load (one run, thanks to
# the single-run backfill policy); over the last days' partitions it is a delta pickup.
extract_job = define_asset_job(
    "extract",
    selection=RAW,
    description="Land every Sensei object in DuckDB (raw layer) for the selected modification-day partitions.",
)

inventory_job = define_asset_job(
    "take_inventory",
    selection=INVENTORY,
    description="Count records per object and location and compare with what the source reports.",
)

schema_job = define_asset_job(
    "setup_dataverse_schema",
    selection=AssetSelection.assets(SCHEMA),
    description="Create (or complete) the migration's Dataverse schema; a no-op when it is already there.",
)

stage_job = define_asset_job(
    "stage",
    selection=AssetSelection.groups("staging"),
    description="Stage the whole tenant from the raw tables: clean, deduplicate, resolve, shape; quarantine and "
                "conservation checks. Runs before the map is confirmed (the sample review); writers are gated.",
)

sample_migration_job = define_asset_job(
    "sample_migration",
    selection=AssetSelection.assets(SAMPLE_DIFF),
    description="Migrate N patients (config: patients, seed) with all their children into the sample Dataverse "
                "environment and show the field diff to confirm the map on. Needs the raw tables (extract).",
)

migrate_job = define_asset_job(
    "migrate",
    selection=AssetSelection.assets(SCHEMA, *WRITER_KEYS) | AssetSelection.groups("staging"),
    description="The migration: schema, staging (with owners), then every dataverse/<object> writer parents first. "
                "Needs the raw tables (extract) and a confirmed map; a re-run sends only what changed.",
)

# Delta pickup: launched over the last days' partitions (e.g. the last two), one run lands those
# days' raw rows, stages the tenant (context) and sends only the rows modified in the window; deletions reported.
delta_job = define_asset_job(
    "delta",
    selection=RAW | AssetSelection.groups("staging") | AssetSelection.assets(*WRITER_KEYS, DELETIONS),
    description="Pick up a modification window: raw partitions, staging, then every writer sends only the records "
                "created or modified in the window (no duplicates: upsert by source id; unchanged bodies skipped); "
                "records deleted in Sensei are listed in dataverse/deletions_report, never deleted in Dataverse.",
)

go_live_job = define_asset_job(
    "go_live_check",
    selection=AssetSelection.assets(GO_LIVE),
    description="Reconcile the ledger with Dataverse per location (one automatic re-run of the rows that differ); "
                "go_live_ready fails with the Markdown table while it does not reconcile. Run after migrate.",
)

# Releasing corrected records: staging applies the corrections file, every writer sends exactly the records a
# correction changed in this run, and the ledger is reconciled again.
release_job = define_asset_job(
    "release",
    selection=AssetSelection.groups("staging") | AssetSelection.assets(*WRITER_KEYS, GO_LIVE),
    tags={RELEASE_TAG: "corrections"},
    description="Re-stage with the corrections file applied and send exactly the corrected records (each writer: "
                "only the records a correction changed in this run), then reconcile the ledger. The corrections' "
                "outcomes are in staging.corrections, who/why/before/after in the audit store.",
)

# confirm_mapping (assets/mapping.py): the UI path to `senseimig mapping confirm`, config path and by.
all_jobs = [extract_job, inventory_job, schema_job, stage_job, sample_migration_job, migrate_job, delta_job, go_live_job,
            release_job, confirm_mapping, export_audit, rollback]  # assets/audit.py: op config path/format; remove_schema/force/run_id
