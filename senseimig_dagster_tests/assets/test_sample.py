"""The sample migration end to end: a generated tenant extracted through the raw assets (simulator over HTTP),
then ``mapping/sample_diff`` against the emulator over HTTPS with tokens from the Entra stand-in: every sampled
patient and its children land, every compared value is equal after the round trip, nothing differing is kept and no file is written,
and no sampled patient's PHI reaches the Dagster event log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from dagster import DagsterInstance, materialize
from dagster._serdes import serialize_value

from senseimig_dagster.assets.partitions import range_tags
from senseimig_dagster.assets.raw import raw_assets
from senseimig_dagster.assets.sample import SAMPLE_DIFF_KEY, sample_diff
from senseimig_dagster.assets.staging import read_raw
from senseimig_dagster.load.read_back import read_back
from senseimig_dagster.mapping import default_map_path, load_valid
from senseimig_dagster.mapping.sample import sample_patient_ids, sample_rows
from senseimig_dagster.staging.pipeline import stage_tenant
from senseimig_dagster.verify.differences import read_differences
from senseimig_dagster_tests.support.environments import sandbox

PATIENTS, SEED = 6, 2
FMAP = load_valid(default_map_path())


@pytest.fixture(scope="module")
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture(scope="module")
def run(tenant: Path, instance: DagsterInstance, tmp_path_factory: pytest.TempPathFactory):
    """Raw extraction, then one sample run into an HTTPS emulator (seeded: owners are its users)."""
    work = tmp_path_factory.mktemp("sample")
    database = work / "db.duckdb"
    with sandbox(work, tenant=tenant, key_delay=0.05) as served:
        dataverse = served.dataverse()
        resources = served.resources(database, sample_dataverse=dataverse)
        tags = range_tags()
        assert materialize(raw_assets, resources=resources, instance=instance, tags=tags).success
        config = {"ops": {"mapping__sample_diff": {"config": {"patients": PATIENTS, "seed": SEED}}}}
        result = materialize([sample_diff], resources=resources, instance=instance, run_config=config,
                             selection=[SAMPLE_DIFF_KEY], raise_on_error=False)
        yield result, resources, dataverse


def _metadata(result) -> dict:
    (mat,) = result.asset_materializations_for_node("mapping__sample_diff")
    return {k: v.value for k, v in mat.metadata.items()}


def test_every_sampled_patient_and_child_lands_and_reads_back_equal(run) -> None:
    result, resources, dataverse = run
    assert result.success
    meta = _metadata(result)
    assert meta["patients"] == PATIENTS and meta["rows_failed"] == 0, meta["failures"]
    assert meta["values_compared"] > 1000
    assert meta["values_differing"] == 0 and meta["values_equal"] == meta["values_compared"], meta["diff"]
    # The same sample staged here: every staged row of every object is in Dataverse, by source id.
    raw = read_raw(resources["store"])
    ids = sample_patient_ids(raw["patient"], PATIENTS, SEED)
    staged = stage_tenant({k: v for k, v in sample_rows(raw, ids).items() if v.height}, FMAP).staged
    assert set(ids) <= set(staged["patient"].get_column("_source_id"))
    assert {"appointment", "ledger_transaction", "clinical_note", "claim"} <= {k for k, v in staged.items() if v.height}
    expected: dict[str, set[str]] = {}
    for name, frame in staged.items():
        tables = frame.get_column("_table") if "_table" in frame.columns else [FMAP.objects[name].tables[0]] * frame.height
        for table, sid in zip(tables, frame.get_column("_source_id"), strict=True):
            expected.setdefault(table, set()).add(sid)
    assert meta["rows_loaded_per_table"] == {t: len(s) for t, s in sorted(expected.items())}
    with dataverse.client() as client:
        sets = {"contact": "contacts", "smig_appointment": "smig_appointments", "smig_billingledger": "smig_billingledgers"}
        for table, entity_set in sets.items():
            found = read_back(client, entity_set, table, sorted(expected[table]), ["smig_sourcesystemid"])
            assert set(found) == expected[table], table


def test_only_differences_are_kept_in_the_store_and_no_file_is_written(run) -> None:
    result, resources, _ = run
    assert _metadata(result)["differences_kept"] == 0  # every value equal: nothing kept
    with resources["store"].open() as db:
        assert read_differences(db.conn, run_id=result.run_id).is_empty()
    folder = Path(resources["store"].database).parent
    assert not [p.name for p in folder.iterdir() if p.suffix == ".csv"]


def test_no_sampled_patient_phi_in_the_event_log(run, instance: DagsterInstance) -> None:
    result, resources, _ = run
    raw = read_raw(resources["store"])
    sampled = raw["patient"].filter(pl.col("id").is_in(sample_patient_ids(raw["patient"], PATIENTS, SEED)))
    phi = {str(v) for c in ("first_name", "last_name", "email", "mobile_phone", "address_line1")
           for v in sampled.get_column(c).drop_nulls() if len(str(v)) >= 4}
    assert len(phi) >= PATIENTS
    text = "\n".join(serialize_value(e) for e in instance.all_logs(result.run_id))
    assert "values equal after the round trip" in text  # the masked diff is there
    assert sorted(v for v in phi if v in text) == []
