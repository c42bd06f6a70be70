"""``dataverse/<object>``: the writers. One asset per object the map writes, generated from the registry and the
map; each depends on its staging asset, on the writers of its parents (so the graph shows and enforces carriers and
practices -> providers -> patients -> appointments -> plans -> notes and perio -> ledger and claim events ->
eligibility), on ``dataverse/schema`` and on ``staging/owners``. An object with binary content (documents) gets its
own writer, which uploads bodies too (``assets/documents.py``).

Each writer:

* yields the map's confirmation gate first (``assets/gate.py``): under an unconfirmed or changed map it raises
  before any request;
* writes through ``load/writer.py``: upsert by ``smig_sourcesystemid``, lookups bound by alternate key, owners
  from ``staging.owners`` (teams too), ``overriddencreatedon`` on create only, state/status last (the registry's
  ``closing``), a declared ``time_order`` kept;
* keeps the load journal (``load/journal.py``): the latest row per record is what the next run compares against,
  so unchanged rows are not re-sent. The asset value is this run's slice (DuckDB ``dataverse.<object>``); failed
  rows (ids, HTTP status and Dataverse's code: never its message) go to ``load.failures`` and to metadata;
* writes the audit log (intent before each write, outcome after; before-images for updates).

In a run over modification-day partitions (job ``delta``) a writer sends only the staged rows whose
``_modified_at`` is in the window (plus rows whose last attempt failed); the journal comparison then skips unchanged
bodies. ``dataverse/deletions_report`` lists records Sensei deleted (in the window) with their Dataverse ids:
reported, never deleted in Dataverse.
"""
# No `from __future__ import annotations` here: Dagster reads the context and resource annotations at runtime.

from collections.abc import Iterator

import polars as pl
from dagster import AssetExecutionContext, AssetsDefinition, MetadataValue, Output, asset

from senseimig_dagster.assets.documents import build_document_asset
from senseimig_dagster.assets.gate import enforce_gate, gate_check_spec
from senseimig_dagster.assets.keys import DELETIONS, OWNERS, SCHEMA, staging_key, writer_key
from senseimig_dagster.assets.metadata import IDS_SHOWN
from senseimig_dagster.assets.partitions import in_run_window, run_window
from senseimig_dagster.assets.release import release_rows
from senseimig_dagster.assets.verification import checks_for
from senseimig_dagster.audit.log import AuditLog
from senseimig_dagster.load.closing import closing_state, status_source
from senseimig_dagster.load.frames import SOURCE_ID
from senseimig_dagster.load.journal import (
    RecordOutcome,
    append_outcomes,
    ensure_journal,
    known_ids,
    previous_entries,
)
from senseimig_dagster.load.writer import WriteContext, write_object
from senseimig_dagster.mapping import default_map
from senseimig_dagster.mapping.model import FieldMapFile
from senseimig_dagster.mapping.scope import writer_parents, written_objects
from senseimig_dagster.objects import PRIMARY_KEY, REGISTRY, get
from senseimig_dagster.resources import AuditStore, DataverseResource, MappingResource, StoreResource
from senseimig_dagster.staging.delta import deletions
from senseimig_dagster.store import Store


def _metadata(journal: pl.DataFrame, rows: list[RecordOutcome]) -> dict:
    counts = {o: journal.filter(pl.col("outcome") == o).height for o in ("created", "updated", "unchanged", "failed")}
    failed = [r for r in rows if r.outcome == "failed"]
    codes: dict[str, int] = {}
    for r in failed:
        key = f"{r.status or '-'} {r.code or ''}".strip()
        codes[key] = codes.get(key, 0) + 1
    per_table = {t: n for t, n in journal.group_by("table").len().sort("table").iter_rows()}
    return {"rows": journal.height, **counts, "per_table": MetadataValue.json(per_table),
            "writes_sent": counts["created"] + counts["updated"],
            "failed_codes": MetadataValue.json(codes),
            "failed_ids": MetadataValue.json([r.source_id for r in failed[:IDS_SHOWN]])}


def _closing_status(db: Store, name: str, staged: pl.DataFrame, fmap: FieldMapFile) -> pl.DataFrame | None:
    """The Sensei value a record's Dataverse state follows (``load/closing.py``): its staged column when the map
    writes it, else the newest raw value."""
    closing = get(name).closing
    if closing is None or staged.is_empty():
        return None
    column = status_source(name, fmap.objects[name])
    if column is not None:
        return staged.select(SOURCE_ID, pl.col(column).alias("status")) if column in staged.columns else None
    return db.raw(name, f"CAST({PRIMARY_KEY} AS VARCHAR) AS {SOURCE_ID}, {closing.field} AS status")


