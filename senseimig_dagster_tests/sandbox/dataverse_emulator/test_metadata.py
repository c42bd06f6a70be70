"""Metadata: Microsoft's standard tables load as published; custom additions follow the metadata API's rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from senseimig_dagster.sandbox.dataverse_emulator import Catalog, DataverseError
from senseimig_dagster.sandbox.dataverse_emulator.metadata import plural

PACKAGED = Path(__file__).parents[3] / "senseimig_dagster/sandbox/dataverse_emulator/standard_tables.json"
ISSUE_TABLES = [
    "account", "contact", "annotation", "systemuser", "team", "businessunit", "organization", "phonecall",
    "email", "activityparty", "sdkmessagefilter", "sharepointsite", "sharepointdocumentlocation",
    "fieldsecurityprofile", "fieldpermission", "publisher", "solution",
]  # fmt: skip


@pytest.fixture
def catalog() -> Catalog:
    return Catalog.load()


@pytest.mark.parametrize("name", [*ISSUE_TABLES, "appointment"])
def test_every_table_the_issue_lists_is_loaded(catalog: Catalog, name: str) -> None:
    table = catalog.table(name)
    assert catalog.table_by_entity_set(table.entity_set) is table
    assert table.primary_id in table.columns


def test_max_lengths_match_microsofts_metadata_for_every_string_column(catalog: Catalog) -> None:
    raw = json.loads(PACKAGED.read_text("utf-8"))
    for name, table in raw.items():
        for col, meta in table["columns"].items():
            assert catalog.table(name).columns[col].max_length == meta["max_length"], (name, col)
    assert catalog.table("contact").columns["firstname"].max_length == 50
    assert catalog.table("account").columns["name"].max_length == 160
    assert catalog.table("appointment").columns["subject"].max_length == 200


def test_entity_sets_and_keys_are_microsofts(catalog: Catalog) -> None:
    assert catalog.table("activityparty").entity_set == "activityparties"
    assert catalog.table("phonecall").primary_id == "activityid"
    assert catalog.table_by_entity_set("Contacts") is None  # entity sets are case-sensitive


def test_polymorphic_lookups_have_one_navigation_property_per_target(catalog: Catalog) -> None:
    contact = catalog.table("contact")
    assert contact.lookups["parentcustomerid_account"].targets == ("account",)
    assert contact.lookups["parentcustomerid_contact"].targets == ("contact",)
    assert "parentcustomerid" not in contact.lookups
    assert catalog.table("annotation").lookups["objectid_contact"].attribute == "objectid"
    assert catalog.table("account").lookups["ownerid"].targets == ("systemuser", "team")


@pytest.mark.parametrize("table", ["appointment", "phonecall"])
def test_appointment_and_phonecall_navigation_properties_from_the_docs(catalog: Catalog, table: str) -> None:
    lookups = catalog.table(table).lookups
    assert lookups[f"regardingobjectid_contact_{table}"].targets == ("contact",)
    assert lookups[f"regardingobjectid_account_{table}"].attribute == "regardingobjectid"
    assert lookups[f"ownerid_{table}"].targets == ("systemuser", "team")
    assert "regardingobjectid" not in lookups and "ownerid" not in lookups


def test_create_and_update_validity(catalog: Catalog) -> None:
    contact = catalog.table("contact").columns
    assert not contact["createdon"].writable and not contact["modifiedby"].writable
    assert (
        contact["overriddencreatedon"].valid_for_create
        and not contact["overriddencreatedon"].valid_for_update
    )
    assert not contact["statecode"].valid_for_create and contact["statecode"].valid_for_update
    assert not catalog.table("appointment").columns["statecode"].valid_for_create
    assert catalog.table("contact").columns["gendercode"].options == (1, 2)


def test_custom_table_needs_the_prefix_and_gets_lowercase_names(catalog: Catalog) -> None:
    with pytest.raises(DataverseError) as err:
        catalog.add_custom_table("Treatment", primary_name_schema="smig_Name")
    assert err.value.status == 400
    with pytest.raises(DataverseError):
        catalog.add_custom_table("smig_Treatment", primary_name_schema="Name")
    table = catalog.add_custom_table("smig_TreatmentPlan", primary_name_schema="smig_Name")
    assert (table.logical_name, table.entity_set, table.primary_id) == (
        "smig_treatmentplan",
        "smig_treatmentplans",
        "smig_treatmentplanid",
    )
    assert catalog.table_by_entity_set("smig_treatmentplans") is table
    assert table.columns["smig_name"].max_length == 100
    assert not table.columns["createdon"].writable
    assert not table.columns["overriddencreatedon"].valid_for_update


def test_configured_prefix_is_enforced() -> None:
    catalog = Catalog.load(prefix="abc_")
    with pytest.raises(DataverseError):
        catalog.add_column("contact", "smig_SourceSystemId", "String", max_length=100)
    assert catalog.add_column("contact", "abc_SourceSystemId", "String", max_length=100).logical_name == (
        "abc_sourcesystemid"
    )


def test_duplicate_schema_names_are_rejected_whatever_the_case(catalog: Catalog) -> None:
    catalog.add_custom_table("smig_Appointment", primary_name_schema="smig_Name")
    with pytest.raises(DataverseError):
        catalog.add_custom_table("SMIG_appointment", primary_name_schema="smig_Name")
    catalog.add_column("contact", "smig_SourceSystemId", "String", max_length=100)
    with pytest.raises(DataverseError):
        catalog.add_column("contact", "smig_sourcesystemid", "String", max_length=100)
    catalog.add_lookup("smig_appointment", "smig_PatientId", "contact")
    with pytest.raises(DataverseError):
        catalog.add_lookup("smig_appointment", "smig_patientid", "contact")


def test_lookups_are_not_created_as_columns(catalog: Catalog) -> None:
    with pytest.raises(DataverseError):
        catalog.add_column("contact", "smig_PracticeId", "Lookup")


def test_custom_lookup_navigation_property_keeps_the_schema_name_case(catalog: Catalog) -> None:
    catalog.add_custom_table("smig_ClinicalNote", primary_name_schema="smig_Name")
    lookup = catalog.add_lookup("smig_clinicalnote", "smig_PatientId", "contact")
    table = catalog.table("smig_clinicalnote")
    assert lookup.navigation_property == "smig_PatientId"
    assert "smig_patientid" in table.columns and "smig_patientid" not in table.lookups
    over = catalog.add_lookup(
        "smig_clinicalnote", "smig_ProviderId", "contact", navigation_property="smig_provider"
    )
    assert over.navigation_property == "smig_provider"


def test_alternate_keys_start_pending_and_become_active(catalog: Catalog) -> None:
    catalog.add_column("contact", "smig_SourceSystemId", "String", max_length=100)
    key = catalog.add_alternate_key("contact", "smig_sourcesystemid_key", ["smig_sourcesystemid"])
    assert key.status == "Pending"
    assert catalog.set_key_status("contact", "smig_sourcesystemid_key", "Active").status == "Active"
    assert catalog.table("contact").keys[0].status == "Active"


def test_alternate_key_errors(catalog: Catalog) -> None:
    catalog.add_column("contact", "smig_SourceSystemId", "String", max_length=100)
    catalog.add_column("contact", "smig_Notes", "Memo", max_length=2000)
    catalog.add_alternate_key("contact", "smig_sourcesystemid_key", ["smig_sourcesystemid"])
    with pytest.raises(DataverseError) as err:
        catalog.add_alternate_key("contact", "smig_SourceSystemId_Key", ["emailaddress1"])
    assert err.value.code == "0x80060893"
    with pytest.raises(DataverseError) as err:
        catalog.add_alternate_key("contact", "smig_other_key", ["smig_sourcesystemid"])
    assert err.value.code == "0x80060894"
    with pytest.raises(DataverseError):  # Memo is not an allowed key column type
        catalog.add_alternate_key("contact", "smig_notes_key", ["smig_notes"])
    with pytest.raises(DataverseError):
        catalog.add_alternate_key("contact", "smig_missing_key", ["smig_nosuchcolumn"])


def test_at_most_ten_keys_per_table(catalog: Catalog) -> None:
    for i in range(11):
        catalog.add_column("account", f"smig_Code{i}", "String", max_length=20)
    for i in range(10):
        catalog.add_alternate_key("account", f"smig_code{i}_key", [f"smig_code{i}"])
    with pytest.raises(DataverseError):
        catalog.add_alternate_key("account", "smig_code10_key", ["smig_code10"])


def test_catalogs_are_independent() -> None:
    first, second = Catalog.load(), Catalog.load()
    first.add_column("contact", "smig_Npi", "String", max_length=10)
    assert "smig_npi" not in second.table("contact").columns


@pytest.mark.parametrize(
    ("name", "expected"),
    [("smig_treatmentplan", "smig_treatmentplans"), ("smig_perioreading", "smig_perioreadings"),
     ("smig_eligibility", "smig_eligibilities"), ("smig_claimstatus", "smig_claimstatuses")],
)  # fmt: skip
def test_entity_set_plural(name: str, expected: str) -> None:
    assert plural(name) == expected
