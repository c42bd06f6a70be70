"""Write validation: each test fails if the emulator accepts something Dataverse refuses."""

from __future__ import annotations

from typing import Any

import pytest

from senseimig_dagster.sandbox.dataverse_emulator import Catalog, DataverseError, validate_write

GUID = "5531d753-95af-e711-a94e-000d3a11e605"


@pytest.fixture
def catalog() -> Catalog:
    catalog = Catalog.load()
    catalog.add_column("contact", "smig_SourceSystemId", "String", max_length=100)
    catalog.add_custom_table("smig_ClinicalNote", primary_name_schema="smig_Name")
    catalog.add_lookup("smig_clinicalnote", "smig_PatientId", "contact")
    return catalog


def refused(catalog: Catalog, table: str, body: dict[str, Any], operation: str = "create") -> DataverseError:
    with pytest.raises(DataverseError) as err:
        validate_write(catalog, table, body, operation=operation)  # type: ignore[arg-type]
    assert err.value.to_json() == {"error": {"code": err.value.code, "message": err.value.message}}
    return err.value


def test_a_valid_patient_contact_is_normalized(catalog: Catalog) -> None:
    body = {
        "@odata.type": "Microsoft.Dynamics.CRM.contact",
        "firstname": "Zoë",
        "lastname": "O'Brien",
        "gendercode": 2,
        "birthdate": "1980-02-29",
        "donotemail": False,
        "overriddencreatedon": "2019-05-01T10:00:00Z",
        "smig_sourcesystemid": "P-1",
        "parentcustomerid_account@odata.bind": f"/accounts({GUID})",
        "ownerid@odata.bind": f"systemusers({GUID.upper()})",
    }
    record = validate_write(catalog, "contact", body, operation="create")
    assert record.values["lastname"] == "O'Brien" and "@odata.type" not in record.values
    assert record.binds["parentcustomerid_account"].id == GUID
    assert record.binds["ownerid"].entity_set == "systemusers" and record.binds["ownerid"].id == GUID
    assert record.lookup_attributes(catalog.table("contact"))["parentcustomerid"].table == "account"


def test_unknown_column_is_400(catalog: Catalog) -> None:
    err = refused(catalog, "contact", {"lastname": "X", "nickname2": "Y"})
    assert err.status == 400 and err.code == "0x80048d19"
    assert "The property 'nickname2' does not exist on type 'Microsoft.Dynamics.CRM.contact'" in err.message


def test_column_names_are_case_sensitive_logical_names(catalog: Catalog) -> None:
    assert "'LastName'" in refused(catalog, "contact", {"LastName": "X"}).message
    refused(catalog, "contact", {"smig_SourceSystemId": "X"})


def test_string_over_max_length_names_column_table_and_limit(catalog: Catalog) -> None:
    validate_write(catalog, "contact", {"firstname": "x" * 50}, operation="create")
    err = refused(catalog, "contact", {"firstname": "x" * 51})
    assert (err.status, err.code) == (400, "0x80044331")
    assert err.message == (
        "A validation error occurred.  The length of the 'firstname' attribute of the 'contact' entity "
        "exceeded the maximum allowed length of '50'."
    )
    assert "'160'" in refused(catalog, "account", {"name": "n" * 161}, "update").message
    assert "'100'" in refused(catalog, "contact", {"smig_sourcesystemid": "s" * 101}).message


@pytest.mark.parametrize("column", ["createdby", "createdon", "modifiedon", "modifiedby", "fullname"])
@pytest.mark.parametrize("operation", ["create", "update"])
def test_read_only_columns_are_refused(catalog: Catalog, column: str, operation: str) -> None:
    value = None if column.endswith("by") else ("2020-01-01T00:00:00Z" if column.endswith("on") else "X")
    assert refused(catalog, "contact", {column: value}, operation).status == 400


def test_read_only_lookup_cannot_be_bound(catalog: Catalog) -> None:
    refused(catalog, "contact", {"createdby@odata.bind": f"/systemusers({GUID})"})
    refused(catalog, "smig_clinicalnote", {"createdby@odata.bind": f"/systemusers({GUID})"})


def test_overriddencreatedon_is_create_only(catalog: Catalog) -> None:
    for table in ("contact", "annotation", "phonecall", "smig_clinicalnote"):
        body = {"overriddencreatedon": "2018-03-04T05:06:07Z"}
        validate_write(catalog, table, body, operation="create")
        assert "overriddencreatedon" in refused(catalog, table, body, "update").message


@pytest.mark.parametrize("table", ["contact", "appointment", "phonecall"])
def test_statecode_cannot_be_set_on_create(catalog: Catalog, table: str) -> None:
    refused(catalog, table, {"statecode": 1})
    validate_write(catalog, table, {"statecode": 1}, operation="update")


def test_picklist_value_must_be_an_option(catalog: Catalog) -> None:
    err = refused(catalog, "contact", {"gendercode": 3})
    assert (err.status, err.code) == (400, "0x8004431A")
    assert err.message.endswith("is outside the valid range. Accepted Values: 1,2")
    refused(catalog, "appointment", {"statuscode": 99}, "update")
    refused(catalog, "contact", {"statecode": 2}, "update")


