"""The verification checks of every ``dataverse/<object>`` writer, as one blocking multi-asset check per object:
``dataverse_counts`` (every staged row is in Dataverse: paged source ids, never ``$count``), ``dataverse_fields``
(every mapped column read back equal: all rows up to ``FULL_LIMIT``, else a seeded sample sized for 99% confidence
of a < 0.1% defect rate) and ``dataverse_conservation`` (extracted = in Dataverse + merged + collapsed + quarantined
+ not written). The comparisons themselves are ``verify/`` (no Dagster); this module reads their inputs from the
store, the run's instance and Dataverse, and turns the outcomes into check results.

Metadata names source ids and columns only; the differing values (PHI) are kept in the store's
``verify.differences`` (``verify/differences.py``), never in a file unless a person exports them.
"""
# No `from __future__ import annotations` here: Dagster reads the context and resource annotations at runtime.

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    DagsterInstance,
    MetadataValue,
    multi_asset_check,
)

from senseimig_dagster.assets.keys import staging_key, writer_key
from senseimig_dagster.assets.metadata import IDS_SHOWN, KeyLike
from senseimig_dagster.dataverse.client import DataverseClient
from senseimig_dagster.load.journal import run_outcomes
from senseimig_dagster.load.owners import OwnerMap
from senseimig_dagster.mapping.model import FieldMapFile
from senseimig_dagster.mapping.targets import TargetCatalog
from senseimig_dagster.resources import DataverseResource, MappingResource, StoreResource
from senseimig_dagster.verify.counts import DataverseIndex, conservation, count_rows, counts_from_markdown
from senseimig_dagster.verify.differences import DIFFERENCES, record_differences
from senseimig_dagster.verify.fields import FULL_LIMIT, compare_fields, sample_size

COUNTS, FIELDS, CONSERVATION = "dataverse_counts", "dataverse_fields", "dataverse_conservation"
CHECK_NAMES = (COUNTS, FIELDS, CONSERVATION)


@dataclass
class VerifyInputs:
    """What the checks need besides the staged frame; one per run, shared by every object's checks (the index
    caches each table's source ids, so a parent table is paged once per run).

    ``staging_counts``: staging's conservation counts (``object`` + COUNT_COLUMNS), e.g. from
    :func:`staging_counts_from_instance`; without them the conservation check fails, saying so.
    ``keep_differences(object, diff)``: keeps the field diff's differing values (PHI) in the store and returns how
    many; None: not kept."""

    client: DataverseClient
    fmap: FieldMapFile
    catalog: TargetCatalog
    entity_sets: Mapping[str, str]
    owners: OwnerMap | None = None
    staging_counts: pl.DataFrame | None = None
    keep_differences: Callable[[str, pl.DataFrame], int] | None = None
    full_limit: int = FULL_LIMIT
    seed: int = 0
    index: DataverseIndex = field(init=False)

    def __post_init__(self) -> None:
        self.index = DataverseIndex(self.client, self.entity_sets)


def check_specs(asset_key: KeyLike, object_name: str) -> list[AssetCheckSpec]:
    """The three blocking checks of ``dataverse/<object_name>``: a child is not loaded onto a parent that failed."""
    return [
        AssetCheckSpec(COUNTS, asset=asset_key, blocking=True,
                       description=f"every staged {object_name} row is in Dataverse (paged source ids, not $count)"),
        AssetCheckSpec(FIELDS, asset=asset_key, blocking=True,
                       description=f"every mapped column read back equal: all rows up to {FULL_LIMIT}, else a "
                                   f"seeded sample of {sample_size()} (99% confidence of < 0.1% defects)"),
        AssetCheckSpec(CONSERVATION, asset=asset_key, blocking=True,
                       description="extracted = in Dataverse + merged + collapsed + quarantined + not written"),
    ]


def _listed(ids: list[str]) -> str:
    shown = ", ".join(ids[:IDS_SHOWN])
    return shown + (f" … (+{len(ids) - IDS_SHOWN})" if len(ids) > IDS_SHOWN else "")


