"""Raw assets over real HTTP: a single-run backfill over a partition range, a later delta window, re-runs, and
failures that neither duplicate nor lose rows."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import duckdb
import orjson
import polars as pl
from dagster import DagsterInstance, materialize
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from senseimig_dagster import objects
from senseimig_dagster.assets.inventory import inventory
from senseimig_dagster.assets.keys import raw_key
from senseimig_dagster.assets.partitions import HISTORY_START, modification_days
from senseimig_dagster.assets.raw import raw_assets
from senseimig_dagster.io_managers import raw_table_ddl
from senseimig_dagster.objects import REGISTRY
from senseimig_dagster.resources import SenseiSource
from senseimig_dagster.sandbox.generator import read_manifest
from senseimig_dagster.sandbox.sensei_sim import Fault, Faults, RateLimit, SenseiSimulator, serve
from senseimig_dagster_tests.support.resources import migration_resources

LAST_DAY = modification_days.get_last_partition_key()


def resources(database: Path, base_url: str, **source: object) -> dict:
    return {**migration_resources(database), "sensei": SenseiSource(base_url=base_url, **source)}


def extract(database: Path, base_url: str, first: str, last: str, instance: DagsterInstance,
            only: str | None = None, **source: object):
    """One single-run backfill of ``first``..``last``: every raw asset, or ``only`` that object's."""
    return materialize(raw_assets, resources=resources(database, base_url, **source), instance=instance,
                       raise_on_error=False, selection=[raw_key(only)] if only else None,
                       tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last})


def source_rows(tenant: Path, endpoint: str, before: dt.datetime | None = None) -> list[dict]:
    rows = [orjson.loads(line) for line in (tenant / f"{endpoint}.jsonl").read_bytes().splitlines()]
    if before is None:
        return rows
    return [r for r in rows if dt.datetime.fromisoformat(r["updated_at"]) < before]


def landed(database: Path, name: str) -> list[tuple]:
    with duckdb.connect(str(database), read_only=True) as conn:
        return conn.execute(f"SELECT id, updated_at FROM raw.{name} ORDER BY id, updated_at").fetchall()


def test_backfill_range_then_delta_window_lands_every_row_once(tenant, sensei_url, instance, tmp_path):
    database = tmp_path / "db.duckdb"
    split = "2026-10-20"
    first = extract(database, sensei_url, HISTORY_START.isoformat(), "2026-10-19", instance)
    assert first.success
    # one run for the whole range: the single-run backfill policy
    assert len(instance.get_run_records()) == 1
    cut = dt.datetime.fromisoformat(split).replace(tzinfo=dt.UTC)
    for obj in REGISTRY:
        assert len(landed(database, obj.name)) == len(source_rows(tenant, obj.endpoint, cut)), obj.name

    delta = extract(database, sensei_url, split, LAST_DAY, instance)
    assert delta.success
    manifest = read_manifest(tenant)
    for obj in REGISTRY:
        rows = landed(database, obj.name)
        assert len(rows) == manifest.counts[obj.name], obj.name
        assert len({r[0] for r in rows}) == len(rows), f"{obj.name}: an id landed twice"

    # Re-running a window replaces it: no duplicates, nothing lost.
    again = extract(database, sensei_url, split, LAST_DAY, instance)
    assert again.success
    assert sum(len(landed(database, o.name)) for o in REGISTRY) == manifest.total_rows


def test_raw_rows_keep_typed_source_values_and_lineage(tenant, sensei_url, instance, tmp_path):
    database = tmp_path / "db.duckdb"
    assert extract(database, sensei_url, HISTORY_START.isoformat(), LAST_DAY, instance).success
    source = {r["id"]: r for r in source_rows(tenant, "patients")}
    with duckdb.connect(str(database), read_only=True) as conn:
        frame = conn.sql("SELECT * FROM raw.patient").pl()
    assert set(frame["_source"]) == {"api"}
    assert frame["_extracted_at"].null_count() == 0
    sample = frame.row(0, named=True)
    original = source[sample["id"]]
    assert sample["date_of_birth"].isoformat() == original["date_of_birth"]
    assert sample["first_name"] == original["first_name"]
    assert sample["_extra"] is None


