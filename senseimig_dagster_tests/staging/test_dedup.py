from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from senseimig_dagster.staging.dedup import (
    SCORE_FIELDS,
    dedup_truth,
    deduplicate,
    evaluate_dedup,
    load_overrides,
    repoint_children,
)
from senseimig_dagster_tests.support.tenants import read_defects, read_object

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
COLUMNS = {
    "id": pl.String, "patient_number": pl.String, "status": pl.String, "first_name": pl.String,
    "last_name": pl.String, "nickname": pl.String, "date_of_birth": pl.Date, "gender": pl.String,
    "mobile_phone": pl.String, "home_phone": pl.String, "work_phone": pl.String, "email": pl.String,
    "address_line1": pl.String, "postal_code": pl.String, "medical_alerts": pl.List(pl.String),
    "first_visit_date": pl.Date, "last_visit_date": pl.Date, "updated_at": pl.Datetime("us", "UTC"),
}  # fmt: skip


def patient(id_: str, first: str, last: str = "Smith", dob: str = "1980-05-17", gender: str = "Male", *,
            days: int = 0, **fields) -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(id=id_, patient_number=id_, status="Active", first_name=first, last_name=last,
               date_of_birth=dt.date.fromisoformat(dob), gender=gender, mobile_phone="303-555-0142",
               address_line1="12 Oak Street", postal_code="80202", medical_alerts=[],
               updated_at=T0 + dt.timedelta(days=days))
    row.update(fields)
    return row


def frame(*rows: dict) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=COLUMNS)


def merged(result) -> set[tuple[str, str]]:
    return set(result.merge_map.select("duplicate_id", "survivor_id").iter_rows())


def test_duplicate_with_nickname_case_and_phone_format_is_merged():
    result = deduplicate(frame(
        patient("a", "Robert", email="rob@example.com"),
        patient("b", "Bob", "SMITH", mobile_phone="(303) 555-0142", address_line1="12 Oak St."),
    ))
    assert merged(result) == {("b", "a")}
    assert result.merge_map.row(0, named=True)["reason"] == "merged_duplicate"
    assert result.patients.height == 1


def test_twins_sharing_address_phone_and_email_are_not_merged():
    shared = {"email": "smith.family@example.com", "home_phone": "303-555-0199"}
    result = deduplicate(frame(
        patient("a", "Mary", gender="Female", **shared),
        patient("b", "Maria", gender="Female", **shared),  # same-gender twins, similar names
        patient("c", "Michael", **shared),
        patient("d", "James", dob="2012-02-03", **shared),  # siblings: same name as no one, other DOB
        patient("e", "James", dob="2015-08-21", **shared),  # a brother with the same first name
    ))
    assert merged(result) == set()
    assert result.patients.height == 5
    twins = result.decisions.filter((pl.col("id_l") == "a") & (pl.col("id_r") == "b")).row(0, named=True)
    assert twins["decision"] == "no_match" and twins["s_date_of_birth"] > 0 and twins["s_first_name"] < 0


def test_overrides_force_and_never_merge_are_honoured(tmp_path: Path):
    overrides_file = tmp_path / "overrides.csv"
    overrides_file.write_text("# reviewed by the practice manager\nid_a,id_b,action,note\n"
                              "c,a,merge,married name\na,b,never,father and son\n", encoding="utf-8")
    overrides = load_overrides(overrides_file)
    rows = (patient("a", "Robert"), patient("b", "Rob"), patient("c", "Robert", "Jones", email="x@y.org"))
    assert merged(deduplicate(frame(*rows))) == {("b", "a")}  # the scores alone
    result = deduplicate(frame(*rows), overrides)
    pairs = merged(result)
    assert {tuple(sorted(p)) for p in pairs} >= {("a", "c")}
    assert all({"a", "b"} != set(p) for p in pairs)
    decisions = {(r["id_l"], r["id_r"]): r["decision"] for r in result.decisions.iter_rows(named=True)}
    assert decisions[("a", "b")] == "never_merge" and decisions[("a", "c")] == "forced_merge"
    assert result.merge_map.filter(pl.col("duplicate_id").is_in(["a", "c"]))["rule"].to_list() == ["override"]


