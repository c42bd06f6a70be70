"""The sample migration's selection (N patients with all their children) and field diff (source | staged |
Dataverse)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from senseimig_dagster import mapping
from senseimig_dagster.mapping.sample import (
    DIFF_COLUMNS,
    Readback,
    diff_markdown,
    field_diff,
    sample_patient_ids,
    sample_rows,
)
from senseimig_dagster.mapping.targets import TargetCatalog
from senseimig_dagster.objects import MASK, REGISTRY
from senseimig_dagster.sandbox.generator import generate
from senseimig_dagster_tests.support.tenants import read_object


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pl.DataFrame]:
    tenant = Path(tmp_path_factory.mktemp("tenant"))
    generate(tenant, patients=150, seed=4)
    return {o.name: read_object(tenant, o.name) for o in REGISTRY}


def test_sample_is_reproducible_stratified_and_sized(frames: dict[str, pl.DataFrame]) -> None:
    patients = frames["patient"]
    first, again = sample_patient_ids(patients, 12, seed=1), sample_patient_ids(patients, 12, seed=1)
    assert first == again and len(first) == len(set(first)) == 12
    assert sample_patient_ids(patients, 12, seed=2) != first
    locations = patients.filter(pl.col("id").is_in(first))["primary_location_id"].n_unique()
    assert locations == patients["primary_location_id"].n_unique()  # every practice is represented
    assert len(sample_patient_ids(patients, 10_000)) == patients.height


def test_sample_rows_keep_the_patients_descendants_and_all_shared_parents(frames: dict[str, pl.DataFrame]) -> None:
    ids = sample_patient_ids(frames["patient"], 5, seed=3)
    rows = sample_rows(frames, ids)
    assert sorted(rows["patient"]["id"].to_list()) == sorted(ids)
    assert rows["location"].height == frames["location"].height  # not patient-scoped: whole
    assert rows["provider"].height == frames["provider"].height
    appointments = rows["appointment"]
    assert appointments.height > 0 and set(appointments["patient_id"].to_list()) <= set(ids)
    # Grandchildren come through their parent: every kept claim event belongs to a kept claim.
    claims = set(rows["claim"]["id"].to_list())
    assert set(rows["claim_status_event"]["claim_id"].to_list()) <= claims
    expected_events = frames["claim_status_event"].filter(pl.col("claim_id").is_in(sorted(claims))).height
    assert rows["claim_status_event"].height == expected_events > 0
    items = rows["treatment_plan_item"]
    assert set(items["treatment_plan_id"].to_list()) <= set(rows["treatment_plan"]["id"].to_list())


def test_field_diff_compares_values_and_lookups_through_the_parents_dataverse_id() -> None:
    fmap = mapping.load_valid(mapping.default_map_path())
    raw = {"patient": pl.DataFrame({"id": ["p1"], "last_name": ["Okafor"], "primary_location_id": ["l1"]})}
    staged = {"patient": pl.DataFrame({"_source_id": ["p1"], "lastname": ["Okafor"],
                                       "parentcustomerid_account": ["l1"]})}
    acct, other = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
    good = Readback(rows={"contact": {"p1": {"lastname": "Okafor", "_parentcustomerid_value": acct}}},
                    ids={("account", "l1"): acct})
    diff = field_diff(fmap, raw, staged, good, TargetCatalog())
    assert diff.filter(pl.col("column") == "lastname").row(0, named=True) | {} == {
        "object": "patient", "source_id": "p1", "field": "last_name", "column": "lastname",
        "source_value": "Okafor", "staged_value": "Okafor", "dataverse_value": "Okafor", "equal": True}
    assert diff.filter(pl.col("column") == "parentcustomerid_account")["equal"].to_list() == [True]
    bad = Readback(rows={"contact": {"p1": {"lastname": "Okafor ", "_parentcustomerid_value": other}}},
                   ids={("account", "l1"): acct})
    diff = field_diff(fmap, raw, staged, bad, TargetCatalog())
    assert diff["equal"].to_list() == [False, False]
    view = diff_markdown(diff)
    assert "0 of 2 values equal" in view and "Okafor" not in view  # last_name is PHI: masked in the UI view
    assert "O•" not in view and MASK in view  # masked whole: not even the first character


def test_the_view_shows_only_allow_listed_fields_and_masks_unflagged_free_text() -> None:
    diff = pl.DataFrame([("appointment", "a1", field, "c", value, value, value, False) for field, value in (
        ("status", "Cancelled"), ("cancel_reason", "wife sick, call Tue"), ("operatory", "OP-3 Ames wing"))],
        schema=list(DIFF_COLUMNS), orient="row")
    view = diff_markdown(diff)
    assert "Cancelled" in view  # a code-like field: shown
    assert "wife sick" not in view and "Ames wing" not in view  # free text and fields not allow-listed: masked
