"""``staging/<object>``: every written Sensei object cleaned, deduplicated, resolved and shaped into Dataverse
columns (``staging/pipeline.py``), plus ``staging/quarantine``, ``staging/merge_map`` and
``staging/provider_resolution``.

One multi-asset, one step: patient deduplication needs every patient and re-points every child, provider
resolution and chart-duplicate collapse need the re-pointed children, so the tenant is staged as a whole; each
output still declares the raw assets it reads, so the graph shows them. Assets generated from the registry and
the map: one per object with rows of its own (``mode: match`` users and ``mode: skip`` objects have none);
policies, plans and referrals are merged into the patient contact, so ``staging/patient`` carries them and
reports their conservation too.

Unpartitioned: staging reads the full raw tables (the latest version of each record, whatever partitions were
extracted). Delta pickup (issue 6 item 6, ``staging/delta.py``): every staged row carries ``_modified_at``; in a run
over modification-day partitions the metadata counts the rows in that window, and the writers send only those.
Not gated on the map's confirmation: the sample review runs staging *before* the map is confirmed; the Dataverse
writers (issue 6) carry the gate. The map is the ``MappingResource``'s file, or the shipped default map when that
file does not exist (the sandbox).

Every staging asset has a blocking ``conservation`` check (extracted = staged + merged + collapsed + quarantined +
not written) and the blocking Pandera check of ``staging/validation.py``. Staged rows and quarantine rows hold
PHI: they stay in DuckDB; metadata gets counts and ``quarantine.masked_sample`` only.
"""
# No `from __future__ import annotations` here: Dagster reads the context and resource annotations at runtime.

import os
from collections.abc import Iterator
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
from dagster_duckdb import DuckDBResource

from senseimig_dagster.assets.partitions import run_window
from senseimig_dagster.dataverse.schema import default_plan
from senseimig_dagster.mapping import default_map_path, load_valid
from senseimig_dagster.mapping.model import FieldMapFile
from senseimig_dagster.objects import OBJECTS, REGISTRY, get
from senseimig_dagster.resources import MappingResource
from senseimig_dagster.staging import quarantine as q
from senseimig_dagster.staging.delta import latest_sql
from senseimig_dagster.staging.pipeline import StagingResult, merged_objects, stage_tenant, written_objects
from senseimig_dagster.staging.providers import FREE_TEXT_OBJECTS, decision_summary
from senseimig_dagster.staging.validation import pandera_check_result, pandera_check_specs

CONSERVATION = "conservation"
DEFAULT_MAP = load_valid(default_map_path())
QUARANTINE, MERGE_MAP, PROVIDERS = "quarantine", "merge_map", "provider_resolution"


def _raw_key(name: str) -> AssetKey:
    return AssetKey(["raw", name])


def accounted_by(name: str, fmap: FieldMapFile = DEFAULT_MAP) -> list[str]:
    """The objects whose conservation an asset reports: itself, and for the patient the objects merged into it."""
    return [name, *merged_objects(fmap)] if name == "patient" else [name]


def raw_needs(name: str, fmap: FieldMapFile = DEFAULT_MAP) -> set[AssetKey]:
    """Raw tables a staging asset is built from: its own, its parents' (lookups, orphans, zones), the merged
    objects and theirs (patient), the providers for free-text names."""
    names = set()
    for part in accounted_by(name, fmap):
        names |= {part, *get(part).parents}
    if name in FREE_TEXT_OBJECTS:
        names.add("provider")
    return {_raw_key(n) for n in names if n in OBJECTS}


def _map(mapping: MappingResource) -> FieldMapFile:
    return load_valid(mapping.path) if os.path.exists(mapping.path) else load_valid(default_map_path())


def _read_raw(store: DuckDBResource) -> dict[str, pl.DataFrame]:
    frames = {}
    with store.get_connection() as conn:
        present = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'raw'").fetchall()}
        for obj in REGISTRY:
            if obj.name in present:
                # raw keeps every version received (a delta window lands a newer copy): the latest per id
                frames[obj.name] = conn.sql(latest_sql(f'raw."{obj.name}"')).pl()
    return frames


def _md(frame: pl.DataFrame) -> str:
    if frame.is_empty():
        return "none"
    header = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * frame.width
    return header + "\n" + "\n".join("| " + " | ".join("" if v is None else str(v) for v in row) + " |"
                                     for row in frame.iter_rows())


def _ready_for_duckdb(frame: pl.DataFrame) -> pl.DataFrame:
    """All-null columns typed as text: DuckDB cannot create a column of Arrow's null type."""
    nulls = [c for c, t in frame.schema.items() if t == pl.Null]
    return frame.with_columns(pl.col(nulls).cast(pl.String)) if nulls else frame


def _conservation_check(key: AssetKey, counts: pl.DataFrame) -> AssetCheckResult:
    broken = counts.filter(~pl.col("conserved"))
    return AssetCheckResult(
        asset_key=key, check_name=CONSERVATION, passed=broken.is_empty(), severity=AssetCheckSeverity.ERROR,
        metadata={"conservation": MetadataValue.md(_md(counts)),
                  **{f"{r['object']}_extracted": r["extracted"] for r in counts.iter_rows(named=True)}},
        description="every extracted row is staged, merged, collapsed, quarantined or not written by rule"
        if broken.is_empty() else f"rows unaccounted for: {', '.join(broken.get_column('object'))}")