@pytest.mark.parametrize(
    ("column", "value", "edm"),
    [
        ("numberofchildren", "2", "Edm.Int32"),
        ("numberofchildren", 2.5, "Edm.Int32"),
        ("numberofchildren", True, "Edm.Int32"),
        ("gendercode", "1", "Edm.Int32"),
        ("firstname", 5, "Edm.String"),
        ("donotemail", 1, "Edm.Boolean"),
        ("donotemail", "true", "Edm.Boolean"),
        ("creditlimit", "100.00", "Edm.Decimal"),
        ("birthdate", "1980-02-30", "Edm.Date"),
        ("birthdate", "1980-02-01T00:00:00Z", "Edm.Date"),
        ("lastonholdtime", "yesterday", "Edm.DateTimeOffset"),
        ("lastonholdtime", "2020-01-01", "Edm.DateTimeOffset"),
        ("address1_addressid", "not-a-guid", "Edm.Guid"),
    ],
)
def test_wrong_json_type_is_refused(catalog: Catalog, column: str, value: Any, edm: str) -> None:
    err = refused(catalog, "contact", {column: value})
    assert err.status == 400 and f"to the expected type '{edm}'" in err.message


def test_lookup_column_takes_only_null_without_bind(catalog: Catalog) -> None:
    refused(catalog, "contact", {"parentcustomerid": GUID}, "update")
    record = validate_write(catalog, "contact", {"parentcustomerid": None}, operation="update")
    assert record.values == {"parentcustomerid": None}
    cleared = validate_write(catalog, "account", {"parentaccountid@odata.bind": None}, operation="update")
    assert cleared.binds == {"parentaccountid": None}


def test_polymorphic_lookup_needs_the_suffixed_navigation_property(catalog: Catalog) -> None:
    err = refused(catalog, "contact", {"parentcustomerid@odata.bind": f"accounts({GUID})"})
    assert err.code == "0x80048d19"
    assert "An undeclared property 'parentcustomerid' which only has property annotations" in err.message
    refused(catalog, "annotation", {"objectid@odata.bind": f"/contacts({GUID})"})
    refused(catalog, "appointment", {"regardingobjectid@odata.bind": f"/contacts({GUID})"})
    validate_write(
        catalog, "annotation", {"objectid_contact@odata.bind": f"/contacts({GUID})"}, operation="create"
    )
    body = {"regardingobjectid_contact_phonecall@odata.bind": f"/contacts({GUID})"}
    validate_write(catalog, "phonecall", body, operation="create")


def test_custom_navigation_property_is_case_sensitive(catalog: Catalog) -> None:
    ok = validate_write(
        catalog, "smig_clinicalnote", {"smig_PatientId@odata.bind": f"/contacts({GUID})"}, operation="create"
    )
    assert ok.lookup_attributes(catalog.table("smig_clinicalnote")) == {
        "smig_patientid": ok.binds["smig_PatientId"]
    }
    refused(catalog, "smig_clinicalnote", {"smig_patientid@odata.bind": f"/contacts({GUID})"})
    refused(catalog, "smig_clinicalnote", {"smig_Patientid@odata.bind": f"/contacts({GUID})"})


def test_bind_target_must_be_a_target_table_of_the_property(catalog: Catalog) -> None:
    refused(catalog, "contact", {"parentcustomerid_account@odata.bind": f"/contacts({GUID})"})
    refused(catalog, "contact", {"parentcustomerid_account@odata.bind": f"/widgets({GUID})"})
    refused(catalog, "account", {"ownerid@odata.bind": f"/contacts({GUID})"})
    validate_write(catalog, "account", {"ownerid@odata.bind": f"/teams({GUID})"}, operation="update")


@pytest.mark.parametrize(
    "value",
    [GUID, f"/accounts{GUID}", f"/accounts({GUID}", "/accounts()", "/accounts(123)", 42, ["/accounts(x)"],
     "/accounts(accountnumber=)", "/accounts(accountnumber='A1',)", "/accounts(accountnumber='A1'x)"],
)  # fmt: skip
def test_malformed_bind_values_are_refused(catalog: Catalog, value: Any) -> None:
    assert refused(catalog, "account", {"parentaccountid@odata.bind": value}).status == 400


@pytest.mark.parametrize("prefix", ["/", "", "https://org.crm.dynamics.com/api/data/v9.2/"])
def test_bind_by_id_or_alternate_key_with_or_without_slash(catalog: Catalog, prefix: str) -> None:
    by_id = validate_write(
        catalog, "account", {"parentaccountid@odata.bind": f"{prefix}accounts({GUID})"}, operation="create"
    )
    assert (by_id.binds["parentaccountid"].entity_set, by_id.binds["parentaccountid"].id) == (
        "accounts",
        GUID,
    )
    by_key = validate_write(
        catalog, "account", {"parentaccountid@odata.bind": f"{prefix}accounts(accountnumber='O''Hare')"},
        operation="create",
    )  # fmt: skip
    assert by_key.binds["parentaccountid"].alternate_key == (("accountnumber", "O'Hare"),)
    assert by_key.binds["parentaccountid"].id is None


def test_multi_column_alternate_key_bind(catalog: Catalog) -> None:
    body = {"parentcustomerid_contact@odata.bind": "/contacts(firstname='Joe',emailaddress1='a@b.com')"}
    record = validate_write(catalog, "contact", body, operation="update")
    assert record.binds["parentcustomerid_contact"].alternate_key == (
        ("firstname", "Joe"),
        ("emailaddress1", "a@b.com"),
    )


def test_property_annotation_without_value_is_refused(catalog: Catalog) -> None:
    refused(catalog, "contact", {"ghost@OData.Community.Display.V1.FormattedValue": "x"})


def test_unknown_table_is_404(catalog: Catalog) -> None:
    assert refused(catalog, "smig_nosuchtable", {}).status == 404