def test_override_file_rejects_an_unknown_action(tmp_path: Path):
    bad = tmp_path / "overrides.csv"
    bad.write_text("id_a,id_b,action\na,b,maybe\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        load_overrides(bad)


def test_survivor_is_most_complete_and_fields_take_the_most_recent_value():
    old = patient("a", "Katherine", "Lee", gender="Female", email="kate@example.com", work_phone="720-555-0100",
                  medical_alerts=["Latex allergy"], first_visit_date=dt.date(2015, 1, 1),
                  last_visit_date=dt.date(2020, 1, 1), status="Inactive", days=0)
    new = patient("b", "Kate", "LEE", gender="Female", mobile_phone="720-555-0177", email="kate@example.com",
                  medical_alerts=["Penicillin allergy"], first_visit_date=dt.date(2021, 3, 1),
                  last_visit_date=dt.date(2021, 3, 1), status="Active", days=400)
    result = deduplicate(frame(old, new))
    assert merged(result) == {("b", "a")}  # a has more fields filled in
    row = result.patients.row(0, named=True)
    assert (row["id"], row["first_name"], row["last_name"]) == ("a", "Katherine", "Lee")  # identity: survivor
    assert row["mobile_phone"] == "720-555-0177"  # the newer record's phone
    assert row["work_phone"] == "720-555-0100"  # only the older one had it
    assert sorted(row["medical_alerts"]) == ["Latex allergy", "Penicillin allergy"]
    assert (row["first_visit_date"], row["last_visit_date"]) == (dt.date(2015, 1, 1), dt.date(2021, 3, 1))
    assert row["status"] == "Active"
    assert row["updated_at"] == T0 + dt.timedelta(days=400)


def test_survivor_tie_on_completeness_goes_to_the_most_recent():
    result = deduplicate(frame(patient("a", "John", days=1), patient("b", "John", days=5)))
    assert merged(result) == {("a", "b")}


def test_chain_guard_keeps_out_a_record_that_does_not_match_the_survivor():
    # Steven ~ Steve (nickname) and Steve ~ Stephen (nickname), but Steven vs Stephen is only a partial match
    a = patient("a", "Steven", email="steven@example.com", work_phone="720-555-0101", mobile_phone=None)
    b = patient("b", "Steve", mobile_phone=None, address_line1=None)
    c = patient("c", "Stephen", email="stephen@example.com", mobile_phone=None)
    result = deduplicate(frame(a, b, c))
    assert merged(result) == {("b", "a")}
    decisions = {(r["id_l"], r["id_r"]): r["decision"] for r in result.decisions.iter_rows(named=True)}
    assert decisions[("b", "c")] == "chain_split"
    assert decisions[("a", "c")] == "no_match"
    assert result.stats["chain_splits"] == 1


def test_decisions_show_scores_per_field_and_no_values():
    result = deduplicate(frame(patient("a", "Robert"), patient("b", "Bob")))
    assert set(result.decisions.columns) == {"id_l", "id_r", "total", "decision", "reason",
                                             *(f"s_{f}" for f in SCORE_FIELDS)}


def test_repoint_children_moves_every_patient_reference_to_the_survivor():
    merge_map = pl.DataFrame({"duplicate_id": ["b"], "survivor_id": ["a"]})
    frames = {
        "appointment": pl.DataFrame({"id": ["x1", "x2"], "patient_id": ["b", "c"], "provider_id": ["b", "b"]}),
        "patient_policy": pl.DataFrame({"id": ["p1"], "patient_id": ["c"], "policyholder_id": ["b"]}),
        "ledger_transaction": pl.DataFrame({"id": ["l1"], "patient_id": ["b"], "guarantor_id": ["b"]}),
        "provider": pl.DataFrame({"id": ["b"]}),
    }
    out = repoint_children(frames, merge_map)
    assert out["appointment"]["patient_id"].to_list() == ["a", "c"]
    assert out["appointment"]["provider_id"].to_list() == ["b", "b"]  # not a patient reference
    assert out["patient_policy"]["policyholder_id"].to_list() == ["a"]
    assert out["ledger_transaction"].row(0) == ("l1", "a", "a")
    assert out["provider"]["id"].to_list() == ["b"]


def test_evaluate_dedup_counts_pairs():
    truth = pl.DataFrame({"duplicate_id": ["b", "d"], "original_id": ["a", "c"]})
    merge_map = pl.DataFrame({"duplicate_id": ["b", "e"], "survivor_id": ["a", "c"]})
    e = evaluate_dedup(merge_map, truth)
    assert (e.precision, e.recall, e.false_positives, e.false_negatives) == (0.5, 0.5, 1, 1)


@pytest.fixture(scope="module")
def tenant(generated: Callable[[int, int], Path]) -> Path:
    return generated(300, 21)


def test_generated_tenant_precision_and_recall(tenant: Path):
    patients = read_object(tenant, "patient")
    truth = dedup_truth(read_defects(tenant))
    result = deduplicate(patients)
    e = evaluate_dedup(result.merge_map, truth)
    assert truth.height >= 5
    assert e.precision >= 0.98 and e.recall >= 0.95, e
    assert result.patients.height + result.merge_map.height == patients.height  # conservation
    assert result.patients["id"].is_unique().all()