def build_writer(name: str, fmap: FieldMapFile | None = None) -> AssetsDefinition:
    fmap = fmap or default_map()
    key = writer_key(name)
    tables = fmap.objects[name].tables
    parents = writer_parents(fmap, name)

    @asset(key=key, group_name="dataverse", io_manager_key="duckdb_io_manager", kinds={"dataverse", "duckdb"},
           deps=[staging_key(name), *(writer_key(p) for p in parents), SCHEMA, OWNERS],
           check_specs=[gate_check_spec(key)],
           description=f"{get(name).description} Upserted into Dataverse `{'/'.join(tables)}` by source id after "
                       f"{', '.join(parents) or 'the schema'}; value: this run's load journal slice.")
    def _writer(context: AssetExecutionContext, store: StoreResource, mapping: MappingResource,
                dataverse: DataverseResource, audit: AuditStore) -> Iterator:
        yield enforce_gate(mapping.path, key)  # raises before any request when the map isn't confirmed
        fmap_now = mapping.load()
        om = fmap_now.objects[name]
        with store.open() as db:
            ensure_journal(db.conn)
            staged, owners = db.staged(name), db.owner_map()
            previous = previous_entries(db.conn, name)
            staged = closing_state(name, staged, om.tables, _closing_status(db, name, staged, fmap_now))
            staged, release_meta = release_rows(context.run.tags, context.run_id, db, name, staged)
        # The journal comparison below still skips unchanged bodies in the window.
        staged, window_meta = in_run_window(context, staged, {sid for (_, sid), e in previous.items() if e.failed})
        window_meta |= release_meta
        rows: list[RecordOutcome] = []
        if not staged.is_empty():
            with dataverse.session() as session, audit.connect() as audit_conn:
                log = AuditLog(audit_conn)
                ctx = WriteContext(session.loader, session.catalog, session.entity_sets_of(fmap_now), log,
                                   context.run_id, key.to_user_string(), previous,
                                   lambda table: log.source_ids(table, key.to_user_string()),
                                   digest_key=store.digest_key())
                rows = write_object(ctx, om, staged, owners=owners)
        with store.open() as db:
            journal = append_outcomes(db.conn, rows, context.run_id)
        meta = _metadata(journal, rows) | window_meta
        context.log.info(f"{key.to_user_string()}: " + ", ".join(
            f"{o} {meta[o]}" for o in ("created", "updated", "unchanged", "failed")))
        yield Output(journal, metadata=meta)

    return _writer


def build_writers(fmap: FieldMapFile | None = None) -> list[AssetsDefinition]:
    """One writer per object the map writes (``mode: match`` users and merged objects have none)."""
    fmap = fmap or default_map()
    return [build_document_asset(name, fmap) if get(name).has_content else build_writer(name, fmap)
            for name in written_objects(fmap)]


WRITTEN = written_objects(default_map())
WRITER_KEYS = [writer_key(name) for name in WRITTEN]
# The verification checks of every writer but those with binary content (which check their own bodies).
writer_checks = [checks_for(name) for name in WRITTEN if not get(name).has_content]


@asset(key=DELETIONS, group_name="dataverse", io_manager_key="duckdb_io_manager", kinds={"duckdb"},
       deps=WRITER_KEYS,
       description="Records Sensei soft-deleted (is_deleted; in the run's modification window, or ever when the run "
                   "has none) with the Dataverse table and id the load journal holds for them. Reported for a person "
                   "to decide: the migration never deletes them in Dataverse.")
def deletions_report(context: AssetExecutionContext, store: StoreResource) -> Output:
    window = run_window(context.run.tags)
    with store.open() as db:
        raw = {o.name: frame for o in REGISTRY if (frame := db.raw(o)) is not None}
        report = deletions(raw, window, known_ids(db.conn))
    per_object = {o: n for o, n in report.group_by("object").len().sort("object").iter_rows()}
    if report.height:
        context.log.warning(f"{report.height} record(s) deleted in Sensei"
                            f"{' in ' + window.describe() if window else ''}: listed in dataverse.deletions_report "
                            "(ids only); none is deleted in Dataverse")
    return Output(report, metadata={
        "deleted": report.height, "in_dataverse": int(report.get_column("in_dataverse").sum()),
        "per_object": MetadataValue.json(per_object), "window": window.describe() if window else "all time",
        "ids": MetadataValue.md(_id_table(report.head(IDS_SHOWN)))})


def _id_table(report: pl.DataFrame) -> str:
    if report.is_empty():
        return "none"
    lines = ["| object | source id | table | Dataverse id |", "|---|---|---|---|"]
    lines += [f"| {o} | {s} | {t or ''} | {d or 'not loaded'} |"
              for o, s, t, d in report.select("object", "source_id", "table", "dataverse_id").iter_rows()]
    return "\n".join(lines)


# The writers, then the deletions report (one list, so definitions and tests pick the report up with the writers).
dataverse_assets: list[AssetsDefinition] = [*build_writers(), deletions_report]
