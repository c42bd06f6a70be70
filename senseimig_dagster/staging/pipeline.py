"""The whole tenant's staging, in order, with every row accounted for. Pure Polars, no Dagster.

Order (each step needs the one before):

1. Deleted rows (``is_deleted``) are set aside: not written, counted.
2. Pass 1 per object (``shape.clean_object``): values cleaned, orphans and duplicate ids quarantined.
3. Patient deduplication (``dedup.deduplicate``): duplicates merged into survivors; every child's patient
   reference re-pointed to its survivor.
4. Provider resolution (``providers``): free-text providers resolved, given the configured fallback, or quarantined.
5. Chart duplicates (``chart_duplicates``): repeated notes, readings and plan lines collapsed.
6. Routed objects keep the rows their route writes (communications by channel; referral sources that are
   doctors); the others are not written (a marketing source lives on as a picklist value on its patients).
7. Pass 2 per object, parents first (``shape.shape_object``): picklists, lookups checked against the parents
   actually staged (so a quarantined patient takes its required children with it), the rename into Dataverse
   columns; merged objects (policies with their plans, referrals) become columns of the patient rows.

Accounts come from the registry's own objects: the organization (DSO) and its locations (practices, their
``parentaccountid`` pointing at the DSO) and payers (``smig_isinsurancecarrier``) are each staged as accounts.

Conservation per object: ``extracted = staged + merged + collapsed + quarantined + not_written``. ``merged``: a
duplicate patient folded into its survivor, or a policy, plan or referral folded into a patient row;
``not_written``: deleted in Sensei, not routed, or a merged row that lost to a newer one (``latest_by``) or has no
slot. ``collapsed`` and ``not_written`` are shown apart from ``merged`` and ``quarantined``, so every number has one
meaning.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import polars as pl

from senseimig_dagster.dataverse.schema import SchemaPlan
from senseimig_dagster.mapping.model import FieldMapFile
from senseimig_dagster.mapping.schema_plan import default_plan
from senseimig_dagster.mapping.scope import merge_root, merged_objects, written_objects
from senseimig_dagster.objects import LOCATION, PATIENT, PRIMARY_KEY, get, load_order
from senseimig_dagster.staging import quarantine as q
from senseimig_dagster.staging.chart_duplicates import LOG_SCHEMA, collapse_chart_duplicates
from senseimig_dagster.staging.dedup import (
    MERGE_MAP_SCHEMA,
    REVIEW_SCHEMA,
    DedupResult,
    Overrides,
    deduplicate,
    repoint_children,
)
from senseimig_dagster.staging.delta import stamp_modified
from senseimig_dagster.staging.matching.linkage import TRAINING_SCHEMA
from senseimig_dagster.staging.providers import (
    DECISION_SCHEMA,
    PROVIDERS,
    apply_resolution,
    free_text_rows,
    resolve_providers,
)
from senseimig_dagster.staging.shape import (
    Targets,
    clean_object,
    code_checks,
    merge_into,
    shape_object,
)
from senseimig_dagster.staging.values.check import Staged, run_checks

COUNT_COLUMNS = ("extracted", "staged", "merged", "collapsed", "quarantined", "not_written")
NOT_WRITTEN_SCHEMA = {"object": pl.String, "source_id": pl.String, "cause": pl.String}


@dataclass
class StagingResult:
    staged: dict[str, pl.DataFrame]  # written object -> Dataverse-shaped rows (the patient's with merged columns)
    counts: pl.DataFrame  # one row per registry object: COUNT_COLUMNS + conserved
    quarantine: pl.DataFrame  # every finding (quarantine.QUARANTINE_SCHEMA)
    merge_map: pl.DataFrame  # duplicate_id, survivor_id, score, rule, reason
    dedup_decisions: pl.DataFrame  # ids, probabilities and level names only
    match_review: pl.DataFrame  # patient pairs in the uncertain band, for a person to decide (dedup.REVIEW_SCHEMA)
    match_parameters: dict  # the linkage model used (m and u per comparison level; no data)
    match_training: pl.DataFrame  # linkage.TRAINING_SCHEMA: each EM rule, estimated or skipped and why
    provider_decisions: pl.DataFrame  # providers.DECISION_SCHEMA
    chart_log: pl.DataFrame  # chart_duplicates.LOG_SCHEMA
    not_written: pl.DataFrame  # object, source_id, cause
    stats: dict[str, int] = field(default_factory=dict)


class Conservation:
    """Staging's conservation counts per object (extracted = staged + merged + collapsed + quarantined +
    not written) and the rows not written, with their cause."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNT_COLUMNS, 0))
        self.not_written: list[pl.DataFrame] = []

    def add(self, obj: str, bucket: str, n: int) -> None:
        self.counts[obj][bucket] += n

    def skip(self, obj: str, ids: pl.Series, cause: str) -> None:
        self.add(obj, "not_written", ids.len())
        self.not_written.append(pl.DataFrame({"object": [obj] * ids.len(), "source_id": ids.cast(pl.String),
                                              "cause": [cause] * ids.len()}, schema=NOT_WRITTEN_SCHEMA))

    def frame(self, names: list[str]) -> pl.DataFrame:
        rows = [{"object": n, **self.counts[n]} for n in names]
        out = pl.DataFrame(rows, schema={"object": pl.String, **dict.fromkeys(COUNT_COLUMNS, pl.Int64)})
        rest = pl.sum_horizontal(*COUNT_COLUMNS[1:])
        return out.with_columns((pl.col("extracted") == rest).alias("conserved"))