def test_500_mid_paging_and_429_recover_without_duplicates(tenant, instance, tmp_path):
    faults = Faults(rules=[Fault(object="appointment", page=2, kind="http_500", times=2)])
    database = tmp_path / "db.duckdb"
    limit = RateLimit(requests_per_second=40, burst=5)  # ~150 requests at 50 rows a page: 429s are certain
    with serve(SenseiSimulator(tenant, faults=faults, rate_limit=limit)) as url:
        result = extract(database, url, HISTORY_START.isoformat(), LAST_DAY, instance, page_size=50)
    assert result.success
    assert faults.fired(faults.rules[0]) == 2
    assert sorted(r[0] for r in landed(database, "appointment")) == sorted(
        r["id"] for r in source_rows(tenant, "appointments"))


def test_expired_key_fails_naming_the_object_and_rerun_lands_everything_once(tenant, instance, tmp_path):
    database = tmp_path / "db.duckdb"
    sim = SenseiSimulator(tenant, api_keys=("good-key",), rate_limit=None)
    with serve(sim) as url:
        failed = extract(database, url, HISTORY_START.isoformat(), LAST_DAY, instance, api_key="revoked-key")
        assert not failed.success
        failure = next(e for e in failed.all_events if e.is_step_failure)
        message = str(failure.step_failure_data.error)
        assert "revoked-key" not in message
        assert any(o.name in message for o in REGISTRY)
        rerun = extract(database, url, HISTORY_START.isoformat(), LAST_DAY, instance, api_key="good-key")
    assert rerun.success
    assert sum(len(landed(database, o.name)) for o in REGISTRY) == read_manifest(tenant).total_rows


def test_bad_rows_land_in_rejects_with_reasons_and_unknown_fields_are_kept(tenant, instance, tmp_path):
    faults = Faults(rules=[Fault(object="patient", page=1, kind="wrong_type", field="date_of_birth", times=None),
                           Fault(object="patient", page=1, kind="unknown_field", row=1, times=None),
                           Fault(object="provider", page=1, kind="duplicate_record", times=None)])
    database = tmp_path / "db.duckdb"
    with serve(SenseiSimulator(tenant, faults=faults, rate_limit=None)) as url:
        result = extract(database, url, HISTORY_START.isoformat(), LAST_DAY, instance)
        assert result.success
        # Re-running one day of the range replaces that day's rows and rejects, never doubling them.
        assert extract(database, url, HISTORY_START.isoformat(), HISTORY_START.isoformat(), instance).success
    with duckdb.connect(str(database), read_only=True) as conn:
        reasons = dict(conn.execute("SELECT object || '/' || reason, count(*) FROM raw._rejects GROUP BY 1"
                                    ).fetchall())
        extras = conn.execute("SELECT _extra FROM raw.patient WHERE _extra IS NOT NULL").fetchall()
    assert reasons == {"patient/wrong_type": 1, "provider/duplicate_identical": 1}  # an exact copy: collapsed
    assert extras == [('{"x_sim_unknown_field":"injected by the simulator"}',)]
    manifest = read_manifest(tenant)
    assert len(landed(database, "patient")) == manifest.counts["patient"] - 1
    assert len(landed(database, "provider")) == manifest.counts["provider"]
    assert_no_phi_in_event_log(instance, tenant)


def assert_no_phi_in_event_log(instance: DagsterInstance, tenant: Path) -> None:
    """No patient name, birth date, phone or e-mail anywhere in what Dagster stored or logged."""
    text = "\n".join(str(e.dagster_event or e.user_message) + e.user_message
                     for run in instance.get_run_records() for e in instance.all_logs(run.dagster_run.run_id))
    assert text
    for patient in source_rows(tenant, "patients"):
        for value in (f"{patient['first_name']} {patient['last_name']}", patient["date_of_birth"],
                      patient["mobile_phone"], patient["email"]):
            assert not value or value not in text