def _object_metadata(result: StagingResult, names: list[str]) -> dict[str, Any]:
    counts = result.counts.filter(pl.col("object").is_in(names))
    found = result.quarantine.filter(pl.col("object").is_in(names))
    not_written = result.not_written.filter(pl.col("object").is_in(names)).group_by("object", "cause").len("rows")
    return {"conservation": MetadataValue.md(_md(counts)),
            "quarantine_reasons": MetadataValue.md(_md(q.reason_counts(found))),
            "quarantine_sample_masked": MetadataValue.md(_md(q.masked_sample(found, n=3).drop("message"))),
            "not_written": MetadataValue.md(_md(not_written.sort("object", "cause"))),
            "quarantined_rows": int(counts.get_column("quarantined").sum())}


def build_staging_assets(fmap: FieldMapFile = DEFAULT_MAP) -> AssetsDefinition:
    """The staging multi-asset for the objects ``fmap`` writes (the default map's, at definition time: which
    objects have assets is structure; the map read at run time decides the values)."""
    names = written_objects(fmap)
    outs = {name: AssetOut(key=["staging", name], io_manager_key="duckdb_io_manager", group_name="staging",
                           kinds={"polars", "duckdb"}, tags={"layer": "staging"},
                           description=f"{get(name).description} Shaped into Dataverse `{'/'.join(fmap.objects[name].tables)}` "
                                       "columns; lookups hold the parent's Sensei id.")
            for name in names}
    outs[QUARANTINE] = AssetOut(key=["staging", QUARANTINE], io_manager_key="duckdb_io_manager",
                                group_name="staging", kinds={"polars", "duckdb"},
                                description="Every finding: object, source id, field, rule, severity, message, raw "
                                            "value (PHI: stays in DuckDB).")
    outs[MERGE_MAP] = AssetOut(key=["staging", MERGE_MAP], io_manager_key="duckdb_io_manager", group_name="staging",
                               kinds={"polars", "duckdb"},
                               description="Patient deduplication decisions: ids and scores only.")
    outs[PROVIDERS] = AssetOut(key=["staging", PROVIDERS], io_manager_key="duckdb_io_manager",
                               group_name="staging", kinds={"polars", "duckdb"},
                               description="Free-text provider resolutions: ids, method, score, action.")
    internal = {name: raw_needs(name, fmap) for name in names}
    everything = {_raw_key(o.name) for o in REGISTRY}
    internal[QUARANTINE] = everything
    internal[MERGE_MAP] = {_raw_key("patient")}
    internal[PROVIDERS] = {_raw_key(n) for n in ("provider", "appointment", *FREE_TEXT_OBJECTS)}
    checks = []
    for name in names:
        key = AssetKey(["staging", name])
        checks.append(AssetCheckSpec(CONSERVATION, asset=key, blocking=True,
                                     description="extracted = staged + merged + collapsed + quarantined + not "
                                                 "written, for " + ", ".join(accounted_by(name, fmap))))
        checks += pandera_check_specs(key, name)

    @multi_asset(name="staging", outs=outs, deps=sorted(everything, key=str), internal_asset_deps=internal,
                 check_specs=checks, can_subset=False,
                 description="Stage the whole tenant: clean, deduplicate, resolve providers, collapse chart "
                             "duplicates, shape into Dataverse columns.")
    def _staging(context: AssetExecutionContext, store: DuckDBResource, mapping: MappingResource) -> Iterator:
        fmap_now = _map(mapping)
        plan = default_plan(fmap_now.prefix)
        result = stage_tenant(_read_raw(store), fmap_now, plan=plan,
                              fallback_provider_id=os.environ.get("SENSEIMIG_FALLBACK_PROVIDER_ID") or None)
        context.log.info("staged " + ", ".join(f"{k} {v.height}" for k, v in result.staged.items()))
        # Owner resolution (staging/owners.py) needs the Dataverse users: asset staging/owners (assets/owners.py)
        # reads ``_owner_user_id`` from these tables; issue 6's writers join its table.
        parents = {k: v.get_column("_source_id") for k, v in result.staged.items()}
        # Delta pickup: a run over modification-day partitions stages everything (context) and reports how many
        # staged rows fall in its window (``_modified_at``); the writers send only those (staging/delta.py).
        window = run_window(context.run.tags)
        for name in names:
            frame = result.staged.get(name)
            if frame is None:
                continue
            key = AssetKey(["staging", name])
            in_window = {"window": window.describe(), "rows_in_window": frame.filter(window.contains()).height} \
                if window else {}
            yield Output(_ready_for_duckdb(frame), output_name=name,
                         metadata={"rows": frame.height, **in_window,
                                   **_object_metadata(result, accounted_by(name, fmap))})
            counts = result.counts.filter(pl.col("object").is_in(accounted_by(name, fmap)))
            yield _conservation_check(key, counts)
            yield pandera_check_result(key, name, frame, fmap_now, plan, parents)
        yield Output(_ready_for_duckdb(result.quarantine), output_name=QUARANTINE,
                     metadata={"findings": result.quarantine.height,
                               "reasons": MetadataValue.md(_md(q.reason_counts(result.quarantine)))})
        yield Output(_ready_for_duckdb(result.merge_map), output_name=MERGE_MAP,
                     metadata={"merged": result.merge_map.height, **{k: v for k, v in result.stats.items()}})
        yield Output(_ready_for_duckdb(result.provider_decisions), output_name=PROVIDERS,
                     metadata={"decisions": MetadataValue.md(_md(decision_summary(result.provider_decisions)))})

    return _staging


staging_assets = build_staging_assets()