def stage_tenant(raw: Mapping[str, pl.DataFrame], fmap: FieldMapFile, *, plan: SchemaPlan | None = None,
                 fallback_provider_id: str | None = None, overrides: Overrides | None = None,
                 today: dt.date | None = None) -> StagingResult:
    """Stage every registry object in ``raw`` (object name -> raw rows) under ``fmap``; see the module doc."""
    targets = Targets.of(plan or default_plan(fmap.prefix))
    counted, findings = Conservation(), [q.empty()]
    order = [o.name for o in load_order() if o.name in raw and o.name in fmap.objects]
    frames: dict[str, pl.DataFrame] = {}
    for name in order:
        frame = raw[name].select([f for f in get(name).field_names if f in raw[name].columns])
        counted.add(name, "extracted", frame.height)
        deleted = pl.col("is_deleted").fill_null(False) if "is_deleted" in frame.columns else pl.lit(False)
        counted.skip(name, frame.filter(deleted).get_column(PRIMARY_KEY), "deleted_in_source")
        frames[name] = frame.filter(~deleted)
    # Orphans are judged against everything extracted (deleted rows too: those are parent_not_staged later).
    extracted_ids = {n: raw[n].get_column(PRIMARY_KEY).cast(pl.String) for n in order}

    # 2. pass 1: values. Users are matched to Dynamics users (owners.py), never written; skipped objects neither.
    # Objects are independent here (those after the locations read the cleaned locations' zones): two run at a
    # time, so one object's per-value Python parsing (phones, e-mails) overlaps another's Polars work.
    pending: list[tuple[str, Future[Staged]]] = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for name in order:
            mode = fmap.objects[name].mode
            if mode != "upsert":
                counted.skip(name, frames[name].get_column(PRIMARY_KEY), f"mode_{mode}")
                continue
            job = pool.submit(clean_object, name, frames[name], fmap, targets, extracted_ids, today=today,
                              locations=frames.get(LOCATION.name))
            if name == LOCATION.name:
                frames[name] = job.result().clean  # the zones of every later object
            pending.append((name, job))
    for name, job in pending:
        staged = job.result()
        findings.append(staged.quarantine)
        counted.add(name, "quarantined", staged.rows_quarantined)
        frames[name] = staged.clean

    # 3. patients: dedup, children re-pointed
    dedup = _dedup(frames, overrides)
    if dedup is not None:
        frames[PATIENT.name] = dedup.patients
        counted.add(PATIENT.name, "merged", dedup.merge_map.height)
        frames.update(repoint_children({k: v for k, v in frames.items() if k != PATIENT.name}, dedup.merge_map))

    # 4. free-text providers
    decisions = pl.DataFrame(schema=DECISION_SCHEMA)
    if PROVIDERS in frames:
        decisions = resolve_providers(free_text_rows(frames), frames[PROVIDERS], fallback_provider_id)
        for name in decisions.get_column("object").unique().to_list():
            frames[name], held = apply_resolution(name, frames[name], decisions)
            findings.append(held)
            counted.add(name, "quarantined", held.height)

    # 5. chart duplicates
    chart = collapse_chart_duplicates(frames)
    frames = chart.frames
    for name, n in chart.counts.items():
        counted.add(name, "collapsed", n)

    # 6. routes (``via`` fields still read the rows routed away: a marketing source's type)
    before_routes = dict(frames)
    for name in order:
        om = fmap.objects[name]
        if om.route is not None and om.merge is None:
            routed = pl.col(om.route.by).cast(pl.String).is_in([k for k, _ in om.route.tables]).fill_null(False)
            counted.skip(name, frames[name].filter(~routed).get_column(PRIMARY_KEY), "not_routed")
            frames[name] = frames[name].filter(routed)

    # 7. pass 2, parents first
    staged_ids: dict[str, pl.Series] = {}
    matched = {n: frames[n] for n in order if fmap.objects[n].mode == "match"}
    for name, rows in matched.items():
        staged_ids[name] = rows.get_column(PRIMARY_KEY)  # users are matched, not written: all can be bound
    for name in (n for n in order if fmap.objects[n].merge is not None):
        staged_ids[name] = frames[name].get_column(PRIMARY_KEY)  # merged parents: judged in their own pass
    out: dict[str, pl.DataFrame] = {}
    for name in written_objects(fmap):
        if name not in frames:
            continue
        shaped = shape_object(name, frames[name], fmap, targets, staged_ids, matched=matched)
        findings.append(shaped.quarantine)
        counted.add(name, "quarantined", shaped.rows_quarantined)
        out[name] = shaped.clean
        staged_ids[name] = shaped.clean.get_column("_source_id")
    for root in sorted({merge_root(fmap, m) for m in merged_objects(fmap)} & out.keys()):
        out[root] = _merge(root, out, before_routes, fmap, staged_ids, counted, findings)
    for name, frame in out.items():
        counted.add(name, "staged", frame.height)
    # Delta pickup (staging/delta.py): ``_modified_at``, when the source last changed what each
    # staged row is made of, so a windowed run's writers send exactly the window's records.
    out = stamp_modified(out, raw, fmap, dedup.merge_map if dedup else None)
    quarantine = pl.concat(findings)
    return StagingResult(
        staged=out, counts=counted.frame(order), quarantine=quarantine,
        merge_map=dedup.merge_map if dedup else pl.DataFrame(schema=MERGE_MAP_SCHEMA),
        dedup_decisions=dedup.decisions if dedup else pl.DataFrame(),
        match_review=dedup.review if dedup else pl.DataFrame(schema=REVIEW_SCHEMA),
        match_parameters=dedup.parameters if dedup else {},
        match_training=dedup.training if dedup else pl.DataFrame(schema=TRAINING_SCHEMA), provider_decisions=decisions,
        chart_log=chart.log if chart.log.height else pl.DataFrame(schema=LOG_SCHEMA),
        not_written=pl.concat([pl.DataFrame(schema=NOT_WRITTEN_SCHEMA), *counted.not_written]),
        stats=dedup.stats if dedup else {})