def test_inventory_counts_match_manifest_and_checks_catch_an_empty_object(tenant, sensei_url, instance, tmp_path):
    database = tmp_path / "db.duckdb"
    assert extract(database, sensei_url, HISTORY_START.isoformat(), LAST_DAY, instance).success
    result = materialize([inventory], resources=resources(database, sensei_url), instance=instance)
    assert all(c.passed for c in result.get_asset_check_evaluations())
    with duckdb.connect(str(database), read_only=True) as conn:
        counts = dict(conn.execute("SELECT object, records FROM inventory.record_counts").fetchall())
        per_location = conn.execute("SELECT sum(records) FROM inventory.location_counts WHERE object = 'patient'"
                                    ).fetchone()[0]
    manifest = read_manifest(tenant)
    assert counts == manifest.counts
    assert per_location == manifest.counts["patient"]

    with duckdb.connect(str(database)) as conn:
        conn.execute("DELETE FROM raw.payer")
    broken = materialize([inventory], resources=resources(database, sensei_url), instance=instance,
                         raise_on_error=False)
    evaluations = {c.check_name: c for c in broken.get_asset_check_evaluations()}
    assert not evaluations["no_object_empty_when_source_has_rows"].passed
    assert not evaluations["every_source_record_accounted_for"].passed


def test_export_path_lands_the_same_rows_as_the_api(tenant, sensei_url, instance, tmp_path):
    from senseimig_dagster.sandbox.export_writer import write_export

    write_export(tenant, tmp_path / "export")
    api_db, export_db = tmp_path / "api.duckdb", tmp_path / "export.duckdb"
    assert extract(api_db, sensei_url, HISTORY_START.isoformat(), LAST_DAY, instance).success
    assert extract(export_db, sensei_url, HISTORY_START.isoformat(), LAST_DAY, instance, mode="export",
                   export_dir=str(tmp_path / "export")).success
    for obj in REGISTRY:
        columns = ", ".join(f'"{f.name}"' for f in obj.fields)
        with duckdb.connect(str(api_db), read_only=True) as a, duckdb.connect(str(export_db), read_only=True) as b:
            api_rows = a.execute(f"SELECT {columns} FROM raw.{obj.name} ORDER BY id").fetchall()
            export_rows = b.execute(f"SELECT {columns} FROM raw.{obj.name} ORDER BY id").fetchall()
        assert api_rows == export_rows, obj.name


def test_duplicated_rows_are_accounted_for_and_the_inventory_passes(tenant, instance, tmp_path):
    """An export holding a row twice (identical) and an id twice with other values: one copy lands, the identical
    one is collapsed and the conflicting one rejected, and the inventory counts every copy of the file."""
    from senseimig_dagster.sandbox.export_writer import write_export

    export = tmp_path / "export"
    write_export(tenant, export)
    path = export / "patients.csv"
    rows = pl.read_csv(path, infer_schema=False)
    conflicting = rows.slice(1, 1).with_columns(pl.lit("Changed").alias("last_name"))
    pl.concat([rows.head(1), rows, conflicting]).write_csv(path)  # the conflicting copy is read last: it wins
    database = tmp_path / "db.duckdb"
    source = {"mode": "export", "export_dir": str(export)}
    assert extract(database, "http://unused", HISTORY_START.isoformat(), LAST_DAY, instance, **source).success
    result = materialize([inventory], resources=resources(database, "http://unused", **source), instance=instance,
                         raise_on_error=False)
    assert {c.check_name: c.passed for c in result.get_asset_check_evaluations()} == {
        "no_object_empty_when_source_has_rows": True, "every_source_record_accounted_for": True,
        "no_landed_record_has_a_newer_rejected_version": True}
    with duckdb.connect(str(database), read_only=True) as conn:
        reasons = conn.execute("SELECT reason, source_id FROM raw._rejects WHERE object = 'patient' AND reason "
                               "LIKE 'duplicate%' ORDER BY reason").fetchall()
        kept = conn.execute("SELECT last_name FROM raw.patient WHERE id = ?", [rows["id"][1]]).fetchone()
        counts = conn.execute("SELECT source_count, records, duplicate_copies, unaccounted FROM "
                              "inventory.record_counts WHERE object = 'patient'").fetchone()
    assert reasons == [("duplicate_identical", rows["id"][0]), ("duplicate_primary_key", rows["id"][1])]
    assert kept == ("Changed",)
    assert counts[0] == rows.height + 2 and counts[2] == 2 and counts[3] == 0


