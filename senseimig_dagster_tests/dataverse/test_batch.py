"""``$batch`` of the Dataverse client: the multipart encoding, and round trips against the emulator over real HTTP
on 127.0.0.1 (change sets, ``$n`` references, continue-on-error, rollback, the 1000 cap)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from senseimig_dagster.dataverse import DataverseClient, DataverseError
from senseimig_dagster.dataverse.batch import MAX_REQUESTS, BatchRequest, BatchResponse, ChangeSet, decode, encode
from senseimig_dagster.sandbox.dataverse_emulator import Catalog, DataverseEmulator, RecordStore
from senseimig_dagster.sandbox.tls import serve_wsgi

LONG = "x" * 51  # contact.lastname allows 50


@pytest.fixture
def client(tmp_path: Path) -> Iterator[DataverseClient]:
    catalog = Catalog.load()
    store = RecordStore(tmp_path / "dv.sqlite", catalog)
    try:
        with serve_wsgi(DataverseEmulator(catalog, store)) as url, \
                DataverseClient(url, None, timeout=10, sleep=lambda s: None) as c:
            yield c
    finally:
        store.close()


def test_encoding_uses_crlf_content_ids_and_the_api_path() -> None:
    items = [BatchRequest("GET", "contacts?$select=lastname"),
             ChangeSet([BatchRequest("POST", "accounts", {"name": "A"}),
                        BatchRequest("PATCH", "$2", {"name": "B"})])]
    content_type, body = encode(items, "/api/data/v9.2/")
    text = body.decode()
    boundary = content_type.split('boundary="')[1].rstrip('"')
    assert content_type.startswith("multipart/mixed") and boundary.startswith("batch_")
    assert "\n" not in text.replace("\r\n", "")  # CRLF only
    assert "GET /api/data/v9.2/contacts?$select=lastname HTTP/1.1" in text
    assert "Content-ID: 2\r\n" in text and "Content-ID: 3\r\n" in text  # positions in the batch
    assert "PATCH $2 HTTP/1.1" in text
    assert 'Content-Type: application/json; type=entry\r\n\r\n{"name":"A"}' in text
    assert text.endswith(f"--{boundary}--\r\n")


@pytest.mark.parametrize("items, fragment", [
    ([], "at least one"),
    ([BatchRequest("POST", "accounts", {"name": "A"})] * (MAX_REQUESTS + 1), "at most 1000"),
    ([ChangeSet([BatchRequest("GET", "accounts")])], "GET"),
    ([BatchRequest("POST", "accounts", {}), ChangeSet([])], "change set needs"),
    ([BatchRequest("POST", "accounts", {}, content_id="1"), BatchRequest("POST", "accounts", {}, content_id="1")],
     "unique"),
])
def test_encoding_refuses_what_dataverse_refuses(items, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        encode(items, "/api/data/v9.2/")


def test_exactly_1000_requests_are_accepted_by_the_client_and_the_emulator(client: DataverseClient) -> None:
    items = [BatchRequest("POST", "accounts", {"name": f"A{i}"}) for i in range(MAX_REQUESTS)]
    result = client.batch(items)
    assert result.status == 200 and len(result.responses) == MAX_REQUESTS and result.ok
    assert client.count("accounts") == MAX_REQUESTS


def test_change_set_with_content_id_reference_and_per_part_results(client: DataverseClient) -> None:
    items = [ChangeSet([BatchRequest("POST", "accounts", {"name": "Practice"}, content_id="a"),
                        BatchRequest("POST", "contacts", {"lastname": "Doe",
                                                          "parentcustomerid_account@odata.bind": "$a"})]),
             BatchRequest("GET", "accounts?$select=name")]
    result = client.batch(items)
    assert result.status == 200 and [r.status for r in result.responses] == [204, 204, 200]
    account_id, contact_id = result.responses[0].entity_id, result.responses[1].entity_id
    assert uuid.UUID(account_id) and uuid.UUID(contact_id)
    assert result.responses[0].content_id == "a"
    assert result.responses[0].headers["Location"].endswith(f"accounts({account_id})")
    assert result.responses[2].json()["value"][0]["name"] == "Practice"
    contact = client.retrieve("contacts", contact_id, select=["_parentcustomerid_value"])
    assert contact["_parentcustomerid_value"] == account_id


def test_continue_on_error_reports_each_part_with_dataverse_code(client: DataverseClient) -> None:
    items = [BatchRequest("POST", "contacts", {"lastname": "Ok1"}),
             BatchRequest("POST", "contacts", {"lastname": LONG}),
             BatchRequest("POST", "contacts", {"lastname": "Ok2"})]
    result = client.batch(items, continue_on_error=True)
    assert result.status == 200 and [r.status for r in result.responses] == [204, 400, 204]
    assert result.responses[1].code == "0x80044331" and "'lastname'" in result.responses[1].message
    assert not result.ok and client.count("contacts") == 2


def test_without_continue_on_error_the_batch_stops_with_an_outer_400(client: DataverseClient) -> None:
    items = [BatchRequest("POST", "contacts", {"lastname": "Ok1"}),
             BatchRequest("POST", "contacts", {"lastname": LONG}, content_id="bad"),
             BatchRequest("POST", "contacts", {"lastname": "Never"})]
    result = client.batch(items)
    assert result.status == 400
    assert result.responses[0] is None and result.responses[2] is None  # not returned / not run
    assert result.responses[1] is not None and result.responses[1].code == "0x80044331"
    assert client.count("contacts") == 1  # the first ran, the third never did


def test_a_failed_change_set_rolls_back_and_marks_its_other_members(client: DataverseClient) -> None:
    items = [ChangeSet([BatchRequest("POST", "contacts", {"lastname": "Rolled"}),
                        BatchRequest("POST", "contacts", {"lastname": LONG})]),
             BatchRequest("POST", "contacts", {"lastname": "Alone"})]
    result = client.batch(items, continue_on_error=True)
    first, second, third = result.responses
    assert second.status == 400 and second.code == "0x80044331" and not second.rolled_back
    assert first.status == 400 and first.rolled_back and not first.ok  # its create was undone
    assert third.status == 204
    assert [r["lastname"] for r in client.query("contacts", ["lastname"])] == ["Alone"]


def test_a_refused_batch_raises_a_typed_error(client: DataverseClient) -> None:
    items = [BatchRequest("PATCH", "$9", {"lastname": "x"})]  # forward reference to an unknown Content-ID
    result = client.batch(items, continue_on_error=True)
    assert result.responses[0].status == 400 and "does not exist in the batch context" in result.responses[0].message
    with pytest.raises(DataverseError) as e:
        client._request("POST", "$batch", "$batch", "batch", content=b"not multipart", content_type="text/plain")
    assert e.value.status == 400


def test_decode_without_multipart_is_an_error() -> None:
    with pytest.raises(ValueError):
        decode([BatchRequest("GET", "contacts")], 200, "application/json", b"{}")


def test_a_key_form_entity_id_is_never_taken_for_a_record_id() -> None:
    guid = "EF0D112E-D70E-ED11-82E5-00224822577B"
    base = "https://org.crm.dynamics.com/api/data/v9.2/"
    by_key = [f"{base}example_records(example_key1=2,example_key2=2)", f"{base}contacts(smig_id='{guid}')",
              f"{base}contacts(_parentid_value={guid})", f"{base}contacts(a=1,b={guid})"]
    for url in by_key:
        assert BatchResponse(204, httpx.Headers({"OData-EntityId": url}), b"").entity_id is None, url
    assert BatchResponse(204, httpx.Headers({"OData-EntityId": f"{base}contacts({guid})"}), b"").entity_id == guid.lower()


def test_the_selected_primary_key_is_read_from_the_representation() -> None:
    body = b'{"@odata.etag": "W/\\"1\\"", "example_recordid": "EF0D112E-D70E-ED11-82E5-00224822577B"}'
    response = BatchResponse(201, httpx.Headers(), body)
    assert response.selected_id("example_recordid") == "ef0d112e-d70e-ed11-82e5-00224822577b"
    assert response.selected_id("example_name") is None
    assert BatchResponse(201, httpx.Headers(), b'{"example_recordid": "3:3"}').selected_id("example_recordid") is None
    assert BatchResponse(204, httpx.Headers(), b"").selected_id("example_recordid") is None
    assert BatchResponse(200, httpx.Headers(), b"not json").selected_id("example_recordid") is None
