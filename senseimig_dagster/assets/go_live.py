"""``go_live_ready``: the migration may go live. Depends on every ``dataverse/<object>`` writer (their keys from
``assets/writers.py``, generated from the registry and the map), so it runs after the whole load.

Its blocking ``ledger_reconciliation`` check (``verify/billing.py``): Sensei's charges, payments, adjustments,
insurance payments, write-offs and claim amounts per location and overall vs what Dataverse holds, within 0.01%.
On a failure the ledger rows that differ are rewritten once through the writers' audited load (``load/writer.py``:
in the audit log, so rollback undoes them; in the load journal; behind the map's gate: no re-run under an
unconfirmed map) and reconciled again; if it still fails the asset fails with the Markdown
table, so go-live stays blocked. The quarantined amounts per location are in the metadata either way.
"""
# No `from __future__ import annotations` here: Dagster reads the context and resource annotations at runtime.

from collections.abc import Mapping

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from senseimig_dagster.assets.keys import GO_LIVE
from senseimig_dagster.assets.writers import WRITER_KEYS
from senseimig_dagster.audit.log import AuditLog
from senseimig_dagster.load.journal import append_outcomes, ensure_journal
from senseimig_dagster.load.writer import WriteContext
from senseimig_dagster.objects import LOCATION, PRIMARY_KEY
from senseimig_dagster.resources import (
    AuditStore,
    DataverseResource,
    MappingResource,
    StagingResource,
    StoreResource,
)
from senseimig_dagster.staging.corrections import Correction, apply_corrections, load_corrections
from senseimig_dagster.store import Store
from senseimig_dagster.verify.billing import (
    ALL,
    CHECK_NAME,
    LOCATION_TABLE,
    PER_LOCATION,
    LedgerInputs,
    RepairOutcome,
    ledger_measures,
    ledger_table,
    money,
    reconcile_and_repair,
    reconciliation_markdown,
)
from senseimig_dagster.verify.counts import DataverseIndex

GO_LIVE_KEY = GO_LIVE


def _read_ledger_inputs(db: Store, objects: list[str], corrections: list[Correction] | None = None
                        ) -> tuple[LedgerInputs, dict[str, str]]:
    raw = {name: frame for name in objects if (frame := db.raw(name)) is not None}  # a delta's edit: newest copy
    # Sensei's side is what was received with the corrections staging applied (each in the audit trail).
    raw = apply_corrections(raw, corrections or []).raw
    staged = {name: db.staged(name) for name in objects if db.exists("staging", name)}
    held = None
    if db.exists("staging", "quarantine"):
        rows = db.conn.sql("SELECT DISTINCT object, source_id FROM staging.quarantine").pl()
        held = {o: rows.filter(pl.col("object") == o).get_column("source_id").to_list() for o in objects}
    locations = db.raw(LOCATION, f"CAST({PRIMARY_KEY} AS VARCHAR) AS id, name")
    names = dict(locations.iter_rows()) if locations is not None else {}
    return LedgerInputs(raw, staged, held), names


def _metadata(outcome: RepairOutcome, names: Mapping[str, str]) -> dict:
    return {"reconciliation": MetadataValue.md(reconciliation_markdown(outcome.final.table, names)),
            "rerun": outcome.rerun, "rows_reupserted": sum(len(v) for v in outcome.repaired.values()),
            "reupserted_source_ids": MetadataValue.json(outcome.repaired),
            "reupsert_failures": outcome.failed_rows,
            "quarantined_by_location": MetadataValue.json(outcome.final.quarantined_by_location()),
            **({"first_reconciliation": MetadataValue.md(reconciliation_markdown(outcome.first.table, names))}
               if outcome.rerun else {})}


@asset(key=GO_LIVE_KEY, group_name="verify", deps=WRITER_KEYS, kinds={"dataverse"},
       check_specs=[AssetCheckSpec(CHECK_NAME, asset=GO_LIVE_KEY, blocking=True,
                                   description="Sensei's ledger and claim totals per location equal Dataverse's "
                                               "within 0.01% (one automatic re-run of the differing rows)")],
       description="The migration is ready to go live: every Dataverse asset loaded and verified, and the ledger "
                   "reconciles to Dataverse per location (Markdown table in the metadata).")
def go_live_ready(context: AssetExecutionContext, store: StoreResource, dataverse: DataverseResource,
                  mapping: MappingResource, staging_rules: StagingResource, audit: AuditStore) -> MaterializeResult:
    fmap = mapping.load()
    objects = sorted({m.object for m in ledger_measures(fmap)})
    with store.open() as db:
        inputs, names = _read_ledger_inputs(db, objects, load_corrections(staging_rules.corrections_path))
        owners = db.owner_map()
    with dataverse.session() as session, audit.connect() as audit_conn:
        sets = session.entity_sets({ledger_table(fmap), LOCATION_TABLE})
        # The re-run writes: only behind the map's confirmation gate, like the writers, and audited like theirs.
        writer = None if mapping.gate_problems() else WriteContext(
            session.loader, session.catalog, session.entity_sets_of(fmap), AuditLog(audit_conn), context.run_id,
            GO_LIVE_KEY.to_user_string(), {}, digest_key=store.digest_key())
        outcome = reconcile_and_repair(writer, inputs, fmap, session.plan, sets,
                                       DataverseIndex(session.client, sets), owners=owners)
    if outcome.written:
        with store.open() as db:
            ensure_journal(db.conn)
            append_outcomes(db.conn, outcome.written, context.run_id)
    metadata = _metadata(outcome, names)
    if not outcome.passed:
        context.log.error(f"ledger does not reconcile after {'a re-run' if outcome.rerun else 'no re-run'}: "
                          + ", ".join(sorted(outcome.final.failures)))
        raise Failure(description="The ledger does not reconcile with Dataverse (0.01%):\n\n"
                      + reconciliation_markdown(outcome.final.table, names), metadata=metadata)
    total = outcome.final.table.filter(pl.col(PER_LOCATION) == ALL)
    context.log.info("ledger reconciles: " + ", ".join(f"{m} {money(c)}" for m, c in
                                                       total.select("measure", "dataverse").iter_rows()))
    return MaterializeResult(metadata=metadata, check_results=[AssetCheckResult(
        asset_key=GO_LIVE_KEY, check_name=CHECK_NAME, passed=True, severity=AssetCheckSeverity.ERROR,
        metadata={"reconciliation": metadata["reconciliation"], "rerun": outcome.rerun},
        description="ledger reconciles per location" + (" after one re-run" if outcome.rerun else ""))])
