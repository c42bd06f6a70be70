"""Delta pickup (a run over modification-day partitions sends only what changed) end to end: a small tenant (80
patients) served by the simulator is migrated in full into the HTTPS emulator (confirmed map, as in
``test_dataverse_load.py``); then the simulator serves the day-2 tenant (``generate_day2``) and one run over the
last two modification-day partitions goes raw -> staging -> writers -> deletions report. Every write is recorded on
the wire by a WSGI wrapper and compared with ``day2_changes.jsonl``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import duckdb
import orjson
import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance, materialize
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from senseimig_dagster.assets.dataverse_schema import dataverse_schema
from senseimig_dagster.assets.keys import DELETIONS, writer_key
from senseimig_dagster.assets.owners import staging_owners
from senseimig_dagster.assets.partitions import modification_days, range_tags, run_window
from senseimig_dagster.assets.raw import raw_assets
from senseimig_dagster.assets.staging import staging_assets
from senseimig_dagster.assets.writers import WRITER_KEYS, dataverse_assets
from senseimig_dagster.dataverse.metadata import DataverseMetadata
from senseimig_dagster.load.journal import JOURNAL
from senseimig_dagster.load.read_back import read_back
from senseimig_dagster.mapping import default_map_path, load_valid
from senseimig_dagster.objects import get
from senseimig_dagster.sandbox.generator import generate
from senseimig_dagster.sandbox.generator.day2 import WINDOW, generate_day2, read_changes
from senseimig_dagster.sandbox.generator.manifest import read_manifest
from senseimig_dagster.sandbox.sensei_sim import SenseiSimulator, serve
from senseimig_dagster.staging.delta import MODIFIED, Window, deletions, stamp_modified, window_rows
from senseimig_dagster.store import latest_sql
from senseimig_dagster_tests.support.constants import SEED_TEAM
from senseimig_dagster_tests.support.environments import sandbox
from senseimig_dagster_tests.support.maps import confirmed_map
from senseimig_dagster_tests.support.wire import written

# The generic writers; documents (bodies, SharePoint) in a window: test_end_to_end.py, with Graph served.
GENERIC_KEYS = [k for k in WRITER_KEYS if k != writer_key("document")]
FMAP = load_valid(default_map_path())


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    work = tmp_path_factory.mktemp("delta")
    generate(work / "day1", patients=80, seed=11)
    generate_day2(work / "day1", work / "day2", seed=3)  # changes stamped in the 20 hours before now
    mapping = confirmed_map(work / "mapping.yaml")
    database = str(work / "db.duckdb")
    # The seed's Front Desk team is the fallback owner; every write is kept on the wire.
    with sandbox(work, key_delay=0.05, fallback_owner=SEED_TEAM, keep=True) as served, \
            DagsterInstance.ephemeral() as instance:
        wire = served.wire
        resources = served.resources(database, mapping=mapping, audit=work / "audit.duckdb")  # + a day's Sensei
        everything = [*raw_assets, dataverse_schema, staging_assets, staging_owners, *dataverse_assets]
        with serve(SenseiSimulator(work / "day1", rate_limit=None)) as sensei_url:  # day 1: the full migration
            day1 = served.resources(database, mapping=mapping, audit=work / "audit.duckdb", sensei_url=sensei_url)
            tags = range_tags()
            assert materialize(raw_assets, resources=day1, instance=instance, tags=tags).success
            full = materialize(everything, resources=day1, instance=instance,
                               selection=[dataverse_schema.key, *staging_assets.keys, staging_owners.key,
                                          *GENERIC_KEYS])
            assert full.success
        keys = modification_days.get_partition_keys()
        window_tags = range_tags(keys[-2], keys[-1])
        with serve(SenseiSimulator(work / "day2", rate_limit=None)) as sensei_url:  # day 2: the last 48 hours
            before = len(wire.requests)
            day2 = served.resources(database, mapping=mapping, audit=work / "audit.duckdb", sensei_url=sensei_url)
            delta = materialize(everything, resources=day2, instance=instance, tags=window_tags, raise_on_error=False,
                                selection=[*(a.key for a in raw_assets), *staging_assets.keys, *GENERIC_KEYS,
                                           DELETIONS])
            requests = wire.requests[before:]
        yield {"full": full, "delta": delta, "requests": requests, "resources": resources, "database": database,
               "changes": read_changes(work / "day2"), "window": run_window(window_tags)}


def _sql(env: dict, query: str, params=None) -> pl.DataFrame:
    with duckdb.connect(env["database"], read_only=True) as conn:
        return conn.execute(query, params or []).pl()


def _entity_set(env: dict, name: str) -> str:
    client = env["resources"]["dataverse"].client()
    try:
        table = FMAP.objects[name].tables[0]
        return DataverseMetadata(client).entity_sets({table})[table]
    finally:
        client.close()


@pytest.mark.slow
def test_the_window_run_succeeds_in_one_run_over_two_days(env: dict) -> None:
    assert env["delta"].success, [e.message for e in env["delta"].all_events if e.event_type_value == "STEP_FAILURE"]
    window = env["window"]
    assert window is not None and window.before is None and window.since is not None
    assert all(window.since.isoformat() <= c.updated_at.replace("Z", "+00:00") for c in env["changes"])


@pytest.mark.slow
def test_exactly_the_day2_records_are_written_on_the_wire(env: dict) -> None:
    sent = written(env["requests"])
    expected = {(_entity_set(env, c.object), c.id) for c in env["changes"] if c.change != "deleted"}
    assert expected and set(sent) == expected
    per_table = pl.DataFrame(sent, schema=["set", "id"], orient="row").group_by("set").agg(pl.col("id").n_unique())
    want = pl.DataFrame(sorted(expected), schema=["set", "id"], orient="row").group_by("set").len("id")
    assert dict(per_table.iter_rows()) == dict(want.iter_rows())


@pytest.mark.slow
def test_the_journal_shows_creates_and_updates_for_the_window_only(env: dict) -> None:
    run = _sql(env, f"SELECT object, source_id, outcome FROM {JOURNAL} WHERE run_id = ?", [env["delta"].run_id])
    got = {(o, s, out) for o, s, out in run.iter_rows()}
    want = {(c.object, c.id, c.change) for c in env["changes"] if c.change != "deleted"}
    assert got == want  # nothing outside the window even compared: unchanged rows are neither sent nor journaled
    patient = env["delta"].asset_materializations_for_node("dataverse__patient")[0].metadata
    staged = _sql(env, "SELECT count(*) FROM staging.patient").item()
    assert patient["rows_in_window"].value == 8 and patient["failed_rows_retried"].value == 0
    assert patient["rows_outside_window_not_sent"].value == staged - 8 > 50


@pytest.mark.slow
def test_staging_reads_the_latest_version_and_stamps_modified_at(env: dict) -> None:
    edited = next(c.id for c in env["changes"] if c.object == "patient" and c.change == "updated")
    raw = _sql(env, "SELECT count(*) FROM raw.patient WHERE id = ?", [edited]).item()
    staged = _sql(env, f'SELECT count(*) AS n, max("{MODIFIED}") AS m FROM staging.patient WHERE _source_id = ?',
                  [edited])
    assert raw == 2 and staged.get_column("n").item() == 1  # both versions in raw, one staged row
    assert staged.get_column("m").item() >= env["window"].since


@pytest.mark.slow
def test_no_duplicates_in_dataverse_and_new_children_bound_to_new_parents(env: dict) -> None:
    client = env["resources"]["dataverse"].client()
    try:
        for name in ("patient", "appointment", "ledger_transaction"):
            ids = [r["smig_sourcesystemid"] for r in client.query(_entity_set(env, name), ["smig_sourcesystemid"])
                   if r.get("smig_sourcesystemid")]
            staged = _sql(env, f'SELECT count(*) FROM staging."{name}"').item()
            assert len(ids) == len(set(ids)) >= staged, name
        new_patient = next(c.id for c in env["changes"] if c.detail == "new_patient")
        contact = read_back(client, "contacts", "contact", [new_patient], ["contactid"])[new_patient]["contactid"]
        appts = _sql(env, 'SELECT _source_id FROM staging.appointment WHERE "smig_PatientId" = ?', [new_patient])
        got = read_back(client, _entity_set(env, "appointment"), "smig_appointment",
                        appts.get_column("_source_id").to_list(), ["_smig_patientid_value"])
        assert len(got) == 2 and {r["_smig_patientid_value"] for r in got.values()} == {contact}
    finally:
        client.close()


@pytest.mark.slow
def test_deletions_are_reported_and_still_in_dataverse(env: dict) -> None:
    report = _sql(env, "SELECT * FROM dataverse.deletions_report")
    want = {(c.object, c.id) for c in env["changes"] if c.change == "deleted"}
    assert set(report.select("object", "source_id").iter_rows()) == want
    assert report.get_column("in_dataverse").all()
    meta = env["delta"].asset_materializations_for_node("dataverse__deletions_report")[0].metadata
    assert meta["deleted"].value == len(want) == 3
    client = env["resources"]["dataverse"].client()
    try:
        for row in report.iter_rows(named=True):
            table = FMAP.objects[row["object"]].tables
            entity = _entity_set(env, row["object"]) if len(table) == 1 else None
            if entity is None:  # a routed object (communication): its table is in the load journal
                entity = DataverseMetadata(client).entity_sets({row["table"]})[row["table"]]
            found = read_back(client, entity, row["table"], [row["source_id"]], [])
            assert row["source_id"] in found, row  # reported, never deleted
    finally:
        client.close()


def test_the_delta_job_selects_raw_staging_writers_and_the_report() -> None:
    from senseimig_dagster.definitions import defs

    job = defs.get_job_def("delta")
    assert job.partitions_def == modification_days
    keys = job.asset_layer.executable_asset_keys if hasattr(job.asset_layer, "executable_asset_keys") else set()
    assert not keys or {DELETIONS, AssetKey(["raw", "patient"]), AssetKey(["dataverse", "patient"])} <= keys


# -- fast: the pieces -----------------------------------------------------------------------------------------------
UTC = dt.UTC
T0 = dt.datetime(2026, 11, 20, tzinfo=UTC)


def test_window_rows_sends_the_window_and_last_runs_failures_only() -> None:
    staged = pl.DataFrame({"_source_id": ["old", "failed", "in", "edge", "future"],
                           MODIFIED: [T0 - dt.timedelta(days=9), T0 - dt.timedelta(days=5), T0 + dt.timedelta(hours=1),
                                      T0, T0 + dt.timedelta(days=2)]})
    picked = window_rows(staged, Window(T0, T0 + dt.timedelta(days=2)), {"failed", "in"})
    assert picked.frame.get_column("_source_id").to_list() == ["failed", "in", "edge"]  # [since, before)
    assert (picked.in_window, picked.retried, picked.outside) == (2, 1, 2)
    with pytest.raises(ValueError, match="_modified_at"):
        window_rows(staged.drop(MODIFIED), Window(T0, None), set())


def test_a_patient_is_modified_when_a_duplicate_policy_or_plan_of_it_is() -> None:
    day = dt.timedelta(days=1)
    raw = {"patient": pl.DataFrame({"id": ["p1", "p2", "p3"], "updated_at": [T0 - 9 * day, T0 - 8 * day, T0 - 7 * day]}),
           "patient_policy": pl.DataFrame({"id": ["a", "b"], "patient_id": ["p3", "p2"], "insurance_plan_id": ["x", "y"],
                                           "updated_at": [T0 - 6 * day, T0 - 9 * day]}),
           "insurance_plan": pl.DataFrame({"id": ["x", "y"], "updated_at": [T0 - 9 * day, T0 + day]})}
    staged = {"patient": pl.DataFrame({"_source_id": ["p1", "p3"], "firstname": ["A", "B"]})}
    merge_map = pl.DataFrame({"duplicate_id": ["p2"], "survivor_id": ["p1"]})
    got = stamp_modified(staged, raw, FMAP, merge_map)["patient"]
    # p1: its duplicate p2's policy holds plan y, renamed yesterday+1; p3: its own policy a, 6 days ago
    assert dict(got.select("_source_id", MODIFIED).iter_rows()) == {"p1": T0 + day, "p3": T0 - 6 * day}


def test_deletions_in_the_window_come_with_their_dataverse_ids() -> None:
    raw = {"appointment": pl.DataFrame({"id": ["a1", "a2", "a3"], "is_deleted": [True, True, False],
                                        "updated_at": [T0 + dt.timedelta(hours=3), T0 - dt.timedelta(days=3), T0]}),
           "communication": pl.DataFrame({"id": ["c1"], "is_deleted": [True], "updated_at": [T0]})}
    journal = pl.DataFrame({"object": ["appointment"], "table": ["smig_appointment"], "source_id": ["a1"],
                            "dataverse_id": ["11111111-1111-4111-8111-111111111111"]})
    got = deletions(raw, Window(T0, None), journal)
    assert got.select("object", "source_id", "in_dataverse").rows() == [("appointment", "a1", True),
                                                                        ("communication", "c1", False)]
    assert deletions(raw, None, journal).height == 3  # no window: every deletion, ever


def test_latest_sql_keeps_the_newest_version_of_each_record() -> None:
    with duckdb.connect() as conn:
        conn.execute("CREATE TABLE t (id VARCHAR, updated_at TIMESTAMPTZ, v INT, _extracted_at TIMESTAMPTZ, "
                     "_ordinal BIGINT)")
        conn.execute("INSERT INTO t VALUES ('a', '2026-10-01 00:00:00+00', 1, '2026-11-01 00:00:00+00', 0), "
                     "('a', '2026-11-25 00:00:00+00', 2, '2026-11-25 00:00:00+00', 0), "
                     "('b', '2026-10-02 00:00:00+00', 3, '2026-11-01 00:00:00+00', 1)")
        assert sorted(conn.execute(latest_sql("t")).fetchall(), key=str)[0][2] == 2
        assert conn.execute(f"SELECT count(*) FROM ({latest_sql('t')})").fetchone() == (2,)


def test_a_runs_partition_range_is_its_source_window() -> None:
    keys = modification_days.get_partition_keys()
    last_two = run_window({ASSET_PARTITION_RANGE_START_TAG: keys[-2], ASSET_PARTITION_RANGE_END_TAG: keys[-1]})
    assert last_two == Window(dt.datetime.fromisoformat(keys[-2]).replace(tzinfo=UTC), None)  # newest: open-ended
    one = run_window({"dagster/partition": keys[-3]})
    start = dt.datetime.fromisoformat(keys[-3]).replace(tzinfo=UTC)
    assert one == Window(start, start + dt.timedelta(days=1))
    assert run_window({}) is None
    assert run_window({ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]}) is None


def test_day2_changes_are_in_the_window_and_match_the_files(tenant: Path, tmp_path: Path) -> None:
    at = dt.datetime(2026, 11, 25, 18, 0, tzinfo=UTC)
    changes = generate_day2(tenant, tmp_path / "a", at=at, seed=5)
    generate_day2(tenant, tmp_path / "b", at=at, seed=5)
    assert {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()} == \
        {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}  # deterministic
    kinds = {(c.object, c.change) for c in changes}
    assert kinds == {("patient", "created"), ("patient", "updated"), ("appointment", "created"),
                     ("appointment", "updated"), ("appointment", "deleted"), ("ledger_transaction", "created"),
                     ("ledger_transaction", "deleted"), ("communication", "deleted")}
    assert any(c.detail == "correction" for c in changes) and len({(c.object, c.id) for c in changes}) == len(changes)
    manifest = read_manifest(tmp_path / "a")
    for c in changes:
        stamp = dt.datetime.fromisoformat(c.updated_at.replace("Z", "+00:00"))
        assert at - WINDOW <= stamp < at
        path = tmp_path / "a" / f"{get(c.object).endpoint}.jsonl"
        rows = {r["id"]: r for r in map(orjson.loads, path.read_bytes().splitlines())}
        assert rows[c.id]["updated_at"] == c.updated_at and rows[c.id]["is_deleted"] == (c.change == "deleted")
        assert manifest.counts[c.object] == len(rows)
    assert (tmp_path / "a" / "claims.jsonl").read_bytes() == (tenant / "claims.jsonl").read_bytes()
    with pytest.raises(ValueError, match="after the tenant"):
        generate_day2(tenant, tmp_path / "c", at=read_manifest(tenant).as_of)
