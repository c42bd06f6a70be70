"""``staging/<object>``: every written Sensei object cleaned, deduplicated, resolved and shaped into Dataverse
columns (``staging/pipeline.py``), plus ``staging/quarantine``, ``staging/merge_map`` (each merge with its match
probability and deciding comparison levels), ``staging/match_review`` (patient pairs a person should decide in the
override file) and ``staging/provider_resolution``.

One multi-asset, one step: patient deduplication needs every patient and re-points every child, provider
resolution and chart-duplicate collapse need the re-pointed children, so the tenant is staged as a whole; each
output declares only the raw assets it reads (its own, its parents', those merged into it, the providers its free
text resolves to), so lineage shows which source objects feed which staged object. One output per object the map
writes (``mode: match`` users and ``mode: skip`` objects have none); objects merged into another (policies, plans
and referrals into the patient contact) are staged on that object's rows, which report their conservation too.

Unpartitioned: staging reads the newest raw version of every record, whatever partitions were extracted. In a run
over modification-day partitions (the ``delta`` job) every staged row still carries ``_modified_at``, the metadata
counts the rows in the window, and the writers send only those. Not gated on the map's confirmation: the sample
review stages *before* the map is confirmed; the writers carry the gate. The map is the ``MappingResource``'s file,
or the shipped default map while that file does not exist (the sandbox).

Corrections (``staging/corrections.py``, the ``StagingResource``'s file) are applied to the newest raw rows first;
their outcomes go to ``staging.corrections`` (no values), their values to the audit store, their counts per object
to the metadata (``corrections``).

Checks, both blocking: ``conservation`` (extracted = staged + merged + collapsed + quarantined + not written) and
``staged_schema`` (the Pandera model of ``staging/validation.py``). Staged and quarantine rows hold PHI: they stay in
DuckDB; metadata gets counts and ``quarantine.masked_sample`` only.
"""
# No `from __future__ import annotations` here: Dagster reads the context and resource annotations at runtime.

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetOut,
    AssetsDefinition,
    MetadataValue,
    Output,
    multi_asset,
)

from senseimig_dagster.assets.keys import (
    MATCH_REVIEW,
    MERGE_MAP,
    PROVIDER_RESOLUTION,
    QUARANTINE,
    raw_key,
    staging_key,
)
from senseimig_dagster.assets.metadata import KeyLike, markdown_table
from senseimig_dagster.assets.partitions import run_window
from senseimig_dagster.assets.release import record_outcomes
from senseimig_dagster.audit.corrections import record_corrections
from senseimig_dagster.dataverse.schema import SchemaPlan
from senseimig_dagster.mapping import default_map
from senseimig_dagster.mapping.model import FieldMapFile
from senseimig_dagster.mapping.schema_plan import default_plan
from senseimig_dagster.mapping.scope import accounted_by, written_objects
from senseimig_dagster.objects import OBJECTS, PATIENT, REGISTRY, get
from senseimig_dagster.resources import AuditStore, MappingResource, StagingResource, StoreResource
from senseimig_dagster.staging import quarantine as q
from senseimig_dagster.staging.corrections import apply_corrections, load_corrections
from senseimig_dagster.staging.dedup import load_overrides
from senseimig_dagster.staging.matching.linkage import match_weights_html, match_weights_table
from senseimig_dagster.staging.pipeline import COUNT_COLUMNS, StagingResult, stage_tenant
from senseimig_dagster.staging.providers import FREE_TEXT_OBJECTS, PROVIDERS, decision_summary
from senseimig_dagster.staging.validation import CHECK_NAME, validate_object

CONSERVATION = "conservation"


def raw_needs(name: str, fmap: FieldMapFile | None = None) -> set[AssetKey]:
    """Raw tables a staging asset is built from: its own, its parents' (lookups, orphans, zones), the objects merged
    into it and their parents, and the providers free-text names resolve to."""
    fmap = fmap or default_map()
    names = set()
    for part in accounted_by(fmap, name):
        names |= {part, *get(part).parents}
    if name in FREE_TEXT_OBJECTS:
        names.add(PROVIDERS)
    return {raw_key(n) for n in names if n in OBJECTS}


def read_raw(store: StoreResource) -> dict[str, pl.DataFrame]:
    """The newest version of every record of every extracted object (raw keeps every version received)."""
    with store.open() as db:
        return {obj.name: frame for obj in REGISTRY if (frame := db.raw(obj)) is not None}


def _ready_for_duckdb(frame: pl.DataFrame) -> pl.DataFrame:
    """All-null columns typed as text: DuckDB cannot create a column of Arrow's null type."""
    nulls = [c for c, t in frame.schema.items() if t == pl.Null]
    return frame.with_columns(pl.col(nulls).cast(pl.String)) if nulls else frame


