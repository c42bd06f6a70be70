"""``dataverse/<object>``: the writers (issue 6 items 1 and 5). One asset per object staging writes, generated from
the registry and the map; each depends on its staging asset, on the writers of its parents (so the graph shows and
enforces carriers and practices -> providers -> patients -> appointments -> plans -> notes and perio -> ledger and
claim events -> eligibility), on ``dataverse/schema`` and on ``staging/owners``.

Each writer:

* yields the map's confirmation gate first (``mapping.gate.enforce_gate``): under an unconfirmed or changed map it
  raises before any request;
* writes through ``dataverse.writer.write_object``: upsert by ``smig_sourcesystemid``, lookups bound by alternate
  key, owners from ``staging.owners`` (teams too), ``overriddencreatedon`` on create only, state/status last;
* keeps the **load ledger** ``load.ledger`` (append-only: object, table, source id, Dataverse id, body hash,
  column digests, outcome, run id, time); the latest row per record is what the next run compares against, so
  unchanged rows are not re-sent. The asset value is this run's slice (DuckDB ``dataverse.<object>``);
* writes failed rows (ids, HTTP status and Dataverse's code: never its message, which may quote a value) to
  ``load.failures`` and to metadata;
* writes the audit log (intent before each write, outcome after; before-images for updates).

Delta windows (item 6, ``staging/delta.py``): in a run over modification-day partitions (job ``delta``) a writer
sends only the staged rows whose ``_modified_at`` is in the window (plus rows whose last attempt failed); the
ledger comparison then skips unchanged bodies. ``dataverse/deletions_report`` lists records Sensei deleted (in the
window) with their Dataverse ids: reported, never deleted in Dataverse.
"""
# No `from __future__ import annotations` here: Dagster reads the context and resource annotations at runtime.

import datetime as dt
import json
from collections.abc import Iterator

import duckdb
import polars as pl
from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, MetadataValue, Output, asset
from dagster_duckdb import DuckDBResource

from senseimig_dagster.assets.owners import OWNERS_KEY
from senseimig_dagster.assets.partitions import run_window
from senseimig_dagster.assets.staging import DEFAULT_MAP, _map
from senseimig_dagster.audit.log import AuditLog, insert_columns
from senseimig_dagster.audit.store import AuditStore
from senseimig_dagster.dataverse.load import OwnerMap, entity_sets, tables_of
from senseimig_dagster.dataverse.loader import BulkLoader
from senseimig_dagster.dataverse.writer import (
    LedgerEntry,
    LedgerRow,
    WriteContext,
    closed_states,
    write_object,
)
from senseimig_dagster.mapping.gate import enforce_gate, gate_check_spec
from senseimig_dagster.mapping.model import FieldMapFile
from senseimig_dagster.mapping.targets import TargetCatalog
from senseimig_dagster.objects import REGISTRY, get
from senseimig_dagster.resources import DataverseResource, MappingResource
from senseimig_dagster.staging.delta import deletions, latest_sql, window_rows
from senseimig_dagster.staging.pipeline import written_objects

LEDGER, FAILURES = "load.ledger", "load.failures"
SCHEMA_KEY = AssetKey(["dataverse", "schema"])
FAILED_IDS_SHOWN = 50
_DDL = f"""
CREATE SCHEMA IF NOT EXISTS load;
CREATE TABLE IF NOT EXISTS {LEDGER} (object VARCHAR NOT NULL, "table" VARCHAR NOT NULL, source_id VARCHAR NOT NULL,
    dataverse_id VARCHAR, body_hash VARCHAR, digests JSON, outcome VARCHAR NOT NULL, run_id VARCHAR NOT NULL,
    "at" TIMESTAMP NOT NULL);
CREATE TABLE IF NOT EXISTS {FAILURES} (object VARCHAR NOT NULL, "table" VARCHAR NOT NULL, source_id VARCHAR NOT NULL,
    dataverse_id VARCHAR, status INTEGER, code VARCHAR, run_id VARCHAR NOT NULL, "at" TIMESTAMP NOT NULL);
"""
LEDGER_SCHEMA = {"object": pl.String, "table": pl.String, "source_id": pl.String, "dataverse_id": pl.String,
                 "body_hash": pl.String, "outcome": pl.String, "run_id": pl.String, "at": pl.Datetime("us")}


def writer_key(name: str) -> AssetKey:
    return AssetKey(["dataverse", name])