def test_a_failed_rerun_leaves_the_window_as_it_was(tenant, sensei_url, instance, tmp_path):
    database = tmp_path / "db.duckdb"
    assert extract(database, sensei_url, HISTORY_START.isoformat(), LAST_DAY, instance).success
    before = landed(database, "ledger_transaction")
    faults = Faults(rules=[Fault(object="ledger_transaction", page=3, kind="http_500", times=None)])
    with serve(SenseiSimulator(tenant, faults=faults, rate_limit=None)) as url:
        result = extract(database, url, HISTORY_START.isoformat(), LAST_DAY, instance, page_size=200,
                         max_retries=1)
    assert not result.success
    error = str(next(e for e in result.all_events if e.is_step_failure).step_failure_data.error)
    assert "ledger_transaction" in error and "page 3" in error
    assert landed(database, "ledger_transaction") == before  # pages 1-2 of the failed run never replaced it


def test_first_extraction_that_fails_part_way_lands_nothing(tenant, instance, tmp_path):
    database = tmp_path / "db.duckdb"
    faults = Faults(rules=[Fault(object="ledger_transaction", page=3, kind="http_500", times=None)])
    with serve(SenseiSimulator(tenant, faults=faults, rate_limit=None)) as url:
        result = extract(database, url, HISTORY_START.isoformat(), LAST_DAY, instance, page_size=200,
                         max_retries=1)
    assert not result.success
    assert landed(database, "ledger_transaction") == []


def inventory_checks(database: Path, base_url: str, instance: DagsterInstance) -> dict[str, bool]:
    """Materialize the inventory; whether each of its checks passed."""
    result = materialize([inventory], resources=resources(database, base_url), instance=instance,
                         raise_on_error=False)
    return {c.check_name: c.passed for c in result.get_asset_check_evaluations()}


def day_two(tenant: Path, out: Path, changes: dict[str, dict]) -> Path:
    """A copy of the tenant where some patients changed (by id): what Sensei holds after a day of cutover."""
    shutil.copytree(tenant, out)
    rows = source_rows(tenant, "patients")
    with (out / "patients.jsonl").open("wb") as f:
        for row in rows:
            f.write(orjson.dumps(row | changes.get(row["id"], {})) + b"\n")
    return out


