"""pipeline.stage_tenant over a generated tenant: order of operations, accounts, and every row accounted for."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from senseimig_dagster.mapping import default_map_path, load_valid
from senseimig_dagster.objects import REGISTRY
from senseimig_dagster.staging.dedup import dedup_truth, evaluate_dedup
from senseimig_dagster.staging.pipeline import COUNT_COLUMNS, stage_tenant, written_objects
from senseimig_dagster_tests.support.tenants import read_defects, read_object

FMAP = load_valid(default_map_path())
TODAY = dt.date(2026, 11, 25)


@pytest.fixture(scope="module")
def raw(tenant: Path) -> dict[str, pl.DataFrame]:
    return {o.name: read_object(tenant, o.name) for o in REGISTRY}


@pytest.fixture(scope="module")
def result(raw):
    return stage_tenant(raw, FMAP, today=TODAY)


def count(result, obj: str, column: str) -> int:
    return result.counts.filter(pl.col("object") == obj).get_column(column).item()


def test_every_object_adds_up(result, raw):
    counts = result.counts
    assert set(counts.get_column("object")) == set(raw)
    assert counts.get_column("conserved").all()
    for row in counts.iter_rows(named=True):
        assert row["extracted"] == raw[row["object"]].height
        assert row["extracted"] == sum(row[c] for c in COUNT_COLUMNS[1:]), row["object"]
        if row["object"] in result.staged:
            assert row["staged"] == result.staged[row["object"]].height
    assert set(result.staged) == set(written_objects(FMAP))
    # quarantined counts rows, not findings: each quarantined row has at least one row-level finding
    row_level = result.quarantine.filter(pl.col("severity") == "row").group_by("object").agg(
        pl.col("source_id").n_unique().alias("rows"))
    for obj, rows in row_level.iter_rows():
        assert count(result, obj, "quarantined") == rows, obj


def test_duplicates_merge_and_children_follow_their_survivor(result, tenant):
    assert count(result, "patient", "merged") == result.merge_map.height
    found = evaluate_dedup(result.merge_map, dedup_truth(read_defects(tenant)))
    assert found.precision == 1.0 and found.recall >= 0.8, found  # harsh duplicates: the rest go to review or apart
    duplicates = set(result.merge_map.get_column("duplicate_id"))
    for name, frame in result.staged.items():
        if "smig_PatientId" in frame.columns:
            assert not duplicates & set(frame.get_column("smig_PatientId").drop_nulls()), name
    assert not duplicates & set(result.staged["patient"].get_column("_source_id"))


def test_chart_duplicates_and_free_text_providers_are_counted(result, tenant):
    defects = read_defects(tenant)
    chart = defects.filter(pl.col("kind") == "duplicate_chart_entry")
    for obj, n in chart.group_by("object").len().iter_rows():
        assert count(result, obj, "collapsed") == n, obj
    unresolvable = defects.filter((pl.col("kind") == "free_text_provider") & (pl.col("detail") == "unresolvable"))
    assert result.quarantine.filter(pl.col("rule") == "unknown_provider").height == unresolvable.height


def test_accounts_dso_practices_and_carriers(result, raw):
    org_id = raw["organization"].get_column("id").item()
    locations = result.staged["location"]
    assert locations.get_column("parentaccountid").to_list() == [org_id] * locations.height
    payers = result.staged["payer"]
    assert payers.get_column("smig_isinsurancecarrier").all() and payers.height == raw["payer"].height
    patients = result.staged["patient"]
    assert set(patients.get_column("parentcustomerid_account")) <= set(locations.get_column("_source_id"))
    assert patients.get_column("smig_contacttype").unique().to_list() == [727000000]


def test_a_quarantined_patient_takes_its_required_children_and_a_fallback_provider_keeps_rows(raw):
    patients = raw["patient"]
    victim = patients.filter(~pl.col("is_deleted").fill_null(False)).get_column("id")[0]
    broken = {**raw, "patient": patients.with_columns(
        pl.when(pl.col("id") == victim).then(pl.lit("")).otherwise(pl.col("last_name")).alias("last_name"))}
    fallback = raw["provider"].get_column("id")[0]
    result = stage_tenant(broken, FMAP, today=TODAY, fallback_provider_id=fallback)
    assert result.counts.get_column("conserved").all()
    found = result.quarantine.filter(pl.col("severity") == "row")
    assert found.filter(pl.col("source_id") == victim).get_column("rule").to_list() == ["required_missing"]
    children = raw["appointment"].filter((pl.col("patient_id") == victim) & ~pl.col("is_deleted").fill_null(False))
    assert children.height > 0
    held = found.filter((pl.col("object") == "appointment") & (pl.col("rule") == "parent_not_staged"))
    assert set(children.get_column("id")) <= set(held.get_column("source_id"))
    assert found.filter(pl.col("rule").is_in(["unknown_provider", "ambiguous_provider"])).is_empty()


def test_deleted_and_unrouted_rows_are_not_written_by_rule(result, raw):
    nw = result.not_written
    deleted = raw["perio_reading"].filter(pl.col("is_deleted").fill_null(False)).height
    assert nw.filter((pl.col("object") == "perio_reading") & (pl.col("cause") == "deleted_in_source")).height == deleted
    not_doctors = raw["referral_source"].filter((pl.col("type") != "Doctor") & ~pl.col("is_deleted").fill_null(False))
    assert nw.filter(pl.col("cause") == "not_routed").get_column("source_id").sort().to_list() == \
        not_doctors.get_column("id").sort().to_list()
    assert count(result, "user", "not_written") == raw["user"].height  # matched to Dynamics users, never written
