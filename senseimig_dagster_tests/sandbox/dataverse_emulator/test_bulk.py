"""Bulk messages of the emulator (CreateMultiple, UpdateMultiple, UpsertMultiple: Microsoft Learn's "Use bulk
operation messages"), in-process through ``httpx.WSGITransport``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from senseimig_dagster.sandbox.dataverse_emulator import Catalog
from senseimig_dagster.sandbox.dataverse_emulator.app import DataverseEmulator
from senseimig_dagster.sandbox.dataverse_emulator.limits import Limits, ServiceProtection
from senseimig_dagster.sandbox.dataverse_emulator.store import RecordStore
from senseimig_dagster_tests.support.constants import EMULATOR_BASE as BASE

CONTACT = "Microsoft.Dynamics.CRM.contact"
FILTER_QUERY = ("/sdkmessagefilters?$select=sdkmessagefilterid&$filter=sdkmessageid/name eq '{message}' "
                "and primaryobjecttypecode eq '{table}'")


def make_app(tmp_path: Path, **kwargs) -> DataverseEmulator:
    catalog = Catalog.load()
    catalog.add_column("contact", "smig_SourceId", "String", max_length=100)
    catalog.add_alternate_key("contact", "smig_sourceid_key", ["smig_sourceid"])
    catalog.set_key_status("contact", "smig_sourceid_key", "Active")
    return DataverseEmulator(catalog, RecordStore(tmp_path / "dv.sqlite", catalog), **kwargs)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[DataverseEmulator]:
    app = make_app(tmp_path)
    yield app
    app.store.close()


def client_for(app: DataverseEmulator) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE)


@pytest.fixture
def client(emulator: DataverseEmulator) -> Iterator[httpx.Client]:
    with client_for(emulator) as c:
        yield c


def bulk(client: httpx.Client, message: str, targets: list[dict], entity_set: str = "contacts") -> httpx.Response:
    return client.post(f"/{entity_set}/Microsoft.Dynamics.CRM.{message}", json={"Targets": targets})


def contact(**values) -> dict:
    return {"@odata.type": CONTACT, **values}


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


def count(client: httpx.Client) -> int:
    return int(client.get("/contacts/$count").text)


# -- CreateMultiple -----------------------------------------------------------------------------------------
def test_create_multiple_returns_ids_in_request_order(client: httpx.Client) -> None:
    given = str(uuid.uuid4())
    response = bulk(client, "CreateMultiple", [contact(lastname="A"), contact(lastname="B", contactid=given),
                                               contact(lastname="C")])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["@odata.context"].endswith("$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse")
    assert len(body["Ids"]) == 3 and body["Ids"][1] == given
    assert [client.get(f"/contacts({i})").json()["lastname"] for i in body["Ids"]] == ["A", "B", "C"]


@pytest.mark.parametrize("message", ["CreateMultiple", "UpdateMultiple", "UpsertMultiple"])
@pytest.mark.parametrize("odata_type", [None, "Microsoft.Dynamics.CRM.account"])
def test_every_target_needs_the_tables_odata_type(client: httpx.Client, message: str, odata_type: str | None) -> None:
    second = {"lastname": "B"} if odata_type is None else {"@odata.type": odata_type, "lastname": "B"}
    error = error_of(bulk(client, message, [contact(lastname="A"), second]), 400)
    assert "@odata.type" in error["message"]
    assert count(client) == 0


def test_targets_must_be_a_non_empty_array(client: httpx.Client) -> None:
    error_of(client.post("/contacts/Microsoft.Dynamics.CRM.CreateMultiple", json={}), 400)
    error_of(bulk(client, "CreateMultiple", []), 400)


def test_create_multiple_is_all_or_nothing(client: httpx.Client) -> None:
    targets = [contact(lastname=f"N{i}") for i in range(5)]
    targets[2]["lastname"] = "x" * 51  # contact.lastname MaxLength 50
    error = error_of(bulk(client, "CreateMultiple", targets), 400)
    assert error["code"] == "0x80044331" and "lastname" in error["message"]
    assert count(client) == 0


# -- UpdateMultiple -----------------------------------------------------------------------------------------
def test_update_multiple_updates_by_primary_key_and_answers_204(client: httpx.Client) -> None:
    ids = bulk(client, "CreateMultiple", [contact(lastname="A"), contact(lastname="B")]).json()["Ids"]
    response = bulk(client, "UpdateMultiple", [contact(contactid=ids[0], firstname="X"),
                                               contact(contactid=ids[1], firstname="Y")])
    assert response.status_code == 204 and response.content == b""
    assert [client.get(f"/contacts({i})").json()["firstname"] for i in ids] == ["X", "Y"]
    assert client.get(f"/contacts({ids[0]})").json()["lastname"] == "A"  # unchanged columns stay


def test_update_multiple_needs_the_primary_key_and_rolls_back(client: httpx.Client) -> None:
    rid = bulk(client, "CreateMultiple", [contact(lastname="A")]).json()["Ids"][0]
    error = error_of(bulk(client, "UpdateMultiple", [contact(contactid=rid, lastname="Z"), contact(lastname="Q")]),
                     400)
    assert "contactid" in error["message"]
    assert client.get(f"/contacts({rid})").json()["lastname"] == "A"


def test_update_multiple_of_a_missing_record_is_404_and_writes_nothing(client: httpx.Client) -> None:
    rid = bulk(client, "CreateMultiple", [contact(lastname="A")]).json()["Ids"][0]
    missing = str(uuid.uuid4())
    response = bulk(client, "UpdateMultiple", [contact(contactid=rid, lastname="Z"), contact(contactid=missing)])
    assert error_of(response, 404)["message"] == f"contact With Id = {missing} Does Not Exist"
    assert client.get(f"/contacts({rid})").json()["lastname"] == "A"


# -- UpsertMultiple -----------------------------------------------------------------------------------------
def test_upsert_multiple_by_alternate_key_creates_then_updates(client: httpx.Client) -> None:
    targets = [contact(lastname="A", **{"@odata.id": "contacts(smig_sourceid='0001')"}),
               contact(lastname="B", **{"@odata.id": "contacts(smig_sourceid='0002')"})]
    response = bulk(client, "UpsertMultiple", targets)
    assert response.status_code == 204 and response.content == b""
    first = client.get("/contacts(smig_sourceid='0001')").json()
    assert first["lastname"] == "A" and first["smig_sourceid"] == "0001"
    targets[0]["lastname"] = "A2"
    assert bulk(client, "UpsertMultiple", targets).status_code == 204
    again = client.get("/contacts(smig_sourceid='0001')").json()
    assert again["lastname"] == "A2" and again["contactid"] == first["contactid"]
    assert count(client) == 2


def test_upsert_multiple_by_primary_key_or_none(client: httpx.Client) -> None:
    rid = bulk(client, "CreateMultiple", [contact(lastname="A")]).json()["Ids"][0]
    new_id = str(uuid.uuid4())
    response = bulk(client, "UpsertMultiple", [contact(contactid=rid, lastname="A2"),
                                               contact(contactid=new_id, lastname="New"),
                                               contact(lastname="NoKey")])
    assert response.status_code == 204
    assert client.get(f"/contacts({rid})").json()["lastname"] == "A2"
    assert client.get(f"/contacts({new_id})").json()["lastname"] == "New"
    assert count(client) == 3


def test_upsert_multiple_is_all_or_nothing(client: httpx.Client) -> None:
    targets = [contact(lastname=f"N{i}", **{"@odata.id": f"contacts(smig_sourceid='{i}')"}) for i in range(5)]
    targets[2]["firstname"] = "x" * 51
    assert error_of(bulk(client, "UpsertMultiple", targets), 400)["code"] == "0x80044331"
    assert count(client) == 0


def test_upsert_multiple_with_an_undefined_key_is_400(client: httpx.Client) -> None:
    response = bulk(client, "UpsertMultiple", [contact(lastname="A", **{"@odata.id": "contacts(lastname='A')"})])
    assert error_of(response, 400)["code"] == "0x80060890"


# -- DeleteMultiple, methods, unknown tables ----------------------------------------------------------------
def test_delete_multiple_on_a_standard_table_is_not_implemented(client: httpx.Client) -> None:
    rid = bulk(client, "CreateMultiple", [contact(lastname="A")]).json()["Ids"][0]
    error = error_of(bulk(client, "DeleteMultiple", [contact(contactid=rid)]), 400)
    assert error["message"] == "DeleteMultiple has not yet been implemented."
    assert count(client) == 1


def test_bulk_path_with_get_is_405_and_unknown_set_404(client: httpx.Client) -> None:
    error_of(client.get("/contacts/Microsoft.Dynamics.CRM.CreateMultiple"), 405)
    error_of(bulk(client, "CreateMultiple", [contact(lastname="A")], entity_set="nopes"), 404)


# -- per-table support and sdkmessagefilters ----------------------------------------------------------------
def test_sdkmessagefilters_shows_support_per_table(tmp_path: Path) -> None:
    app = make_app(tmp_path, bulk_unsupported={"contact"})
    with client_for(app) as client:
        def rows(message: str, table: str) -> list[dict]:
            response = client.get(FILTER_QUERY.format(message=message, table=table))
            assert response.status_code == 200, response.text
            return response.json()["value"]

        assert rows("CreateMultiple", "contact") == []
        assert rows("UpsertMultiple", "contact") == []
        account = rows("CreateMultiple", "account")
        assert len(account) == 1 and uuid.UUID(account[0]["sdkmessagefilterid"])
        assert rows("CreateMultiple", "account") == account  # stable id
        assert rows("DeleteMultiple", "account") == []  # elastic tables only
        assert rows("CreateMultiple", "nosuchtable") == []
    app.store.close()


def test_sdkmessagefilters_lists_contact_when_supported(client: httpx.Client) -> None:
    assert len(client.get(FILTER_QUERY.format(message="CreateMultiple", table="contact")).json()["value"]) == 1


@pytest.mark.parametrize("message", ["CreateMultiple", "UpdateMultiple", "UpsertMultiple"])
def test_unsupported_table_refuses_bulk_messages(tmp_path: Path, message: str) -> None:
    app = make_app(tmp_path, bulk_unsupported={"contact"})
    with client_for(app) as client:
        error = error_of(bulk(client, message, [contact(lastname="A")]), 400)
        assert error["message"] == f"The '{message}' method does not support entities of type 'contact'."
        assert count(client) == 0
        # other tables and single-record writes still work
        response = bulk(client, "CreateMultiple", [{"@odata.type": "Microsoft.Dynamics.CRM.account", "name": "Co"}],
                        entity_set="accounts")
        assert response.status_code == 200
        assert client.post("/contacts", json={"lastname": "A"}).status_code == 204
    app.store.close()


# -- service protection -------------------------------------------------------------------------------------
def test_bulk_request_is_admitted_once_with_its_targets_as_records(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    protection = ServiceProtection(Limits(enabled=False))
    seen: list[int] = []
    admit = protection.admit

    def spy(user: str, server: int = 0, records: int = 1):
        seen.append(records)
        return admit(user, server, records=records)

    monkeypatch.setattr(protection, "admit", spy)
    app = make_app(tmp_path, protection=protection)
    with client_for(app) as client:
        assert bulk(client, "CreateMultiple", [contact(lastname=f"N{i}") for i in range(7)]).status_code == 200
        assert client.post("/contacts", json={"lastname": "single"}).status_code == 204
    assert seen == [7, 1]
    app.store.close()


def test_bulk_message_inside_a_batch_change_set_runs(client: httpx.Client) -> None:
    # A bulk call also works as a $batch inner request (the $batch counts it as one inner request).
    boundary, inner = "batch_B1", '{"Targets":[{"@odata.type":"Microsoft.Dynamics.CRM.contact","lastname":"A"}]}'
    body = (f"--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
            f"POST /api/data/v9.2/contacts/Microsoft.Dynamics.CRM.CreateMultiple HTTP/1.1\r\n"
            f"Content-Type: application/json\r\n\r\n{inner}\r\n--{boundary}--\r\n")
    response = client.post("/$batch", content=body.encode(),
                           headers={"Content-Type": f"multipart/mixed; boundary={boundary}"})
    assert response.status_code == 200, response.text
    assert "CreateMultipleResponse" in response.text
    assert count(client) == 1
