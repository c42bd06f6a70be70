"""shape.py: values cleaned per the target column, codes and lookups checked, rows renamed into Dataverse columns,
merged objects as patient columns."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from senseimig_dagster.mapping import default_map_path, load_valid
from senseimig_dagster.mapping.schema_plan import default_plan
from senseimig_dagster.sandbox.dataverse_emulator import Catalog
from senseimig_dagster.staging.shape import (
    Targets,
    clean_object,
    code_checks,
    merge_into,
    shape_object,
)
from senseimig_dagster.staging.values.check import run_checks

FMAP = load_valid(default_map_path())
TARGETS = Targets.of(default_plan())
TODAY = dt.date(2026, 11, 25)
T0 = dt.datetime(2026, 1, 5, 9, 30, tzinfo=dt.UTC)


def rules(staged) -> list[tuple[str, str, str, str]]:
    return sorted(staged.quarantine.select("source_id", "field", "rule", "severity").iter_rows())


def patients(*rows: dict) -> pl.DataFrame:
    base = {"id": "p1", "patient_number": "100001", "primary_location_id": "loc-1", "status": "Active",
            "first_name": "Ana", "last_name": "Lopez", "date_of_birth": dt.date(1980, 5, 17), "gender": "Female",
            "mobile_phone": "(303) 555-0142", "email": "Ana@Example.COM", "updated_at": T0}
    return pl.DataFrame([{**base, **r} for r in rows])


IDS = {"location": pl.Series(["loc-1"]), "organization": pl.Series(["org-1"]), "provider": pl.Series(["prv-1"]),
       "patient": pl.Series(["p1", "p2", "p3"]), "user": pl.Series(["u1"])}


def test_standard_max_lengths_match_microsofts_metadata():
    catalog, targets = Catalog.load(), Targets.of(default_plan())
    for table in ("account", "contact", "phonecall", "email", "annotation"):
        for column in ("name", "lastname", "firstname", "emailaddress1", "address1_postalcode", "subject"):
            if column in catalog.tables[table].columns:
                assert targets.max_length(table, column) == catalog.tables[table].columns[column].max_length
    assert targets.required("contact", "lastname") and not targets.required("contact", "firstname")


def test_values_are_cleaned_by_their_target_column():
    staged = clean_object("patient", patients(
        {},
        {"id": "p2", "last_name": "X" * 51},  # contact.lastname is 50 long: the row cannot be created
        {"id": "p3", "mobile_phone": "call mom", "email": "n/a", "date_of_birth": dt.date(1850, 1, 1),
         "first_name": "  Zoë\u0000 "},
    ), FMAP, TARGETS, IDS, today=TODAY)
    assert rules(staged) == [
        ("p2", "last_name", "text_too_long", "row"),
        ("p3", "date_of_birth", "date_out_of_range", "field"),
        ("p3", "email", "invalid_email", "field"),
        ("p3", "first_name", "control_characters", "warning"),
        ("p3", "mobile_phone", "invalid_phone", "field"),
    ]
    rows = {r["id"]: r for r in staged.clean.iter_rows(named=True)}
    assert set(rows) == {"p1", "p3"} and staged.rows_quarantined == 1
    assert (rows["p1"]["mobile_phone"], rows["p1"]["email"]) == ("+13035550142", "Ana@example.com")
    assert (rows["p3"]["first_name"], rows["p3"]["mobile_phone"], rows["p3"]["date_of_birth"]) == ("Zoë", None, None)


def test_required_orphan_quarantines_the_row_and_a_duplicate_id_keeps_the_latest():
    staged = clean_object("patient", patients(
        {}, {"id": "p2", "primary_location_id": "loc-gone"},
        {"id": "p1", "updated_at": T0 - dt.timedelta(days=1)},
    ), FMAP, TARGETS, IDS, today=TODAY)
    assert rules(staged) == [("p1", "id", "duplicate_source_id", "row"),
                             ("p2", "primary_location_id", "orphan_reference", "row")]
    assert staged.clean.get_column("updated_at").to_list() == [T0]


def test_source_ids_differing_only_in_case_are_all_quarantined_before_load():
    staged = clean_object("patient", patients({"id": "PAT-7"}, {"id": "pat-7"}, {"id": "pat-8"}),
                          FMAP, TARGETS, IDS, today=TODAY)
    assert rules(staged) == [("PAT-7", "id", "source_id_case_collision", "row"),
                             ("pat-7", "id", "source_id_case_collision", "row")]
    assert staged.clean.get_column("id").to_list() == ["pat-8"]
    message = staged.quarantine.get_column("message")[0]
    assert "smig_sourcesystemid" in message and "only in letter case" in message


def test_shaped_patient_has_dataverse_columns_lookups_by_source_id_and_constants():
    clean = clean_object("patient", patients({}, {"id": "p2", "gender": "Unknown"}, {"id": "p3", "gender": "Femme"}),
                         FMAP, TARGETS, IDS, today=TODAY).clean
    shaped = shape_object("patient", clean, FMAP, TARGETS, {"location": IDS["location"]})
    # "Unknown" maps to null on purpose; "Femme" is not in the map
    assert rules(shaped) == [("p3", "gender", "unmapped_picklist_value", "field")]
    row = shaped.clean.row(0, named=True)
    assert (row["_object"], row["_source_id"], row["smig_sourcesystemid"]) == ("patient", "p1", "p1")
    assert (row["firstname"], row["lastname"], row["gendercode"], row["statecode"]) == ("Ana", "Lopez", 2, 0)
    assert row["parentcustomerid_account"] == "loc-1"  # the loader binds it by the location's alternate key
    assert row["smig_contacttype"] == 727000000 and row["birthdate"] == dt.date(1980, 5, 17)
    assert "first_name" not in shaped.clean.columns and "_owner_user_id" not in shaped.clean.columns
    assert shaped.clean.get_column("gendercode").to_list() == [2, None, None]


def test_a_lookup_to_an_unstaged_parent_drops_the_row_when_required_and_the_value_otherwise():
    notes = pl.DataFrame({"id": ["n1", "n2", "n3"], "patient_id": ["p1", "p-quarantined", "p1"],
                          "appointment_id": [None, None, "a-quarantined"], "note_type": ["Clinical"] * 3,
                          "signed_at": [T0] * 3})
    shaped = shape_object("clinical_note", notes, FMAP, TARGETS,
                          {"patient": pl.Series(["p1"]), "appointment": pl.Series(["a1"]), "provider": IDS["provider"]})
    assert rules(shaped) == [("n2", "patient_id", "parent_not_staged", "row"),
                             ("n3", "appointment_id", "parent_not_staged", "field")]
    assert shaped.clean.get_column("smig_AppointmentId").to_list() == [None, None]
    assert shaped.clean.get_column("smig_name").to_list() == ["Clinical note 2026-01-05 Clinical"] * 2


def test_a_lookup_to_a_row_of_the_same_object_that_was_not_staged_is_emptied():
    """A corrected ledger entry whose original was quarantined (or never extracted) keeps its row, loses the link:
    otherwise the Pandera lookup check (and Dataverse's bind) fails on it."""
    ledger = pl.DataFrame({"id": ["l1", "l2", "l3"], "patient_id": ["p1", "p-quarantined", "p1"],
                           "location_id": ["loc-1"] * 3, "txn_type": ["Charge"] * 3, "amount": ["10.00"] * 3,
                           "corrects_transaction_id": [None, "l1", "l2"]})
    shaped = shape_object("ledger_transaction", ledger, FMAP, TARGETS,
                          {"patient": pl.Series(["p1"]), "location": IDS["location"], "provider": IDS["provider"]})
    assert rules(shaped) == [("l2", "patient_id", "parent_not_staged", "row"),
                             ("l3", "corrects_transaction_id", "parent_not_staged", "field")]
    assert shaped.clean.get_column("_source_id").to_list() == ["l1", "l3"]
    assert shaped.clean.get_column("smig_CorrectsTransactionId").to_list() == [None, None]


def test_routed_rows_fill_their_tables_columns_and_owners_bind_by_email():
    comms = pl.DataFrame({"id": ["c1", "c2"], "patient_id": ["p1", "p1"], "user_id": ["u1", "u1"],
                          "channel": ["Call", "Email"], "direction": ["Outbound", "Inbound"], "started_at": [T0, T0]})
    users = pl.DataFrame({"id": ["u1"], "email": [" DHarris@Example.com "]})
    shaped = shape_object("communication", comms, FMAP, TARGETS, {"patient": IDS["patient"], "user": IDS["user"]},
                          matched={"user": users}).clean
    rows = shaped.select("_table", "_owner_user_id", "regardingobjectid_contact_phonecall",
                         "regardingobjectid_contact_email", "ownerid_phonecall", "ownerid_email",
                         "directioncode").rows()
    assert rows == [("phonecall", "u1", "p1", None, "dharris@example.com", None, True),
                    ("email", "u1", None, "p1", None, "dharris@example.com", False)]


def test_split_name_and_readable_names_and_typed_teeth():
    sources = pl.DataFrame({"id": ["r1"], "name": ["Kevin van Chen"], "type": ["Doctor"]})
    row = shape_object("referral_source", sources, FMAP, TARGETS, {}).clean.row(0, named=True)
    assert (row["firstname"], row["lastname"], row["smig_contacttype"]) == ("Kevin van", "Chen", 727000002)
    appts = pl.DataFrame({"id": ["a1"], "patient_id": ["p1"], "start_at": [T0], "cdt_codes": ['["D1110","D0120"]']})
    assert shape_object("appointment", appts, FMAP, TARGETS, {"patient": IDS["patient"]}).clean.get_column(
        "smig_name").to_list() == ["Appointment 2026-01-05 D1110"]
    readings = pl.DataFrame({"id": ["r1", "r2"], "patient_id": ["p1", "p1"], "tooth": [3, 33], "site": ["MB"] * 2,
                             "exam_date": [dt.date(2026, 1, 5)] * 2})
    cleaned = clean_object("perio_reading", readings, FMAP, TARGETS, IDS, today=TODAY)
    assert rules(cleaned) == [("r2", "tooth", "invalid_tooth", "row")]
    shaped = shape_object("perio_reading", cleaned.clean, FMAP, TARGETS, {"patient": IDS["patient"]}).clean
    assert shaped.schema["smig_tooth"] == pl.Int64 and shaped.get_column("smig_tooth").to_list() == [3]


@pytest.mark.parametrize("amount, rule", [("-80.00", "negative_charge"), ("12.345", "amount_precision")])
def test_ledger_amounts_follow_the_entry_type(amount: str, rule: str):
    ledger = pl.DataFrame({"id": ["l1"], "patient_id": ["p1"], "txn_type": ["Charge"], "amount": [amount],
                           "procedure_code": ["D1110"]})
    assert rules(clean_object("ledger_transaction", ledger, FMAP, TARGETS, IDS, today=TODAY)) == [
        ("l1", "amount", rule, "row")]


def test_policies_plans_and_the_latest_referral_become_patient_columns():
    d = dt.date
    policies = pl.DataFrame({
        "id": ["pol-1", "pol-2", "pol-old", "pol-other"], "patient_id": ["p1", "p1", "p1", "p1"],
        "insurance_plan_id": ["plan-1", "plan-2", "plan-2", "plan-1"],
        "coverage_order": ["Primary", "Secondary", "Primary", "Other"],
        "relationship_to_policyholder": ["Self", "Spouse", "Self", "Self"],
        "subscriber_id": ["S1", "S2", "S0", "S9"], "effective_date": [d(2024, 1, 1), d(2024, 1, 1), d(2019, 1, 1),
                                                                      d(2024, 1, 1)]})
    plans = pl.DataFrame({"id": ["plan-1", "plan-2", "plan-unused"], "payer_id": ["pay-1", "pay-2", "pay-1"],
                          "plan_name": ["Gold", "Basic", "Old"], "group_number": ["G1", "G2", "G3"]})
    referrals = pl.DataFrame({"id": ["ref-1", "ref-2"], "patient_id": ["p1", "p1"],
                              "referral_source_id": ["src-m", "src-d"], "referred_on": [d(2020, 1, 1), d(2023, 1, 1)]})
    sources = pl.DataFrame({"id": ["src-m", "src-d"], "type": ["Marketing", "Doctor"]})
    staged = {"patient": pl.Series(["p1", "p2"]), "payer": pl.Series(["pay-1", "pay-2"]),
              "insurance_plan": plans["id"], "referral_source": sources["id"]}
    frames = {"referral_source": sources}
    for name, frame in (("patient_policy", policies), ("insurance_plan", plans), ("patient_referral", referrals)):
        frames[name] = run_checks(frame, name, code_checks(name, FMAP.objects[name], frame, staged)).clean
    columns, outcomes = merge_into("patient", pl.Series(["p1", "p2"]), FMAP, frames)
    p1 = columns.row(0, named=True)
    assert (p1["smig_primarysubscriberid"], p1["smig_primaryrelationship"], p1["smig_primaryplanname"],
            p1["smig_PrimaryCarrierId"]) == ("S1", 727000000, "Gold", "pay-1")
    assert (p1["smig_secondarysubscriberid"], p1["smig_secondarygroupnumber"], p1["smig_SecondaryCarrierId"]) == \
        ("S2", "G2", "pay-2")
    assert p1["smig_referralsource"] == 727000001  # the newest referral, a doctor
    assert columns.row(1, named=True)["smig_primarysubscriberid"] is None
    assert sorted(outcomes["patient_policy"].merged_ids) == ["pol-1", "pol-2"]
    assert sorted(outcomes["patient_policy"].not_written_ids) == ["pol-old", "pol-other"]
    assert sorted(outcomes["insurance_plan"].merged_ids) == ["plan-1", "plan-2"]
    assert outcomes["insurance_plan"].not_written_ids.to_list() == ["plan-unused"]
    assert outcomes["patient_referral"].not_written_ids.to_list() == ["ref-1"]