# -- checks ----------------------------------------------------------------------------------------------------------
def _conservation_check(key: AssetKey, counts: pl.DataFrame) -> AssetCheckResult:
    broken = counts.filter(~pl.col("conserved"))
    return AssetCheckResult(
        asset_key=key, check_name=CONSERVATION, passed=broken.is_empty(), severity=AssetCheckSeverity.ERROR,
        metadata={"conservation": MetadataValue.md(markdown_table(counts)),
                  **{f"{r['object']}_extracted": r["extracted"] for r in counts.iter_rows(named=True)}},
        description="every extracted row is staged, merged, collapsed, quarantined or not written by rule"
        if broken.is_empty() else "rows unaccounted for: " + ", ".join(
            f"{o} ({gap:+d} of {n} extracted)" for o, n, gap in broken.select(
                "object", "extracted", gap=pl.col("extracted") - pl.sum_horizontal(*COUNT_COLUMNS[1:])).iter_rows()))


def pandera_check_specs(asset_key: KeyLike, object_name: str) -> list[AssetCheckSpec]:
    """The blocking Pandera check to declare on the staging asset of ``object_name``."""
    return [AssetCheckSpec(CHECK_NAME, asset=asset_key, blocking=True,
                           description=f"{object_name} fits its Dataverse columns: required columns, max lengths, "
                                       "option values, ranges, unique alternate key, lookups to staged parents.")]


def pandera_check_result(asset_key: KeyLike, object_name: str, frame: pl.DataFrame, fmap: FieldMapFile,
                         plan: SchemaPlan, parents: Mapping[str, pl.Series] | None = None, *,
                         standard: Mapping[str, Mapping[str, Any]] | None = None) -> AssetCheckResult:
    """Validate ``frame`` (``staging/validation.py``) and turn the report into the blocking check's result."""
    report = validate_object(object_name, frame, fmap, plan, parents, standard=standard)
    counts = report.failure_counts
    metadata: dict[str, Any] = {"rows": frame.height, "failing_checks": len(counts),
                                "failures": sum(counts.values())}
    if not report.passed:
        count_frame = pl.DataFrame({"check": list(counts), "rows": list(counts.values())},
                                   schema={"check": pl.String, "rows": pl.Int64})
        metadata["failure_counts"] = MetadataValue.md(markdown_table(count_frame))
        metadata["sample"] = MetadataValue.md(markdown_table(report.sample.select("source_id", "rule", "message",
                                                                                  "raw_value")))
    return AssetCheckResult(asset_key=AssetKey.from_coercible(asset_key), check_name=CHECK_NAME,
                            passed=report.passed, severity=AssetCheckSeverity.ERROR, metadata=metadata,
                            description="all rows fit their Dataverse columns" if report.passed
                            else f"{sum(counts.values())} failures in {len(counts)} column checks")


def _object_metadata(result: StagingResult, names: list[str]) -> dict[str, Any]:
    counts = result.counts.filter(pl.col("object").is_in(names))
    found = result.quarantine.filter(pl.col("object").is_in(names))
    not_written = result.not_written.filter(pl.col("object").is_in(names)).group_by("object", "cause").len("rows")
    return {"conservation": MetadataValue.md(markdown_table(counts)),
            "quarantine_reasons": MetadataValue.md(markdown_table(q.reason_counts(found))),
            "quarantine_sample_masked": MetadataValue.md(markdown_table(q.masked_sample(found, n=3).drop("message"))),
            "not_written": MetadataValue.md(markdown_table(not_written.sort("object", "cause"))),
            "quarantined_rows": int(counts.get_column("quarantined").sum())}


def _match_chart(store: StoreResource, parameters: dict[str, Any]) -> dict[str, Any]:
    """The linkage model's match weights: a table in the UI and Splink's chart beside the store (parameters only,
    no patient data)."""
    if not parameters or store.database == ":memory:":
        return {}
    chart = Path(store.database).with_name("match_weights.html")
    chart.write_text(match_weights_html(parameters), encoding="utf-8")
    table = match_weights_table(parameters).with_columns(pl.col("m", "u", "match_weight").round(4))
    return {"match_weights": MetadataValue.md(markdown_table(table)), "match_weights_chart": MetadataValue.path(
        str(chart))}


# -- the multi-asset -------------------------------------------------------------------------------------------------
def _out(key: AssetKey, description: str) -> AssetOut:
    return AssetOut(key=key, io_manager_key="duckdb_io_manager", group_name="staging", kinds={"polars", "duckdb"},
                    description=description)