def test_delta_window_picks_up_changes_boundaries_and_future_rows(tenant, sensei_url, instance, tmp_path):
    database = tmp_path / "db.duckdb"
    assert extract(database, sensei_url, HISTORY_START.isoformat(), LAST_DAY, instance).success
    changed, midnight, future = (r["id"] for r in source_rows(tenant, "patients")[:3])
    later = day_two(tenant, tmp_path / "day2", {
        changed: {"updated_at": "2026-11-20T14:30:00Z", "status": "Inactive"},
        midnight: {"updated_at": "2026-11-21T00:00:00Z"},  # exactly on a boundary: belongs to the 21st
        future: {"updated_at": "2099-01-01T00:00:00Z"},  # clock skew at the source
    })
    with serve(SenseiSimulator(later, rate_limit=None)) as url:
        assert extract(database, url, "2026-11-20", "2026-11-20", instance).success
        with duckdb.connect(str(database), read_only=True) as conn:
            assert conn.execute("SELECT count(*) FROM raw.patient WHERE id = ?", [midnight]).fetchone() == (1,)
        assert extract(database, url, "2026-11-20", LAST_DAY, instance).success
        with duckdb.connect(str(database), read_only=True) as conn:
            versions = conn.execute("SELECT status FROM raw.patient WHERE id = ? ORDER BY updated_at",
                                    [changed]).fetchall()
            at_midnight = conn.execute("SELECT count(*) FROM raw.patient WHERE id = ? AND updated_at = "
                                       "TIMESTAMPTZ '2026-11-21 00:00:00+00'", [midnight]).fetchone()
            future_rejects = conn.execute("SELECT reason FROM raw._rejects WHERE source_id = ?", [future]).fetchall()
        assert versions[-1] == ("Inactive",) and len(versions) == 2  # both versions kept, each in its window
        assert at_midnight == (1,)
        assert future_rejects == [("modified_outside_window",)]
        # Re-running the delta changes nothing: same rows, same rejects.
        assert extract(database, url, "2026-11-20", LAST_DAY, instance).success
        checks = inventory_checks(database, url, instance)
    # Every record is accounted for, but the future-dated version could not land: raw holds the older copy of
    # that patient, and the inventory says so before anything is migrated.
    assert checks == {"no_object_empty_when_source_has_rows": True, "every_source_record_accounted_for": True,
                      "no_landed_record_has_a_newer_rejected_version": False}
    with duckdb.connect(str(database), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM raw._rejects").fetchone() == (1,)
        assert conn.execute("SELECT records FROM inventory.record_counts WHERE object = 'patient'").fetchone() == (
            read_manifest(tenant).counts["patient"],)


def test_inventory_blocks_when_a_newer_version_was_rejected(tenant, sensei_url, instance, tmp_path):
    database = tmp_path / "db.duckdb"
    assert extract(database, sensei_url, HISTORY_START.isoformat(), LAST_DAY, instance).success
    broken = source_rows(tenant, "patients")[5]["id"]
    later = day_two(tenant, tmp_path / "day2", {
        broken: {"updated_at": "2026-11-22T09:00:00Z", "date_of_birth": "31/02/1980"}})
    with serve(SenseiSimulator(later, rate_limit=None)) as url:
        assert extract(database, url, "2026-11-22", LAST_DAY, instance).success
        checks = inventory_checks(database, url, instance)
    assert checks == {"no_object_empty_when_source_has_rows": True, "every_source_record_accounted_for": True,
                      "no_landed_record_has_a_newer_rejected_version": False}
    with duckdb.connect(str(database), read_only=True) as conn:
        assert conn.execute("SELECT newer_version_rejected FROM inventory.record_counts WHERE object = 'patient'"
                            ).fetchone() == (1,)


def test_an_older_store_with_narrower_money_is_widened_or_refused_before_anything_lands(tenant, sensei_url,
                                                                                        instance, tmp_path):
    database = tmp_path / "db.duckdb"

    def old_store(amount_type: str) -> None:
        with duckdb.connect(str(database)) as conn:
            conn.execute("CREATE SCHEMA IF NOT EXISTS raw")
            conn.execute(raw_table_ddl(objects.get("ledger_transaction"), "raw.ledger_transaction", replace=True))
            conn.execute(f"ALTER TABLE raw.ledger_transaction ALTER COLUMN amount TYPE {amount_type}")

    old_store("DECIMAL(20,8)")  # more fraction digits than this release keeps: not a lossless change
    refused = extract(database, sensei_url, HISTORY_START.isoformat(), LAST_DAY, instance, "ledger_transaction")
    assert not refused.success
    error = str(next(e for e in refused.all_events if e.is_step_failure).step_failure_data.error)
    assert "raw.ledger_transaction.amount is DECIMAL(20,8)" in error and "DECIMAL(18,6)" in error
    assert landed(database, "ledger_transaction") == []

    old_store("DECIMAL(12,2)")  # before money became exact
    assert extract(database, sensei_url, HISTORY_START.isoformat(), LAST_DAY, instance, "ledger_transaction").success
    with duckdb.connect(str(database), read_only=True) as conn:
        (amount_type,) = conn.execute("SELECT data_type FROM duckdb_columns() WHERE schema_name = 'raw' AND "
                                      "table_name = 'ledger_transaction' AND column_name = 'amount'").fetchone()
    assert amount_type == "DECIMAL(18,6)"
    assert len(landed(database, "ledger_transaction")) == len(source_rows(tenant, "ledger_transactions"))