def check_results(asset_key: KeyLike, object_name: str, staged: pl.DataFrame, inputs: VerifyInputs,
                  load_journal: pl.DataFrame | None = None) -> list[AssetCheckResult]:
    """Run the three checks of :func:`check_specs` against Dataverse; ``load_journal`` is this run's slice of the
    object's load journal (``outcome`` column: rows ``failed`` explain a conservation gap)."""
    key = AssetKey.from_coercible(asset_key)
    tables = inputs.fmap.objects[object_name].tables
    counted = count_rows(object_name, staged, tables, inputs.index)
    out = [AssetCheckResult(
        asset_key=key, check_name=COUNTS, passed=counted.passed, severity=AssetCheckSeverity.ERROR,
        metadata={"staged": counted.staged, "in_dataverse": counted.present, "missing": len(counted.missing),
                  "per_table": MetadataValue.json({t: {"staged": s, "in_dataverse": p}
                                                   for t, (s, p) in counted.per_table.items()}),
                  **({"missing_source_ids": MetadataValue.text(_listed(counted.missing))} if counted.missing else {})},
        description=f"{counted.present} of {counted.staged} staged rows in Dataverse" + (
            f"; missing: {_listed(counted.missing)}" if counted.missing else ""))]

    fields = compare_fields(inputs.client, object_name, staged, inputs.fmap, inputs.catalog, inputs.entity_sets,
                            inputs.index, owners=inputs.owners, full_limit=inputs.full_limit, seed=inputs.seed)
    metadata = {"rows_staged": fields.staged, "rows_compared": fields.compared_rows, "sampled": fields.sampled,
                "values_compared": fields.diff.height, "differences": fields.differences.height}
    if inputs.keep_differences is not None and not fields.passed:
        metadata["differences_kept"] = inputs.keep_differences(object_name, fields.diff)
        metadata["differences_kept_in"] = f"{DIFFERENCES} (values: `senseimig export differences`)"
    if not fields.passed:
        listed = fields.differences.head(IDS_SHOWN)
        metadata["differing"] = MetadataValue.md("| source id | column |\n|---|---|\n" + "\n".join(
            f"| {s} | {c} |" for s, c in listed.iter_rows()))
    out.append(AssetCheckResult(
        asset_key=key, check_name=FIELDS, passed=fields.passed, severity=AssetCheckSeverity.ERROR, metadata=metadata,
        description=f"{fields.compared_rows} rows, every mapped column equal" if fields.passed else
        f"{fields.differences.height} differing values: " + _listed(
            [f"{s}.{c}" for s, c in fields.differences.iter_rows()])))

    if inputs.staging_counts is None or inputs.staging_counts.filter(pl.col("object") == object_name).is_empty():
        out.append(AssetCheckResult(asset_key=key, check_name=CONSERVATION, passed=False,
                                    severity=AssetCheckSeverity.ERROR,
                                    description="no staging conservation counts for this object"))
        return out
    kept = conservation(inputs.staging_counts, counted, load_journal)
    out.append(AssetCheckResult(
        asset_key=key, check_name=CONSERVATION, passed=kept.passed, severity=AssetCheckSeverity.ERROR,
        metadata={"conservation": MetadataValue.md(kept.markdown()), "extracted": kept.extracted,
                  "in_dataverse": kept.in_dataverse},
        description="every extracted row is in Dataverse, merged, collapsed, quarantined or not written by rule"
        if kept.passed else f"{kept.gap} rows unaccounted for ({kept.failed} refused by Dataverse, "
                            f"{kept.missing} missing)"))
    return out


def staging_counts_from_instance(instance: DagsterInstance, object_name: str) -> pl.DataFrame | None:
    """Staging's conservation counts for ``object_name`` from its latest materialization's ``conservation``
    metadata (``assets/staging.py``); None when it has none."""
    event = instance.get_latest_materialization_event(staging_key(object_name))
    materialization = event.asset_materialization if event is not None else None
    entry = materialization.metadata.get("conservation") if materialization is not None else None
    if entry is None:
        return None
    return counts_from_markdown(str(entry.value))


def checks_for(object_name: str) -> AssetChecksDefinition:
    """The blocking verification checks of ``dataverse/<object_name>``: reads the staged frame, the run's journal
    slice, the owner map and staging's conservation counts, then yields :func:`check_results`."""
    key = writer_key(object_name)

    @multi_asset_check(specs=check_specs(key, object_name), name=f"verify__{object_name}",
                       description=f"Counts, field read-back and conservation of dataverse/{object_name}.")
    def _verify(context: AssetCheckExecutionContext, store: StoreResource, dataverse: DataverseResource,
                mapping: MappingResource) -> Iterator:
        fmap = mapping.load()  # the map the writers load with
        with store.open() as db:
            staged, owners = db.staged(object_name), db.owner_map()
            journal = run_outcomes(db.conn, object_name, context.run.run_id)

        def keep(name: str, diff: pl.DataFrame) -> int:
            with store.open() as db:
                return record_differences(db.conn, "verify", context.run.run_id, diff)

        with dataverse.session() as session:
            inputs = VerifyInputs(session.client, fmap, session.catalog, session.entity_sets_of(fmap), owners=owners,
                                  staging_counts=staging_counts_from_instance(context.instance, object_name),
                                  keep_differences=keep)
            yield from check_results(key, object_name, staged, inputs, load_journal=journal)

    return _verify