def build_staging_assets(fmap: FieldMapFile | None = None) -> AssetsDefinition:
    """The staging multi-asset for the objects ``fmap`` writes (the default map's, at definition time: which
    objects have assets is structure; the map read at run time decides the values)."""
    fmap = fmap or default_map()
    names = written_objects(fmap)
    outs = {name: _out(staging_key(name), f"{get(name).description} Shaped into Dataverse "
                                          f"`{'/'.join(fmap.objects[name].tables)}` columns; lookups hold the "
                                          "parent's Sensei id.")
            for name in names}
    extras = {QUARANTINE: "Every finding: object, source id, field, rule, severity, message, raw value (PHI: stays "
                          "in DuckDB).",
              MERGE_MAP: "Merged patients: duplicate -> survivor, match probability and the comparison levels that "
                         "decided it (ids and level names only).",
              MATCH_REVIEW: "Patient pairs in the uncertain band: decide them in the override file (merge or "
                            "never); the decision wins on every run.",
              PROVIDER_RESOLUTION: "Free-text provider resolutions: ids, method, score, action."}
    outs |= {key.path[-1]: _out(key, text) for key, text in extras.items()}
    everything = {raw_key(o.name) for o in REGISTRY}
    internal = {name: raw_needs(name, fmap) for name in names}
    internal[QUARANTINE.path[-1]] = everything
    internal[MERGE_MAP.path[-1]] = {raw_key(PATIENT.name)}
    internal[MATCH_REVIEW.path[-1]] = {raw_key(PATIENT.name)}
    internal[PROVIDER_RESOLUTION.path[-1]] = {raw_key(n) for n in (PROVIDERS, *FREE_TEXT_OBJECTS)} | {
        raw_key(get(o).field(via).references)  # the rows a free text's location is read through
        for o in FREE_TEXT_OBJECTS if (via := get(o).free_text_provider.location_via)}  # type: ignore[union-attr]
    checks = []
    for name in names:
        checks.append(AssetCheckSpec(CONSERVATION, asset=staging_key(name), blocking=True,
                                     description="extracted = staged + merged + collapsed + quarantined + not "
                                                 "written, for " + ", ".join(accounted_by(fmap, name))))
        checks += pandera_check_specs(staging_key(name), name)

    @multi_asset(name="staging", outs=outs, deps=sorted(everything, key=str), internal_asset_deps=internal,
                 check_specs=checks, can_subset=False,
                 description="Stage the whole tenant: clean, deduplicate, resolve providers, collapse chart "
                             "duplicates, shape into Dataverse columns.")
    def _staging(context: AssetExecutionContext, store: StoreResource, mapping: MappingResource,
                 staging_rules: StagingResource, audit: AuditStore) -> Iterator:
        fmap_now = mapping.load()
        plan = default_plan(fmap_now.prefix)
        corrected = apply_corrections(read_raw(store), load_corrections(staging_rules.corrections_path))
        if corrected.outcomes.height:  # who, why and the values before and after: the encrypted audit store
            with audit.connect() as conn:
                record_corrections(conn, context.run_id, corrected.values)
        with store.open() as db:
            record_outcomes(db, context.run_id, corrected.outcomes)
        result = stage_tenant(corrected.raw, fmap_now, plan=plan,
                              fallback_provider_id=staging_rules.fallback_provider_id,
                              overrides=load_overrides(staging_rules.match_overrides, missing_ok=True))
        corrections = corrected.per_object()
        context.log.info("staged " + ", ".join(f"{k} {v.height}" for k, v in result.staged.items()))
        parents = {k: v.get_column("_source_id") for k, v in result.staged.items()}
        window = run_window(context.run.tags)
        for name in names:
            frame = result.staged.get(name)
            if frame is None:
                continue
            key, accounted = staging_key(name), accounted_by(fmap, name)
            in_window = {"window": window.describe(), "rows_in_window": frame.filter(window.contains()).height} \
                if window else {}
            applied = {o: corrections[o] for o in accounted if o in corrections}
            yield Output(_ready_for_duckdb(frame), output_name=name,
                         metadata={"rows": frame.height, **in_window, **_object_metadata(result, accounted),
                                   "corrections": MetadataValue.json(applied)})
            yield _conservation_check(key, result.counts.filter(pl.col("object").is_in(accounted)))
            yield pandera_check_result(key, name, frame, fmap_now, plan, parents)
        yield Output(_ready_for_duckdb(result.quarantine), output_name=QUARANTINE.path[-1],
                     metadata={"findings": result.quarantine.height, "corrections": MetadataValue.json(corrections),
                               "reasons": MetadataValue.md(markdown_table(q.reason_counts(result.quarantine)))})
        yield Output(_ready_for_duckdb(result.merge_map), output_name=MERGE_MAP.path[-1],
                     metadata={"merged": result.merge_map.height, **dict(result.stats),
                               "match_training": MetadataValue.md(markdown_table(result.match_training)),
                               **_match_chart(store, result.match_parameters)})
        yield Output(_ready_for_duckdb(result.match_review), output_name=MATCH_REVIEW.path[-1],
                     metadata={"pairs_to_review": result.match_review.height,
                               "override_file": staging_rules.match_overrides})
        yield Output(_ready_for_duckdb(result.provider_decisions), output_name=PROVIDER_RESOLUTION.path[-1],
                     metadata={"decisions": MetadataValue.md(markdown_table(decision_summary(
                         result.provider_decisions)))})

    return _staging


staging_assets = build_staging_assets()