def _dedup(frames: Mapping[str, pl.DataFrame], overrides: Overrides | None) -> DedupResult | None:
    patients = frames.get(PATIENT.name)
    if patients is None or patients.is_empty():
        return None
    return deduplicate(patients, overrides)


def _merge(root: str, out: dict[str, pl.DataFrame], frames: Mapping[str, pl.DataFrame], fmap: FieldMapFile,
           staged_ids: dict[str, pl.Series], counted: Conservation, findings: list[pl.DataFrame]) -> pl.DataFrame:
    """Objects merged into ``root``: pass 2's codes and lookups, then their columns joined onto its staged rows."""
    staged_ids = {**staged_ids, root: out[root].get_column("_source_id")}
    merged_frames: dict[str, pl.DataFrame] = dict(frames)
    for name in merged_objects(fmap):
        if name not in frames or merge_root(fmap, name) != root:
            continue
        checked = run_checks(frames[name], name, code_checks(name, fmap.objects[name], frames[name], staged_ids))
        findings.append(checked.quarantine)
        counted.add(name, "quarantined", checked.rows_quarantined)
        merged_frames[name] = checked.clean
    columns, outcomes = merge_into(root, out[root].get_column("_source_id"), fmap, merged_frames)
    for name, outcome in outcomes.items():
        counted.add(name, "merged", outcome.merged_ids.len())
        counted.skip(name, outcome.not_written_ids, "not_merged")
    extra = columns.rename({PRIMARY_KEY: "_source_id"})
    return out[root].join(extra, on="_source_id", how="left", maintain_order="left")