def writer_parents(name: str, fmap: FieldMapFile = DEFAULT_MAP) -> list[str]:
    """Written objects that must load before ``name``: its registry parents, a merged parent standing for the
    object it is merged into (a claim's policy lives on the patient), matched users left to ``staging/owners``."""
    written = set(written_objects(fmap))
    out: list[str] = []
    for parent in get(name).parents:
        while parent not in written and parent in fmap.objects and fmap.objects[parent].merge is not None:
            parent = fmap.objects[parent].merge.into  # type: ignore[union-attr]
        if parent in written and parent != name and parent not in out:
            out.append(parent)
    return out


# -- the ledger ----------------------------------------------------------------------------------------------------
def ensure_ledger(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(_DDL)


def previous_ledger(conn: duckdb.DuckDBPyConnection, name: str) -> dict[tuple[str, str], LedgerEntry]:
    """The latest known state of each of the object's records: last id, last successful body, last outcome."""
    rows = conn.execute(f"""
        SELECT "table", source_id, arg_max(outcome, "at"),
               arg_max(dataverse_id, "at") FILTER (WHERE dataverse_id IS NOT NULL),
               arg_max(body_hash, "at") FILTER (WHERE outcome <> 'failed'),
               arg_max(CAST(digests AS VARCHAR), "at") FILTER (WHERE outcome <> 'failed')
        FROM {LEDGER} WHERE object = ? GROUP BY ALL""", [name]).fetchall()
    # A record rollback undid (``rolled_back``, assets/audit.py) is as good as never loaded: sent again in full.
    return {(table, sid): LedgerEntry(dvid, hash_, json.loads(digests) if digests else {}, last == "failed")
            for table, sid, last, dvid, hash_, digests in rows if last != "rolled_back"}


def append_ledger(conn: duckdb.DuckDBPyConnection, rows: list[LedgerRow], run_id: str) -> pl.DataFrame:
    """Append this run's rows (and failures); returns the slice as the asset value (no digests)."""
    at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    failed = [r for r in rows if r.outcome == "failed"]
    common = {"object": [r.object for r in rows], "table": [r.table for r in rows],
              "source_id": [r.source_id for r in rows], "dataverse_id": [r.dataverse_id for r in rows]}
    slice_ = pl.DataFrame({**common, "body_hash": [r.body_hash for r in rows], "outcome": [r.outcome for r in rows],
                           "run_id": [run_id] * len(rows), "at": [at] * len(rows)}, schema=LEDGER_SCHEMA)
    conn.execute("BEGIN")
    try:  # one bulk INSERT per table: a per-row executemany dominated the writers' profile
        if rows:
            insert_columns(conn, LEDGER, {
                **{name: ("VARCHAR", values) for name, values in common.items()},
                "body_hash": ("VARCHAR", slice_["body_hash"].to_list()),
                "digests": ("VARCHAR", [json.dumps(r.digests) for r in rows]),
                "outcome": ("VARCHAR", slice_["outcome"].to_list()), "run_id": ("VARCHAR", [run_id] * len(rows)),
                "at": ("TIMESTAMP", [at] * len(rows))})
        if failed:
            insert_columns(conn, FAILURES, {
                "object": ("VARCHAR", [r.object for r in failed]), "table": ("VARCHAR", [r.table for r in failed]),
                "source_id": ("VARCHAR", [r.source_id for r in failed]),
                "dataverse_id": ("VARCHAR", [r.dataverse_id for r in failed]),
                "status": ("INTEGER", [r.status for r in failed]), "code": ("VARCHAR", [r.code for r in failed]),
                "run_id": ("VARCHAR", [run_id] * len(failed)), "at": ("TIMESTAMP", [at] * len(failed))})
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return slice_


def _audited(audit: AuditLog, asset_name: str):
    def audited(table: str) -> set[str]:
        return {r[0] for r in audit.conn.execute(
            'SELECT DISTINCT source_id FROM audit.writes WHERE "table" = ? AND asset = ? AND source_id IS NOT NULL',
            [table, asset_name]).fetchall()}
    return audited


def _table_exists(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND "
                             "table_name = ?", [schema, table]).fetchone()[0])


