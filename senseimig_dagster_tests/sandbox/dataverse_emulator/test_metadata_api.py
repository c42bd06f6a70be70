"""The emulator's metadata API (table, column, key and relationship definitions through the Web API); each test
fails if the emulator were more lenient than Dataverse or forgot what it was told (persistence across a restart)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from senseimig_dagster.sandbox.dataverse_emulator import Catalog, DataverseEmulator, Limits, RecordStore
from senseimig_dagster.sandbox.dataverse_emulator.metadata_api import restore_custom_schema
from senseimig_dagster.sandbox.dataverse_emulator.server import build_emulator
from senseimig_dagster.sandbox.entra import EntraStandIn
from senseimig_dagster_tests.support.constants import EMULATOR_BASE as BASE

GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
SOLUTION = {"MSCRM.SolutionUniqueName": "senseimig"}


def label(text: str) -> dict:
    return {"@odata.type": "Microsoft.Dynamics.CRM.Label",
            "LocalizedLabels": [{"@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel", "Label": text,
                                 "LanguageCode": 1033}]}


def table_body(schema: str, primary: str = "smig_Name", **extra) -> dict:
    return {"@odata.type": "Microsoft.Dynamics.CRM.EntityMetadata", "SchemaName": schema,
            "DisplayName": label(schema), "DisplayCollectionName": label(schema), "OwnershipType": "UserOwned",
            "IsActivity": False, "HasActivities": False, "HasNotes": True,
            "Attributes": [{"@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata", "AttributeType": "String",
                            "AttributeTypeName": {"Value": "StringType"}, "SchemaName": primary, "IsPrimaryName": True,
                            "MaxLength": 200, "FormatName": {"Value": "Text"}, "DisplayName": label("Name"),
                            "RequiredLevel": {"Value": "None", "CanBeChanged": True}}], **extra}


def string_body(schema: str, max_length: int = 100) -> dict:
    return {"@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata", "AttributeType": "String",
            "AttributeTypeName": {"Value": "StringType"}, "SchemaName": schema, "MaxLength": max_length,
            "FormatName": {"Value": "Text"}, "DisplayName": label(schema), "RequiredLevel": {"Value": "None"}}


def lookup_body(schema: str, referencing: str, referenced: str, relationship: str) -> dict:
    return {"@odata.type": "Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata", "SchemaName": relationship,
            "ReferencedEntity": referenced, "ReferencedAttribute": f"{referenced}id", "ReferencingEntity": referencing,
            "Lookup": {"@odata.type": "Microsoft.Dynamics.CRM.LookupAttributeMetadata", "AttributeType": "Lookup",
                       "AttributeTypeName": {"Value": "LookupType"}, "SchemaName": schema, "DisplayName": label(schema),
                       "RequiredLevel": {"Value": "None"}}}


def make_emulator(db: Path, *, column_delay: float = 0.0, key_delay: float = 0.0) -> DataverseEmulator:
    catalog = Catalog.load(column_delay=column_delay, key_delay=key_delay)
    store = RecordStore(db, catalog)
    restore_custom_schema(catalog, store)
    return DataverseEmulator(catalog, store)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[DataverseEmulator]:
    app = make_emulator(tmp_path / "dv.sqlite")
    yield app
    app.store.close()


@pytest.fixture
def solution(client: httpx.Client) -> str:
    return make_solution(client)


def make_solution(client: httpx.Client) -> str:
    """Publisher ``smig`` (option-value prefix 72700) and solution ``senseimig``, created as ordinary records."""
    r = client.post("/publishers", json={"uniquename": "senseimig", "friendlyname": "SenseiMig",
                                         "customizationprefix": "smig", "customizationoptionvalueprefix": 72700})
    assert r.status_code == 204, r.text
    publisher = re.search(rf"\(({GUID})\)", r.headers["odata-entityid"])[1]
    r = client.post("/solutions", json={"uniquename": "senseimig", "friendlyname": "SenseiMig", "version": "1.0.0.0",
                                        "publisherid@odata.bind": f"/publishers({publisher})"})
    assert r.status_code == 204, r.text
    return "senseimig"


def error_of(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return body["error"]


def create_table(client: httpx.Client, schema: str = "smig_Treatment") -> httpx.Response:
    r = client.post("/EntityDefinitions", json=table_body(schema), headers=SOLUTION)
    assert r.status_code == 204, r.text
    return r


# -- tables -----------------------------------------------------------------------------------------------------
def test_create_table_is_204_with_entity_id_and_server_derived_names(client: httpx.Client, solution: str) -> None:
    r = create_table(client, "smig_Eligibility")
    assert r.content == b""
    metadata_id = re.fullmatch(rf"{BASE}/EntityDefinitions\(({GUID})\)", r.headers["odata-entityid"])[1]
    r = client.get("/EntityDefinitions(LogicalName='smig_eligibility')")
    assert r.status_code == 200
    body = r.json()
    assert body["MetadataId"] == metadata_id
    assert (body["LogicalName"], body["SchemaName"], body["EntitySetName"], body["PrimaryIdAttribute"],
            body["PrimaryNameAttribute"]) == ("smig_eligibility", "smig_Eligibility", "smig_eligibilities",
                                              "smig_eligibilityid", "smig_name")
    assert body["IsCustomEntity"] is True and body["OwnershipType"] == "UserOwned"
    assert body["ObjectTypeCode"] >= 10000
    assert client.get(f"/EntityDefinitions({metadata_id})").json()["LogicalName"] == "smig_eligibility"
    # the derived entity set is usable for records at once
    assert client.post("/smig_eligibilities", json={"smig_name": "x" * 200}).status_code == 204


def test_table_lookup_forms(client: httpx.Client, solution: str) -> None:
    r = client.get("/EntityDefinitions(LogicalName='smig_treatment')?$select=LogicalName,EntitySetName")
    assert error_of(r, 404)
    r = client.get("/EntityDefinitions?$filter=LogicalName eq 'smig_treatment'&$select=LogicalName,EntitySetName")
    assert r.status_code == 200 and r.json()["value"] == []
    create_table(client)
    r = client.get("/EntityDefinitions(LogicalName='smig_treatment')?$select=LogicalName,EntitySetName")
    assert set(r.json()) == {"@odata.context", "MetadataId", "LogicalName", "EntitySetName"}
    r = client.get("/EntityDefinitions?$filter=LogicalName eq 'smig_treatment'&$select=LogicalName,EntitySetName")
    assert [v["EntitySetName"] for v in r.json()["value"]] == ["smig_treatments"]
    r = client.get("/EntityDefinitions?$select=NoSuchProperty")
    assert error_of(r, 400)["code"] == "0x80060888"


def test_standard_tables_answer_from_the_catalog(client: httpx.Client) -> None:
    body = client.get("/EntityDefinitions(LogicalName='contact')").json()
    assert (body["EntitySetName"], body["PrimaryIdAttribute"], body["ObjectTypeCode"], body["IsCustomEntity"]) == (
        "contacts", "contactid", 2, False)
    attribute = client.get("/EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='firstname')").json()
    assert attribute["MaxLength"] == 50 and attribute["AttributeType"] == "String"


def test_table_needs_a_primary_name_attribute(client: httpx.Client, solution: str) -> None:
    body = table_body("smig_Note")
    body["Attributes"][0]["IsPrimaryName"] = False
    assert error_of(client.post("/EntityDefinitions", json=body, headers=SOLUTION), 400)
    assert client.get("/EntityDefinitions(LogicalName='smig_note')").status_code == 404


def test_prefix_comes_from_the_solutions_publisher(client: httpx.Client, solution: str) -> None:
    r = client.post("/EntityDefinitions", json=table_body("new_Treatment", "new_Name"), headers=SOLUTION)
    assert "smig_" in error_of(r, 400)["message"]
    r = client.post("/EntityDefinitions", json=table_body("smig_Treatment"),
                    headers={"MSCRM.SolutionUniqueName": "nosuchsolution"})
    assert error_of(r, 400)["code"] == "0x80040203"
    other = Catalog.load(prefix="abc_", column_delay=0)
    app = DataverseEmulator(other, RecordStore(":memory:", other))
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE) as plain:
        assert error_of(plain.post("/EntityDefinitions", json=table_body("smig_Treatment")), 400)
        assert plain.post("/EntityDefinitions", json=table_body("abc_Treatment", "abc_Name")).status_code == 204
    app.store.close()


def test_duplicate_schema_names_are_refused(client: httpx.Client, solution: str) -> None:
    create_table(client)
    assert error_of(client.post("/EntityDefinitions", json=table_body("smig_treatment"), headers=SOLUTION), 400)
    url = "/EntityDefinitions(LogicalName='smig_treatment')/Attributes"
    assert client.post(url, json=string_body("smig_Code"), headers=SOLUTION).status_code == 204
    assert error_of(client.post(url, json=string_body("smig_CODE"), headers=SOLUTION), 400)


@pytest.mark.parametrize(("prefix", "option_prefix"), [("s", 72700), ("mscrmx", 72700), ("smig_x", 72700),
                                                        ("smig", 9999), ("smig", 100000)])
def test_publisher_prefix_rules(client: httpx.Client, prefix: str, option_prefix: int) -> None:
    r = client.post("/publishers", json={"uniquename": "p", "friendlyname": "P", "customizationprefix": prefix,
                                         "customizationoptionvalueprefix": option_prefix})
    assert error_of(r, 400)
    assert client.get("/publishers?$select=uniquename").json()["value"] == []


def test_publish_is_a_no_op(client: httpx.Client) -> None:
    xml = "<importexportxml><entities><entity>contact</entity></entities></importexportxml>"
    assert client.post("/PublishXml", json={"ParameterXml": xml}).status_code == 204
    assert client.post("/PublishAllXml").status_code == 204
    assert error_of(client.get("/PublishAllXml"), 405)


# -- columns ----------------------------------------------------------------------------------------------------
COLUMN_BODIES = {
    "smig_Notes": {"@odata.type": "Microsoft.Dynamics.CRM.MemoAttributeMetadata", "AttributeType": "Memo",
                   "MaxLength": 5000, "Format": "TextArea"},
    "smig_PlannedOn": {"@odata.type": "Microsoft.Dynamics.CRM.DateTimeAttributeMetadata", "AttributeType": "DateTime",
                       "Format": "DateOnly", "DateTimeBehavior": {"Value": "DateOnly"}},
    "smig_Fee": {"@odata.type": "Microsoft.Dynamics.CRM.MoneyAttributeMetadata", "AttributeType": "Money",
                 "PrecisionSource": 2},
    "smig_Coverage": {"@odata.type": "Microsoft.Dynamics.CRM.DecimalAttributeMetadata", "AttributeType": "Decimal",
                      "MinValue": 0, "MaxValue": 100, "Precision": 2},
    "smig_Tooth": {"@odata.type": "Microsoft.Dynamics.CRM.IntegerAttributeMetadata", "AttributeType": "Integer",
                   "MinValue": 1, "MaxValue": 32, "Format": "None"},
    "smig_IsHistorical": {"@odata.type": "Microsoft.Dynamics.CRM.BooleanAttributeMetadata", "AttributeType": "Boolean",
                          "DefaultValue": False},
    "smig_Status": {"@odata.type": "Microsoft.Dynamics.CRM.PicklistAttributeMetadata", "AttributeType": "Picklist",
                    "OptionSet": {"@odata.type": "Microsoft.Dynamics.CRM.OptionSetMetadata", "IsGlobal": False,
                                  "OptionSetType": "Picklist",
                                  "Options": [{"Value": 727000000, "Label": label("Proposed")},
                                              {"Value": 727000001, "Label": label("Completed")}]}},
}


def test_every_column_type_is_created_and_enforced(client: httpx.Client, solution: str) -> None:
    create_table(client)
    url = "/EntityDefinitions(LogicalName='smig_treatment')/Attributes"
    for schema, body in COLUMN_BODIES.items():
        r = client.post(url, json={**body, "SchemaName": schema, "DisplayName": label(schema)}, headers=SOLUTION)
        assert r.status_code == 204, (schema, r.text)
        assert re.fullmatch(rf"{BASE}/EntityDefinitions\(LogicalName='smig_treatment'\)/Attributes\({GUID}\)",
                            r.headers["odata-entityid"])
    columns = {c["LogicalName"]: c for c in client.get(url).json()["value"]}
    assert columns["smig_notes"]["MaxLength"] == 5000 and columns["smig_notes"]["AttributeType"] == "Memo"
    assert columns["smig_tooth"]["MaxValue"] == 32 and columns["smig_status"]["AttributeType"] == "Picklist"
    assert all(columns[n]["IsSecured"] is False and columns[n]["RequiredLevel"]["Value"] == "None"
               for n in ("smig_fee", "smig_coverage", "smig_isHistorical".lower()))
    good = {"smig_name": "a", "smig_notes": "n" * 5000, "smig_plannedon": "2024-05-01", "smig_fee": 12.5,
            "smig_coverage": 80, "smig_tooth": 14, "smig_ishistorical": True, "smig_status": 727000001}
    assert client.post("/smig_treatments", json=good).status_code == 204
    for bad in ({"smig_notes": "n" * 5001}, {"smig_status": 3}, {"smig_tooth": 33}, {"smig_plannedon": "2024-05-01T00:00:00Z"}):
        assert error_of(client.post("/smig_treatments", json={"smig_name": "a", **bad}), 400)


def test_picklist_options_through_the_cast(client: httpx.Client, solution: str) -> None:
    create_table(client)
    url = "/EntityDefinitions(LogicalName='smig_treatment')/Attributes"
    body = {**COLUMN_BODIES["smig_Status"], "SchemaName": "smig_Status"}
    body["OptionSet"] = {**body["OptionSet"], "Options": [{"Label": label("Proposed")}, {"Label": label("Done")}]}
    assert client.post(url, json=body, headers=SOLUTION).status_code == 204
    r = client.get(f"{url}(LogicalName='smig_status')/Microsoft.Dynamics.CRM.PicklistAttributeMetadata"
                   "?$select=LogicalName&$expand=OptionSet")
    assert r.status_code == 200, r.text
    options = r.json()["OptionSet"]["Options"]
    # no Value given: the publisher's option-value prefix (72700) x 10000 onwards, as Dataverse numbers new options
    assert [(o["Value"], o["Label"]["LocalizedLabels"][0]["Label"]) for o in options] == [
        (727000000, "Proposed"), (727000001, "Done")]
    assert error_of(client.get(f"{url}(LogicalName='smig_status')?$expand=OptionSet"), 400)


def test_choice_columns_of_a_table_with_nested_expand_select(client: httpx.Client, solution: str) -> None:
    create_table(client)
    url = "/EntityDefinitions(LogicalName='smig_treatment')/Attributes"
    body = {**COLUMN_BODIES["smig_Status"], "SchemaName": "smig_Status"}
    assert client.post(url, json=body, headers=SOLUTION).status_code == 204
    # The collection cast with OptionSet($select=Options), as Microsoft's Python SDK reads choice labels.
    r = client.get(f"{url}/Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
                   params={"$select": "LogicalName", "$expand": "OptionSet($select=Options)"})
    assert r.status_code == 200, r.text
    [row] = r.json()["value"]
    assert row["LogicalName"] == "smig_status" and set(row["OptionSet"]) == {"MetadataId", "Options"}
    assert all({"Value", "Label", "IsManaged", "Description"} <= set(o) for o in row["OptionSet"]["Options"])
    for bad in ("OptionSet($select=Nope)", "OptionSet($select=Options", "OptionSet(Options)"):
        assert error_of(client.get(f"{url}/Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
                                   params={"$expand": bad}), 400)


def complex_types(definition: object) -> object:
    """A definition as the ``CreateEntities`` action takes it: ``Complex*Metadata`` types."""
    if isinstance(definition, list):
        return [complex_types(d) for d in definition]
    if not isinstance(definition, dict):
        return definition
    out = {k: complex_types(v) for k, v in definition.items()}
    kind = out.get("@odata.type", "")
    if kind.endswith("Metadata"):
        out["@odata.type"] = kind.replace("Microsoft.Dynamics.CRM.", "Microsoft.Dynamics.CRM.Complex")
    return out


def test_create_entities_action_creates_tables_with_their_columns(client: httpx.Client, solution: str) -> None:
    entity = table_body("smig_Visit")
    entity["Attributes"].append(string_body("smig_Room", 20))
    r = client.post("/CreateEntities", params={"SolutionUniqueName": solution},
                    json={"Entities": [complex_types(entity)]})
    assert r.status_code == 200, r.text
    [entity_id] = r.json()["EntityIds"]
    got = client.get(f"/EntityDefinitions({entity_id})", params={"$select": "LogicalName,EntitySetName"}).json()
    assert (got["LogicalName"], got["EntitySetName"]) == ("smig_visit", "smig_visits")
    assert client.post("/smig_visits", json={"smig_name": "V", "smig_room": "x" * 21}).status_code == 400
    assert error_of(client.post("/CreateEntities", json={"Entities": []}), 400)
    assert error_of(client.post("/CreateEntities", json={"Entities": [complex_types(table_body("smig_Visit"))]},
                                params={"SolutionUniqueName": solution}), 400)  # exists


def test_bulk_delete_runs_its_query_set_at_once(client: httpx.Client) -> None:
    ids = [re.search(rf"\(({GUID})\)", client.post("/accounts", json={"name": f"A{i}"}).headers["odata-entityid"])[1]
           for i in range(4)]
    query = {"@odata.type": "Microsoft.Dynamics.CRM.QueryExpression", "EntityName": "account",
             "ColumnSet": {"AllColumns": False, "Columns": []},
             "Criteria": {"FilterOperator": "And", "Conditions": [
                 {"AttributeName": "accountid", "Operator": "In",
                  "Values": [{"Value": i, "Type": "System.Guid"} for i in ids[:3]]}]}}
    r = client.post("/BulkDelete", json={"JobName": "x", "SendEmailNotification": False, "ToRecipients": [],
                                         "CCRecipients": [], "RecurrencePattern": "", "QuerySet": [query]})
    assert r.status_code == 200 and re.fullmatch(GUID, r.json()["JobId"]), r.text
    assert [client.get(f"/accounts({i})").status_code for i in ids] == [404, 404, 404, 200]
    everything = {**query, "Criteria": {"FilterOperator": "And", "Conditions": []}}
    assert error_of(client.post("/BulkDelete", json={"QuerySet": [everything]}), 400)
    assert client.get(f"/accounts({ids[3]})").status_code == 200


def test_a_new_column_reaches_data_calls_only_after_the_propagation_delay(tmp_path: Path) -> None:
    app = make_emulator(tmp_path / "dv.sqlite", column_delay=0.8)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE) as client:
        r = client.post("/EntityDefinitions(LogicalName='contact')/Attributes", json=string_body("smig_Npi", 10))
        assert r.status_code == 204
        created = time.time()
        # metadata knows it at once; data calls don't, yet
        assert client.get("/EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='smig_npi')").status_code == 200
        assert error_of(client.get("/contacts?$top=1&$select=smig_npi"), 400)["code"] == "0x80060888"
        assert error_of(client.post("/contacts", json={"lastname": "Ng", "smig_npi": "1"}), 400)
        time.sleep(max(0.0, created + 0.85 - time.time()))
        assert client.get("/contacts?$top=1&$select=smig_npi").status_code == 200
        assert client.post("/contacts", json={"lastname": "Ng", "smig_npi": "1"}).status_code == 204
    app.store.close()


def test_attribute_updates_are_put_only_and_set_is_secured(client: httpx.Client, solution: str) -> None:
    url = "/EntityDefinitions(LogicalName='contact')/Attributes"
    assert client.post(url, json=string_body("smig_SsnLastFour", 4), headers=SOLUTION).status_code == 204
    one = f"{url}(LogicalName='smig_ssnlastfour')"
    definition = client.get(one).json()
    assert definition["IsSecured"] is False and definition["CanBeSecuredForRead"] is True
    assert error_of(client.patch(one, json={"IsSecured": True}), 405)
    assert client.get(one).json()["IsSecured"] is False
    definition.pop("@odata.context")
    r = client.put(one, json={**definition, "IsSecured": True}, headers={**SOLUTION, "MSCRM.MergeLabels": "true"})
    assert r.status_code == 204 and r.headers["odata-entityid"].endswith("/Attributes(LogicalName='smig_ssnlastfour')")
    assert client.get(one).json()["IsSecured"] is True
    # column-secured columns can't be key columns (Microsoft Learn: "Define alternate keys to reference rows")
    r = client.post("/EntityDefinitions(LogicalName='contact')/Keys",
                    json={"SchemaName": "smig_ssn_key", "KeyAttributes": ["smig_ssnlastfour"]}, headers=SOLUTION)
    assert error_of(r, 400)
    assert error_of(client.put(f"{url}(LogicalName='contactid')", json={"IsSecured": True}), 400)


# -- lookups ----------------------------------------------------------------------------------------------------
def test_relationship_creates_a_case_sensitive_lookup(client: httpx.Client, solution: str) -> None:
    create_table(client, "smig_Appointment")
    r = client.post("/RelationshipDefinitions",
                    json=lookup_body("smig_PatientId", "smig_appointment", "contact", "smig_contact_smig_appointment"),
                    headers=SOLUTION)
    assert r.status_code == 204, r.text
    rel_id = re.fullmatch(rf"{BASE}/RelationshipDefinitions\(({GUID})\)", r.headers["odata-entityid"])[1]
    rel = client.get("/RelationshipDefinitions(SchemaName='smig_contact_smig_appointment')").json()
    assert rel["MetadataId"] == rel_id and rel["ReferencingEntityNavigationPropertyName"] == "smig_PatientId"
    contact = re.search(rf"\(({GUID})\)", client.post("/contacts", json={"lastname": "Ng"}).headers["odata-entityid"])[1]
    ok = client.post("/smig_appointments", json={"smig_name": "a", "smig_PatientId@odata.bind": f"/contacts({contact})"})
    assert ok.status_code == 204
    wrong_case = client.post("/smig_appointments",
                             json={"smig_name": "a", "smig_patientid@odata.bind": f"/contacts({contact})"})
    assert error_of(wrong_case, 400)
    again = client.post("/RelationshipDefinitions", headers=SOLUTION,
                        json=lookup_body("smig_Patient2Id", "smig_appointment", "contact", "smig_contact_smig_appointment"))
    assert error_of(again, 400)
    assert client.get("/EntityDefinitions(LogicalName='smig_appointment')/Attributes(LogicalName='smig_patientid')"
                      ).json()["Targets"] == ["contact"]


# -- keys -------------------------------------------------------------------------------------------------------
def add_source_key(client: httpx.Client) -> httpx.Response:
    assert client.post("/EntityDefinitions(LogicalName='contact')/Attributes", json=string_body("smig_SourceId"),
                       headers=SOLUTION).status_code == 204
    return client.post("/EntityDefinitions(LogicalName='contact')/Keys", headers=SOLUTION,
                       json={"SchemaName": "smig_sourceid_key", "DisplayName": label("Source id"),
                             "KeyAttributes": ["smig_sourceid"]})


def test_key_index_goes_pending_inprogress_active_and_refuses_use_until_active(tmp_path: Path) -> None:
    app = make_emulator(tmp_path / "dv.sqlite", key_delay=1.2)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE) as client:
        make_solution(client)
        r = add_source_key(client)
        created = time.time()
        assert r.status_code == 204
        assert re.fullmatch(rf"{BASE}/EntityDefinitions\({GUID}\)/Keys\({GUID}\)", r.headers["odata-entityid"])
        keys = client.get("/EntityDefinitions(LogicalName='contact')/Keys").json()["value"]
        assert [(k["SchemaName"], k["KeyAttributes"], k["EntityKeyIndexStatus"]) for k in keys] == [
            ("smig_sourceid_key", ["smig_sourceid"], "Pending")]
        upsert = client.patch("/contacts(smig_sourceid='A1')", json={"lastname": "Ng"})
        assert "not active" in error_of(upsert, 400)["message"]
        assert error_of(client.get("/contacts(smig_sourceid='A1')"), 400)
        time.sleep(max(0.0, created + 0.7 - time.time()))  # InProgress from 0.6 s, Active from 1.2 s
        status = client.get("/EntityDefinitions(LogicalName='contact')/Keys").json()["value"][0]["EntityKeyIndexStatus"]
        assert status == "InProgress"
        assert error_of(client.patch("/contacts(smig_sourceid='A1')", json={"lastname": "Ng"}), 400)
        time.sleep(max(0.0, created + 1.25 - time.time()))
        keys = client.get("/EntityDefinitions(LogicalName='contact')/Keys").json()["value"]
        assert keys[0]["EntityKeyIndexStatus"] == "Active"
        assert client.patch("/contacts(smig_sourceid='A1')", json={"lastname": "Ng"}).status_code == 204
        assert client.get("/contacts(smig_sourceid='A1')").json()["lastname"] == "Ng"
        key_url = re.sub(r"^.*/EntityDefinitions", "/EntityDefinitions", r.headers["odata-entityid"])
        assert client.get(key_url).json()["EntityKeyIndexStatus"] == "Active"
    app.store.close()


def test_key_errors(client: httpx.Client, solution: str) -> None:
    assert add_source_key(client).status_code == 204
    keys = "/EntityDefinitions(LogicalName='contact')/Keys"
    same_name = client.post(keys, json={"SchemaName": "smig_SourceId_Key", "KeyAttributes": ["emailaddress1"]},
                            headers=SOLUTION)
    assert error_of(same_name, 400)["code"] == "0x80060893"
    same_columns = client.post(keys, json={"SchemaName": "smig_other_key", "KeyAttributes": ["smig_sourceid"]},
                               headers=SOLUTION)
    assert error_of(same_columns, 400)["code"] == "0x80060894"
    assert error_of(client.patch(keys, json={}), 405)


# -- persistence ------------------------------------------------------------------------------------------------
def test_custom_schema_survives_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "dv.sqlite"
    first = make_emulator(db)
    with httpx.Client(transport=httpx.WSGITransport(app=first), base_url=BASE) as client:
        make_solution(client)
        create_table(client)
        assert client.post("/EntityDefinitions(LogicalName='smig_treatment')/Attributes",
                           json=string_body("smig_Code", 20), headers=SOLUTION).status_code == 204
        assert client.post("/RelationshipDefinitions", headers=SOLUTION, json=lookup_body(
            "smig_PatientId", "smig_treatment", "contact", "smig_contact_smig_treatment")).status_code == 204
        assert add_source_key(client).status_code == 204
        one = "/EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='smig_sourceid')"
        assert client.put(one, json={**client.get(one).json(), "IsSecured": False}).status_code == 204
        code_url = "/EntityDefinitions(LogicalName='smig_treatment')/Attributes(LogicalName='smig_code')"
        assert client.put(code_url, json={"IsSecured": True}).status_code == 204
        assert client.patch("/contacts(smig_sourceid='A1')", json={"lastname": "Ng"}).status_code == 204
        before = client.get("/EntityDefinitions(LogicalName='smig_treatment')").json()
    first.store.close()

    second = make_emulator(db)
    with httpx.Client(transport=httpx.WSGITransport(app=second), base_url=BASE) as client:
        assert client.get("/EntityDefinitions(LogicalName='smig_treatment')").json() == before
        code = client.get("/EntityDefinitions(LogicalName='smig_treatment')/Attributes(LogicalName='smig_code')")
        assert code.json()["MaxLength"] == 20 and code.json()["IsSecured"] is True
        keys = client.get("/EntityDefinitions(LogicalName='contact')/Keys").json()["value"]
        assert [(k["SchemaName"], k["EntityKeyIndexStatus"]) for k in keys] == [("smig_sourceid_key", "Active")]
        assert client.get("/contacts(smig_sourceid='A1')").json()["lastname"] == "Ng"
        contact = client.get("/contacts(smig_sourceid='A1')").json()["contactid"]
        r = client.post("/smig_treatments", json={"smig_name": "t", "smig_code": "C1",
                                                  "smig_PatientId@odata.bind": f"/contacts({contact})"})
        assert r.status_code == 204, r.text
        # duplicate names are still refused after the restart
        assert error_of(client.post("/EntityDefinitions", json=table_body("smig_Treatment"), headers=SOLUTION), 400)
    second.store.close()


def test_the_servers_emulator_restores_custom_schema(tmp_path: Path) -> None:
    db = tmp_path / "dv.sqlite"
    first = make_emulator(db)
    with httpx.Client(transport=httpx.WSGITransport(app=first), base_url=BASE) as client:
        assert client.post("/EntityDefinitions", json=table_body("smig_Claim")).status_code == 204
    first.store.close()
    served = build_emulator(db, limits=Limits(enabled=False), entra=EntraStandIn())
    assert served.catalog.table_by_entity_set("smig_claims").primary_name == "smig_name"
    served.catalog.add_column("smig_claim", "smig_Code", "String", max_length=5)  # journaled too
    assert served.store.schema_changes()[-1]["op"] == "add_column"
    served.store.close()
