"""Raw assets over real HTTP: a single-run backfill over a partition range, a later delta window, re-runs, and
failures that neither duplicate nor lose rows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import orjson
import pytest
from dagster import DagsterInstance, materialize
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from dagster_duckdb import DuckDBResource

from senseimig_dagster.assets.inventory import inventory
from senseimig_dagster.assets.partitions import HISTORY_START, modification_days
from senseimig_dagster.assets.raw import raw_assets
from senseimig_dagster.io_managers import SenseimigDuckDBIOManager
from senseimig_dagster.objects import REGISTRY
from senseimig_dagster.resources import SenseiSource
from senseimig_dagster.sandbox.generator import read_manifest
from senseimig_dagster.sandbox.sensei_sim import Fault, Faults, SenseiSimulator, serve

LAST_DAY = modification_days.get_last_partition_key()


def resources(database: Path, base_url: str, **source: object) -> dict:
    return {"sensei": SenseiSource(base_url=base_url, **source),
            "duckdb_io_manager": SenseimigDuckDBIOManager(database=str(database)),
            "store": DuckDBResource(database=str(database))}


def extract(database: Path, base_url: str, first: str, last: str, instance: DagsterInstance, **source: object):
    return materialize(raw_assets, resources=resources(database, base_url, **source), instance=instance,
                       raise_on_error=False,
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
    with serve(SenseiSimulator(tenant, faults=faults, rate_limit=None)) as url:
        result = extract(database, url, HISTORY_START.isoformat(), LAST_DAY, instance, page_size=50)
    assert result.success
    assert len(landed(database, "appointment")) == read_manifest(tenant).counts["appointment"]


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
    faults = Faults(rules=[Fault(object="patient", page=1, kind="wrong_type"),
                           Fault(object="patient", page=1, kind="unknown_field", row=1),
                           Fault(object="provider", page=1, kind="duplicate_record")])
    database = tmp_path / "db.duckdb"
    with serve(SenseiSimulator(tenant, faults=faults, rate_limit=None)) as url:
        assert extract(database, url, HISTORY_START.isoformat(), LAST_DAY, instance).success
    with duckdb.connect(str(database), read_only=True) as conn:
        reasons = dict(conn.execute("SELECT object || '/' || reason, count(*) FROM raw._rejects GROUP BY 1"
                                    ).fetchall())
        extras = conn.execute("SELECT count(*) FROM raw.patient WHERE _extra IS NOT NULL").fetchone()[0]
    assert reasons.get("patient/wrong_type", 0) >= 1
    assert reasons.get("provider/duplicate_primary_key", 0) >= 1
    assert extras >= 1


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


@pytest.mark.parametrize("mode", ["export"])
def test_export_path_lands_the_same_rows_as_the_api(tenant, sensei_url, instance, tmp_path, mode):
    from senseimig_dagster.sandbox.export_writer import write_export

    write_export(tenant, tmp_path / "export")
    api_db, export_db = tmp_path / "api.duckdb", tmp_path / "export.duckdb"
    assert extract(api_db, sensei_url, HISTORY_START.isoformat(), LAST_DAY, instance).success
    assert extract(export_db, sensei_url, HISTORY_START.isoformat(), LAST_DAY, instance, mode=mode,
                   export_dir=str(tmp_path / "export")).success
    for obj in REGISTRY:
        columns = ", ".join(f'"{f.name}"' for f in obj.fields)
        with duckdb.connect(str(api_db), read_only=True) as a, duckdb.connect(str(export_db), read_only=True) as b:
            api_rows = a.execute(f"SELECT {columns} FROM raw.{obj.name} ORDER BY id").fetchall()
            export_rows = b.execute(f"SELECT {columns} FROM raw.{obj.name} ORDER BY id").fetchall()
        assert api_rows == export_rows, obj.name


def test_failure_mid_extraction_leaves_the_window_empty_not_half_loaded(tenant, instance, tmp_path):
    database = tmp_path / "db.duckdb"
    faults = Faults(rules=[Fault(object="ledger_transaction", page=3, kind="http_500", times=None)])
    with serve(SenseiSimulator(tenant, faults=faults, rate_limit=None)) as url:
        result = extract(database, url, HISTORY_START.isoformat(), LAST_DAY, instance, page_size=200,
                         max_retries=1)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "ledger_transaction" in str(failure.step_failure_data.error) and "page 3" in str(
        failure.step_failure_data.error)
    assert landed(database, "ledger_transaction") == []  # pages 1-2 were landed, then removed with the failure