def _read_inputs(conn: duckdb.DuckDBPyConnection, name: str) -> tuple[pl.DataFrame, OwnerMap | None, pl.DataFrame | None]:
    staged = conn.sql(f'SELECT * FROM staging."{name}"').pl() if _table_exists(conn, "staging", name) \
        else pl.DataFrame()
    owners = None
    if _table_exists(conn, "staging", "owners") and _table_exists(conn, "raw", "user"):
        owners = OwnerMap.from_owners_table(conn.sql("SELECT * FROM staging.owners").pl(), conn.sql(
            f'SELECT CAST(id AS VARCHAR) AS id, email FROM ({latest_sql("raw.user")})').pl())
    status = None
    if name == "communication" and _table_exists(conn, "raw", "communication"):
        status = conn.sql("SELECT CAST(id AS VARCHAR) AS _source_id, status "
                          f"FROM ({latest_sql('raw.communication')})").pl()
    return staged, owners, status


# -- metadata ------------------------------------------------------------------------------------------------------
def _metadata(ledger: pl.DataFrame, rows: list[LedgerRow]) -> dict:
    counts = {o: ledger.filter(pl.col("outcome") == o).height for o in ("created", "updated", "unchanged", "failed")}
    failed = [r for r in rows if r.outcome == "failed"]
    codes: dict[str, int] = {}
    for r in failed:
        key = f"{r.status or '-'} {r.code or ''}".strip()
        codes[key] = codes.get(key, 0) + 1
    per_table = {t: n for t, n in ledger.group_by("table").len().sort("table").iter_rows()}
    return {"rows": ledger.height, **counts, "per_table": MetadataValue.json(per_table),
            "writes_sent": counts["created"] + counts["updated"],
            "failed_codes": MetadataValue.json(codes),
            "failed_ids": MetadataValue.json([r.source_id for r in failed[:FAILED_IDS_SHOWN]])}


# -- verification hook ---------------------------------------------------------------------------------------------
def verify_checks(name: str) -> list:
    """HOOK (issue 6 item 3): the verification checks of ``dataverse/<name>`` from ``senseimig_dagster.verify``
    (``checks_for(object_name)``), once that package exists; none until then."""
    try:
        from senseimig_dagster import verify  # type: ignore[attr-defined]
    except ImportError:
        return []
    checks_for = getattr(verify, "checks_for", None)
    return list(checks_for(name)) if checks_for else []


# -- the assets ----------------------------------------------------------------------------------------------------
def build_writer(name: str, fmap: FieldMapFile = DEFAULT_MAP) -> AssetsDefinition:
    key = writer_key(name)
    tables = fmap.objects[name].tables
    parents = writer_parents(name, fmap)

    @asset(key=key, group_name="dataverse", io_manager_key="duckdb_io_manager", kinds={"dataverse", "duckdb"},
           deps=[AssetKey(["staging", name]), *(writer_key(p) for p in parents), SCHEMA_KEY, OWNERS_KEY],
           check_specs=[gate_check_spec(key)], tags={"layer": "dataverse"},
           description=f"{get(name).description} Upserted into Dataverse `{'/'.join(tables)}` by source id after "
                       f"{', '.join(parents) or 'the schema'}; value: this run's load ledger slice.")
    def _writer(context: AssetExecutionContext, store: DuckDBResource, mapping: MappingResource,
                dataverse: DataverseResource, audit: AuditStore) -> Iterator:
        yield enforce_gate(mapping.path, key)  # raises before any request when the map isn't confirmed
        fmap_now = _map(mapping)
        with store.get_connection() as conn:
            ensure_ledger(conn)
            staged, owners, status = _read_inputs(conn, name)
            previous = previous_ledger(conn, name)
        staged = closed_states(name, staged, status)
        # The ledger comparison below still skips unchanged bodies in the window.
        staged, window_meta = in_run_window(context, staged, {sid for (_, sid), e in previous.items() if e.failed})
        rows: list[LedgerRow] = []
        if not staged.is_empty():
            catalog = TargetCatalog(dataverse.plan())
            clients = dataverse.clients()
            try:
                sets = entity_sets(dataverse.metadata(clients[0]), tables_of(fmap_now, written_objects(fmap_now)))
                # A claim's status trail is still created in time order: write_object sends it in rounds, the n-th
                # event of every claim in round n (load.TIME_ORDERED_UNDER), each round with every sender.
                loader = BulkLoader(clients)
                with audit.connect() as audit_conn:
                    log = AuditLog(audit_conn)
                    ctx = WriteContext(loader, catalog, sets, log, context.run_id, key.to_user_string(),
                                       previous, _audited(log, key.to_user_string()))
                    rows = write_object(ctx, name, staged, fmap_now.objects[name].tables, owners=owners)
            finally:
                for client in clients:
                    client.close()
        with store.get_connection() as conn:
            ledger = append_ledger(conn, rows, context.run_id)
        meta = _metadata(ledger, rows) | window_meta
        context.log.info(f"{key.to_user_string()}: " + ", ".join(
            f"{o} {meta[o]}" for o in ("created", "updated", "unchanged", "failed")))
        yield Output(ledger, metadata=meta)

    return _writer


