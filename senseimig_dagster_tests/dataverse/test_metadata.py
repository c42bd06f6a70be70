"""DataverseMetadata against the emulator, in-process through ``httpx.WSGITransport``. Waits go to an injected sleep
that records the requested wait and really sleeps at most a moment, so timing tests stay fast."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from senseimig_dagster.dataverse import DataverseClient, DataverseError, DataverseNotFound
from senseimig_dagster.dataverse.metadata import (
    DataverseMetadata,
    boolean_attribute,
    datetime_attribute,
    decimal_attribute,
    integer_attribute,
    memo_attribute,
    money_attribute,
    picklist_attribute,
    string_attribute,
)
from senseimig_dagster.sandbox.dataverse_emulator import Catalog, DataverseEmulator, RecordStore

ENV = "http://dv.test"
SOLUTION = "senseimig"


class Sleeps(list):
    """Records each wait; really sleeps up to ``cap`` seconds so server-side delays can pass."""

    def __init__(self, cap: float = 0.0):
        super().__init__()
        self.cap = cap

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        time.sleep(min(seconds, self.cap))


def build(tmp_path: Path, *, column_delay: float = 0.0, key_delay: float = 0.0) -> DataverseEmulator:
    catalog = Catalog.load(column_delay=column_delay, key_delay=key_delay)
    return DataverseEmulator(catalog, RecordStore(tmp_path / "dv.sqlite", catalog))


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[DataverseEmulator]:
    app = build(tmp_path)
    yield app
    app.store.close()


def connect(app: DataverseEmulator, sleeps: Sleeps) -> DataverseClient:
    return DataverseClient(ENV, None, transport=httpx.WSGITransport(app=app), sleep=sleeps)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(emulator: DataverseEmulator, sleeps: Sleeps) -> Iterator[DataverseClient]:
    with connect(emulator, sleeps) as c:
        yield c


@pytest.fixture
def meta(client: DataverseClient) -> DataverseMetadata:
    publisher = client.create("publishers", {"uniquename": SOLUTION, "friendlyname": "SenseiMig",
                                             "customizationprefix": "smig", "customizationoptionvalueprefix": 72700})
    client.create("solutions", {"uniquename": SOLUTION, "friendlyname": "SenseiMig", "version": "1.0.0.0",
                                "publisherid@odata.bind": f"/publishers({publisher})"})
    return DataverseMetadata(client)


def test_builders_match_the_documented_bodies() -> None:
    body = string_attribute("new_BankName", 100, "Bank Name")
    assert body == {
        "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata", "AttributeType": "String",
        "AttributeTypeName": {"Value": "StringType"}, "SchemaName": "new_BankName", "MaxLength": 100,
        "FormatName": {"Value": "Text"},
        "DisplayName": {"@odata.type": "Microsoft.Dynamics.CRM.Label", "LocalizedLabels": [
            {"@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel", "Label": "Bank Name", "LanguageCode": 1033}]},
        "RequiredLevel": {"Value": "None", "CanBeChanged": True,
                          "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings"}}
    assert datetime_attribute("smig_Born", "Born", date_only=True)["Format"] == "DateOnly"
    assert picklist_attribute("smig_Role", "Role", {727000000: "Dentist"})["OptionSet"]["Options"][0]["Value"] == 727000000
    with pytest.raises(ValueError):
        string_attribute("smig_Bad Name", 10, "Bad")
    with pytest.raises(ValueError):
        memo_attribute("smig_Notes", 10, "Notes", required="SystemRequired")


def test_create_and_find_a_table(meta: DataverseMetadata) -> None:
    assert meta.find_table("smig_eligibility") is None and meta.custom_tables() == []
    meta.create_table("smig_Eligibility", "Eligibility", "smig_Name", 200, solution=SOLUTION)
    table = meta.find_table("smig_eligibility")
    assert table is not None
    assert (table["EntitySetName"], table["PrimaryIdAttribute"], table["PrimaryNameAttribute"]) == (
        "smig_eligibilities", "smig_eligibilityid", "smig_name")
    assert table["ObjectTypeCode"] >= 10000 and table["IsCustomEntity"] is True
    assert meta.custom_tables() == ["smig_eligibility"]
    with pytest.raises(DataverseError) as err:  # duplicate SchemaName
        meta.create_table("smig_Eligibility", "Eligibility", "smig_Name", solution=SOLUTION)
    assert err.value.status == 400
    with pytest.raises(DataverseError) as err:  # no such solution
        meta.create_table("smig_Other", "Other", "smig_Name", solution="nosuchsolution")
    assert err.value.status == 400 and meta.find_table("smig_other") is None


def test_every_column_builder_creates_a_working_column(meta: DataverseMetadata, client: DataverseClient) -> None:
    meta.create_table("smig_PlannedProcedure", "Planned procedure", "smig_Name", solution=SOLUTION)
    table = "smig_plannedprocedure"
    bodies = [string_attribute("smig_CdtCode", 5, "CDT code", required="ApplicationRequired"),
              memo_attribute("smig_Notes", 4000, "Notes"),
              datetime_attribute("smig_CompletedDate", "Completed", date_only=True, behavior="DateOnly"),
              money_attribute("smig_Fee", "Fee"), decimal_attribute("smig_Coverage", "Coverage", max_value=100),
              integer_attribute("smig_Tooth", "Tooth", min_value=1, max_value=32),
              boolean_attribute("smig_IsHistorical", "Historical"),
              picklist_attribute("smig_Status", "Status", {727000000: "Proposed", 727000001: "Completed"})]
    for body in bodies:
        meta.create_column(table, body, SOLUTION)
    columns = meta.columns(table)
    assert columns["smig_cdtcode"]["MaxLength"] == 5
    assert columns["smig_cdtcode"]["RequiredLevel"]["Value"] == "ApplicationRequired"
    assert {columns[n]["AttributeType"] for n in ("smig_notes", "smig_fee", "smig_tooth", "smig_status")} == {
        "Memo", "Money", "Integer", "Picklist"}
    client.create("smig_plannedprocedures", {
        "smig_name": "p", "smig_cdtcode": "D1110", "smig_notes": "ok", "smig_completeddate": "2024-01-31",
        "smig_fee": 95.0, "smig_coverage": 80.5, "smig_tooth": 3, "smig_ishistorical": True,
        "smig_status": 727000001})
    with pytest.raises(DataverseError) as err:
        client.create("smig_plannedprocedures", {"smig_name": "p", "smig_cdtcode": "D11100"})
    assert err.value.code == "0x80044331"


def test_secure_column_puts_the_definition_back(meta: DataverseMetadata) -> None:
    meta.create_column("contact", string_attribute("smig_SsnLastFour", 4, "SSN last four"), SOLUTION)
    assert meta.columns("contact")["smig_ssnlastfour"]["IsSecured"] is False
    assert meta.secure_column("contact", "smig_ssnlastfour", SOLUTION) is True
    assert meta.column("contact", "smig_ssnlastfour")["IsSecured"] is True
    assert meta.secure_column("contact", "smig_ssnlastfour", SOLUTION) is False  # idempotent


def test_create_lookup_binds_through_the_schema_name(meta: DataverseMetadata, client: DataverseClient) -> None:
    meta.create_table("smig_Appointment", "Appointment", "smig_Name", solution=SOLUTION)
    meta.create_lookup("smig_appointment", "contact", "smig_PatientId", "smig_contact_smig_appointment", SOLUTION)
    assert meta.columns("smig_appointment")["smig_patientid"]["AttributeType"] == "Lookup"
    patient = client.create("contacts", {"lastname": "Ng"})
    client.create("smig_appointments", {"smig_name": "a", "smig_PatientId@odata.bind": f"/contacts({patient})"})
    with pytest.raises(DataverseError) as err:
        meta.create_lookup("smig_appointment", "nosuchtable", "smig_OtherId", "smig_x_smig_appointment", SOLUTION)
    assert isinstance(err.value, DataverseNotFound)


def test_key_is_waited_for_until_active_then_usable(tmp_path: Path) -> None:
    app, sleeps = build(tmp_path, key_delay=0.3), Sleeps(cap=0.1)
    with connect(app, sleeps) as client:
        meta = DataverseMetadata(client)
        meta.create_column("contact", string_attribute("smig_SourceSystemId", 100, "Source id"))
        meta.create_key("contact", "smig_sourcesystemid_key", ["smig_sourcesystemid"])
        assert [k["EntityKeyIndexStatus"] for k in meta.keys("contact")] == ["Pending"]
        with pytest.raises(DataverseError) as err:  # not usable while Pending
            client.upsert("contacts", {"smig_sourcesystemid": "P-1"}, {"lastname": "Ng"})
        assert err.value.status == 400
        key = meta.wait_for_key("contact", "smig_SourceSystemId_Key", timeout_s=5, poll_s=0.1)
        assert key["EntityKeyIndexStatus"] == "Active" and key["KeyAttributes"] == ["smig_sourcesystemid"]
        assert sleeps and all(s == 0.1 for s in sleeps)
        assert client.upsert("contacts", {"smig_sourcesystemid": "P-1"}, {"lastname": "Ng"}) == "created"
    app.store.close()


def test_wait_for_key_raises_on_failed_missing_and_timeout(tmp_path: Path) -> None:
    app = build(tmp_path, key_delay=60)
    with connect(app, Sleeps(cap=0.01)) as client:
        meta = DataverseMetadata(client)
        meta.create_column("contact", string_attribute("smig_A", 10, "A"))
        meta.create_column("contact", string_attribute("smig_B", 10, "B"))
        meta.create_key("contact", "smig_a_key", ["smig_a"])
        meta.create_key("contact", "smig_b_key", ["smig_b"])
        with pytest.raises(DataverseError, match="still Pending after 0.05 s"):
            meta.wait_for_key("contact", "smig_a_key", timeout_s=0.05, poll_s=0.01)
        app.catalog.set_key_status("contact", "smig_b_key", "Failed")
        with pytest.raises(DataverseError, match="index Failed"):
            meta.wait_for_key("contact", "smig_b_key", timeout_s=5)
        with pytest.raises(DataverseError, match="not found"):
            meta.wait_for_key("contact", "smig_c_key", timeout_s=5)
    app.store.close()


def test_wait_for_column_probes_like_the_sdk(tmp_path: Path) -> None:
    app, sleeps = build(tmp_path, column_delay=0.3), Sleeps(cap=0.35)
    with connect(app, sleeps) as client:
        meta = DataverseMetadata(client)
        meta.create_column("contact", string_attribute("smig_Npi", 10, "NPI"))
        meta.wait_for_column("contacts", "smig_Npi", timeout_s=30)
        assert sleeps == [3.0]  # first probe at once refused (400), the second after the SDK's 3 s
        client.create("contacts", {"lastname": "Ng", "smig_npi": "1234567890"})
        with pytest.raises(DataverseError, match="not visible"):
            meta.wait_for_column("contacts", "smig_nosuchcolumn", timeout_s=0.2)
    app.store.close()


def test_metadata_404_is_retried_like_the_sdk(meta: DataverseMetadata, sleeps: Sleeps) -> None:
    with pytest.raises(DataverseNotFound):
        meta.column("contact", "smig_nosuchcolumn")
    assert sleeps == [0.4, 0.8, 1.6, 3.2]  # five attempts, 0.4 s doubling (Microsoft's Python SDK)


def test_find_record_and_publish(meta: DataverseMetadata) -> None:
    publisher = meta.find_record("publishers", f"uniquename eq '{SOLUTION}'", ["customizationprefix"])
    assert publisher is not None and publisher["customizationprefix"] == "smig"
    assert meta.find_record("solutions", "uniquename eq 'nosuchsolution'") is None
    meta.publish(["contact"])
    meta.publish()
