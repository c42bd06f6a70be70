"""``$batch`` of the emulator (Microsoft Learn: "Execute batch operations using the Web API"), in-process through
``httpx.WSGITransport``."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from senseimig_dagster.sandbox.dataverse_emulator import Catalog
from senseimig_dagster.sandbox.dataverse_emulator.app import DataverseEmulator
from senseimig_dagster.sandbox.dataverse_emulator.limits import ServiceProtection
from senseimig_dagster.sandbox.dataverse_emulator.store import RecordStore
from senseimig_dagster.sandbox.entra import EntraStandIn
from senseimig_dagster_tests.support.constants import EMULATOR_BASE as BASE
from senseimig_dagster_tests.support.constants import ENV_URL
from senseimig_dagster_tests.support.web_api import boundary_of, changeset, parts_of, post_batch, request


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[DataverseEmulator]:
    catalog = Catalog.load()
    store = RecordStore(tmp_path / "dv.sqlite", catalog)
    yield DataverseEmulator(catalog, store)
    store.close()


def contacts(client: httpx.Client) -> list[dict]:
    return client.get("/contacts").json()["value"]


# -- tests --------------------------------------------------------------------------------------------------
def test_creates_and_a_get(client: httpx.Client) -> None:
    r = post_batch(client,
                   request("POST", "/api/data/v9.2/contacts", {"lastname": "A"}),
                   request("POST", f"{BASE}/contacts", {"lastname": "B"}),  # absolute URLs work too
                   request("GET", "/api/data/v9.2/contacts?$select=lastname"))
    assert r.status_code == 200, r.text
    first, second, listing = parts_of(r)
    for part in (first, second):
        assert part.status == 204 and part.body == ""
        assert re.fullmatch(rf"{BASE}/contacts\([0-9a-f-]{{36}}\)", part.http_headers["odata-entityid"])
        assert part.http_headers["location"] == part.http_headers["odata-entityid"]
        assert "x-ms-dop-hint" not in part.http_headers and "content-length" not in part.http_headers
    assert listing.status == 200
    assert sorted(c["lastname"] for c in json.loads(listing.body)["value"]) == ["A", "B"]


def test_changeset_references_in_url_and_bind(client: httpx.Client) -> None:
    cs = changeset("changeset_BBB456",
                   request("POST", "/api/data/v9.2/accounts", {"name": "Contoso"}, content_id="1"),
                   request("POST", "/api/data/v9.2/contacts",
                           {"lastname": "Ng", "parentcustomerid_account@odata.bind": "$1"}, content_id="2"),
                   request("PATCH", "$1", {"name": "Contoso Ltd"}, content_id="3"),
                   request("PATCH", "$2", {"firstname": "Ada"}, content_id="4"))
    r = post_batch(client, cs)
    assert r.status_code == 200, r.text
    (outer,) = parts_of(r)
    assert outer.changeset is not None
    assert [p.headers["content-id"] for p in outer.changeset] == ["1", "2", "3", "4"]
    assert [p.status for p in outer.changeset] == [204, 204, 204, 204]
    account_url = outer.changeset[0].http_headers["odata-entityid"]
    account_id = re.fullmatch(r".*\((.+)\)", account_url)[1]
    assert client.get(f"/accounts({account_id})").json()["name"] == "Contoso Ltd"
    (contact,) = contacts(client)
    assert contact["firstname"] == "Ada" and contact["_parentcustomerid_value"] == account_id


def test_get_inside_a_changeset_is_400(client: httpx.Client) -> None:
    cs = changeset("changeset_X",
                   request("POST", "/api/data/v9.2/contacts", {"lastname": "A"}, content_id="1"),
                   request("GET", "/api/data/v9.2/contacts", content_id="2"))
    r = post_batch(client, cs)
    assert r.status_code == 400
    assert set(r.json()["error"]) == {"code", "message"}
    assert contacts(client) == []


def test_forward_reference_is_400_with_the_documented_message(client: httpx.Client) -> None:
    cs = changeset("changeset_X",
                   request("PATCH", "$1", {"lastname": "B"}, content_id="2"),
                   request("POST", "/api/data/v9.2/contacts", {"lastname": "A"}, content_id="1"))
    r = post_batch(client, cs)
    assert r.status_code == 400
    (part,) = parts_of(r)
    assert part.status == 400
    assert json.loads(part.body)["error"]["message"] == \
        "Content-ID Reference: '$1' does not exist in the batch context."
    assert contacts(client) == []


def test_stops_at_first_error_with_outer_400_holding_only_the_failed_part(client: httpx.Client) -> None:
    r = post_batch(client,
                   request("POST", "/api/data/v9.2/contacts", {"lastname": "A"}),
                   request("POST", "/api/data/v9.2/contacts", {"lastnam": "typo"}),
                   request("POST", "/api/data/v9.2/contacts", {"lastname": "C"}))
    assert r.status_code == 400
    (part,) = parts_of(r)
    assert part.status == 400 and part.http_headers["content-type"].startswith("application/json")
    assert set(json.loads(part.body)["error"]) == {"code", "message"}
    assert [c["lastname"] for c in contacts(client)] == ["A"]  # earlier requests stay, later ones never ran


def test_continue_on_error_answers_200_with_every_part(client: httpx.Client) -> None:
    r = post_batch(client,
                   request("POST", "/api/data/v9.2/contacts", {"lastname": "A"}),
                   request("POST", "/api/data/v9.2/contacts", {"lastnam": "typo"}),
                   request("GET", f"/api/data/v9.2/contacts({uuid.uuid4()})"),
                   request("POST", "/api/data/v9.2/contacts", {"lastname": "C"}),
                   prefer="odata.continue-on-error")
    assert r.status_code == 200, r.text
    assert [p.status for p in parts_of(r)] == [204, 400, 404, 204]
    assert sorted(c["lastname"] for c in contacts(client)) == ["A", "C"]


def test_failed_changeset_rolls_back_and_is_one_error_part(client: httpx.Client) -> None:
    cs = changeset("changeset_X",
                   request("POST", "/api/data/v9.2/accounts", {"name": "Contoso"}, content_id="1"),
                   request("POST", "/api/data/v9.2/contacts",
                           {"lastname": "Ng", "parentcustomerid_account@odata.bind": "$1"}, content_id="2"),
                   request("POST", "/api/data/v9.2/contacts", {"lastnam": "typo"}, content_id="3"))
    r = post_batch(client, cs, request("POST", "/api/data/v9.2/contacts", {"lastname": "after"}),
                   prefer="odata.continue-on-error")
    assert r.status_code == 200, r.text
    failed, after = parts_of(r)
    assert failed.changeset is None and failed.status == 400 and failed.headers["content-id"] == "3"
    assert after.status == 204
    assert [c["lastname"] for c in contacts(client)] == ["after"]
    assert client.get("/accounts").json()["value"] == []


def test_more_than_1000_requests_is_400(client: httpx.Client) -> None:
    parts = [request("POST", "/api/data/v9.2/contacts", {"lastname": f"n{i}"}) for i in range(1001)]
    r = post_batch(client, *parts)
    assert r.status_code == 400
    assert "1000" in r.json()["error"]["message"]
    assert contacts(client) == []


def test_exactly_1000_requests_is_accepted(client: httpx.Client) -> None:
    parts = [request("GET", "/api/data/v9.2/contacts/$count") for _ in range(1000)]
    r = post_batch(client, *parts)
    assert r.status_code == 200
    assert len(parts_of(r)) == 1000


def test_lf_only_body_is_accepted(client: httpx.Client) -> None:
    cs = changeset("changeset_LF", request("POST", "/api/data/v9.2/contacts", {"lastname": "A"}, content_id="1"),
                   request("PATCH", "$1", {"firstname": "Lf"}, content_id="2"))
    r = post_batch(client, cs, request("GET", "/api/data/v9.2/contacts"), lf_only=True)
    assert r.status_code == 200, r.text
    assert [c["firstname"] for c in contacts(client)] == ["Lf"]


def test_response_boundary_differs_from_the_request_boundary(client: httpx.Client) -> None:
    r = post_batch(client, request("GET", "/api/data/v9.2/contacts"), boundary="batchresponse_same")
    assert r.status_code == 200
    assert boundary_of(r.headers["content-type"]) != "batchresponse_same"
    assert "--batchresponse_same" not in r.text


def test_nested_batch_is_400(client: httpx.Client) -> None:
    r = post_batch(client, request("POST", "/api/data/v9.2/$batch", {}))
    assert r.status_code == 400


def test_batch_is_one_admitted_request_carrying_its_inner_requests(tmp_path: Path) -> None:
    catalog = Catalog.load()
    store = RecordStore(tmp_path / "dv.sqlite", catalog)
    protection = ServiceProtection()
    seen: list[int] = []
    admit = protection.admit

    def spy(user: str, server: int = 0, records: int = 1):  # noqa: ANN202
        seen.append(records)
        return admit(user, server, records)

    protection.admit = spy  # type: ignore[method-assign]
    app = DataverseEmulator(catalog, store, protection=protection)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE) as c:
        r = post_batch(c, request("POST", "/api/data/v9.2/contacts", {"lastname": "A"}),
                       changeset("changeset_X",
                                 request("POST", "/api/data/v9.2/contacts", {"lastname": "B"}, content_id="1")),
                       request("GET", "/api/data/v9.2/contacts"))
        assert r.status_code == 200, r.text
        assert "x-ms-dop-hint" in r.headers
    assert seen == [3]
    store.close()


def test_inner_requests_carry_the_outer_authorization(emulator: DataverseEmulator, client: httpx.Client) -> None:
    entra = EntraStandIn()
    emulator.token_validator, emulator.tenant, emulator.audience = entra.token_info, entra.tenant, ENV_URL
    with httpx.Client(transport=httpx.WSGITransport(app=entra), base_url="https://login.test") as login:
        token = login.post(f"/{entra.tenant}/oauth2/v2.0/token", data={
            "grant_type": "client_credentials", "client_id": "sandbox-client", "client_secret": "sandbox-secret",
            "scope": f"{ENV_URL}/.default"}).json()["access_token"]
    assert post_batch(client, request("GET", "/api/data/v9.2/contacts")).status_code == 401
    client.headers["Authorization"] = f"Bearer {token}"
    r = post_batch(client, request("POST", "/api/data/v9.2/contacts", {"lastname": "A"}),
                   request("GET", "/api/data/v9.2/contacts"))
    assert r.status_code == 200, r.text
    assert [p.status for p in parts_of(r)] == [204, 200]


def test_get_on_batch_is_405(client: httpx.Client) -> None:
    assert client.get("/$batch").status_code == 405