def build_dataverse_assets(fmap: FieldMapFile = DEFAULT_MAP) -> list[AssetsDefinition]:
    """One writer per object the map writes (``mode: match`` users and merged objects have none); documents get
    their own asset, which uploads bodies too (assets/documents.py)."""
    from senseimig_dagster.assets.documents import build_document_asset

    return [build_document_asset() if name == "document" else build_writer(name, fmap)
            for name in written_objects(fmap)]


WRITER_KEYS = [writer_key(name) for name in written_objects(DEFAULT_MAP)]
dataverse_checks = [check for name in written_objects(DEFAULT_MAP) if name != "document"  # checks its own bodies
                    for check in verify_checks(name)]


# -- delta pickup (issue 6 item 6) -------------------------------------------------------------------------------
def in_run_window(context: AssetExecutionContext, staged: pl.DataFrame,
                  failed_ids: set[str]) -> tuple[pl.DataFrame, dict]:
    """The staged rows a writer sends: all of them, or in a run over modification-day partitions only those
    modified in that window and those whose last attempt failed (``failed_ids``); with the window's metadata."""
    window = run_window(context.run.tags)
    if window is None:
        return staged, {}
    picked = window_rows(staged, window, failed_ids)
    return picked.frame, {"window": window.describe(), "rows_in_window": picked.in_window,
                          "failed_rows_retried": picked.retried, "rows_outside_window_not_sent": picked.outside}


# -- deletions (issue 6 item 6) -------------------------------------------------------------------------------------
DELETIONS_KEY = AssetKey(["dataverse", "deletions_report"])


@asset(key=DELETIONS_KEY, group_name="dataverse", io_manager_key="duckdb_io_manager", kinds={"duckdb"},
       deps=WRITER_KEYS, tags={"layer": "dataverse"},
       description="Records Sensei soft-deleted (is_deleted; in the run's modification window, or ever when the run "
                   "has none) with the Dataverse table and id the load ledger holds for them. Reported for a person "
                   "to decide: the migration never deletes them in Dataverse.")
def deletions_report(context: AssetExecutionContext, store: DuckDBResource) -> Output:
    window = run_window(context.run.tags)
    with store.get_connection() as conn:
        ensure_ledger(conn)
        raw = {o.name: conn.sql(latest_sql(f'raw."{o.name}"')).pl() for o in REGISTRY
               if _table_exists(conn, "raw", o.name)}
        ledger = conn.sql(f"""SELECT object, "table", source_id,
            arg_max(dataverse_id, "at") FILTER (WHERE dataverse_id IS NOT NULL) AS dataverse_id
            FROM {LEDGER} GROUP BY ALL""").pl()
    report = deletions(raw, window, ledger)
    per_object = {o: n for o, n in report.group_by("object").len().sort("object").iter_rows()}
    if report.height:
        context.log.warning(f"{report.height} record(s) deleted in Sensei"
                            f"{' in ' + window.describe() if window else ''}: listed in dataverse.deletions_report "
                            "(ids only); none is deleted in Dataverse")
    return Output(report, metadata={
        "deleted": report.height, "in_dataverse": int(report.get_column("in_dataverse").sum()),
        "per_object": MetadataValue.json(per_object), "window": window.describe() if window else "all time",
        "ids": MetadataValue.md(_id_table(report.head(FAILED_IDS_SHOWN)))})


def _id_table(report: pl.DataFrame) -> str:
    if report.is_empty():
        return "none"
    lines = ["| object | source id | table | Dataverse id |", "|---|---|---|---|"]
    lines += [f"| {o} | {s} | {t or ''} | {d or 'not loaded'} |"
              for o, s, t, d in report.select("object", "source_id", "table", "dataverse_id").iter_rows()]
    return "\n".join(lines)


# The writers, then the deletions report (one list, so definitions and tests pick the report up with the writers).
dataverse_assets: list[AssetsDefinition] = [*build_dataverse_assets(), deletions_report]
