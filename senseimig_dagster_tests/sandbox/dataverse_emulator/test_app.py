"""Web API surface of the emulator (create, retrieve, upsert, delete, query paging, error bodies); each test fails
if it were more lenient than Dataverse."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from senseimig_dagster.sandbox.dataverse_emulator import Catalog
from senseimig_dagster.sandbox.dataverse_emulator.app import DataverseEmulator
from senseimig_dagster.sandbox.dataverse_emulator.store import RecordStore
from senseimig_dagster.sandbox.entra import EntraStandIn
from senseimig_dagster.sandbox.tls import serve_wsgi
from senseimig_dagster_tests.support.constants import ENV_URL
from senseimig_dagster_tests.support.web_api import create_contact, error_of


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[DataverseEmulator]:
    catalog = Catalog.load()
    catalog.add_column("contact", "smig_SourceId", "String", max_length=100)
    catalog.add_alternate_key("contact", "smig_sourceid_key", ["smig_sourceid"])
    catalog.set_key_status("contact", "smig_sourceid_key", "Active")
    catalog.add_alternate_key("contact", "smig_name_mail_key", ["firstname", "emailaddress1"])
    catalog.set_key_status("contact", "smig_name_mail_key", "Active")
    store = RecordStore(tmp_path / "dv.sqlite", catalog)
    yield DataverseEmulator(catalog, store)
    store.close()


def test_plain_create_is_204_with_entity_id_and_no_body(client: httpx.Client) -> None:
    r = client.post("/contacts", json={"lastname": "Ng"})
    assert r.status_code == 204 and r.content == b"" and "preference-applied" not in r.headers
    assert uuid.UUID(re.search(r"\((.+)\)", r.headers["odata-entityid"])[1])


def test_create_with_representation_is_201_with_etag_and_no_entity_id(client: httpx.Client) -> None:
    r = client.post("/contacts?$select=lastname", json={"lastname": "Ng"},
                    headers={"Prefer": "return=representation"})
    assert r.status_code == 201 and "odata-entityid" not in r.headers
    assert r.headers["preference-applied"] == "return=representation"
    body = r.json()
    assert re.fullmatch(r'W/"\d+"', body["@odata.etag"]) and body["lastname"] == "Ng" and "contactid" in body
    assert "firstname" not in body


def test_retrieve_by_id_and_by_keys_with_select(client: httpx.Client) -> None:
    rid = create_contact(client, {"lastname": "Ng", "firstname": "Al", "emailaddress1": "a@b.com",
                                  "smig_sourceid": "P-1"})
    r = client.get(f"/contacts({rid})", params={"$select": "lastname"})
    assert r.status_code == 200 and r.json()["lastname"] == "Ng" and "firstname" not in r.json()
    assert client.get("/contacts(smig_sourceid='P-1')").json()["contactid"] == rid
    assert client.get("/contacts(firstname='Al',emailaddress1='a@b.com')").json()["contactid"] == rid
    assert error_of(client.get("/contacts(smig_sourceid='nope')"), 404)["code"] == "0x80060891"
    missing = str(uuid.uuid4())
    assert error_of(client.get(f"/contacts({missing})"), 404)["message"] == f"contact With Id = {missing} Does Not Exist"


def test_non_key_columns_in_url_are_400(client: httpx.Client) -> None:
    assert "not valid for resource" in error_of(client.get("/contacts(lastname='Ng')"), 400)["message"]
    error_of(client.get("/contacts(firstname='Al')"), 400)  # half of a two-column key


@pytest.mark.parametrize("char", list("/<>*%&:\\?+"))
def test_key_values_with_reserved_characters_fail(client: httpx.Client, char: str) -> None:
    client.post("/contacts", json={"lastname": "X", "smig_sourceid": f"A{char}B"})
    value = quote(f"A{char}B", safe="")
    assert "must not contain" in error_of(client.get(f"/contacts(smig_sourceid='{value}')"), 400)["message"]
    error_of(client.patch(f"/contacts(smig_sourceid='{value}')", json={"lastname": "Y"}), 400)


def test_patch_upserts_and_honours_conditional_headers(client: httpx.Client) -> None:
    r = client.patch("/contacts(smig_sourceid='P-7')", json={"lastname": "A"})
    assert r.status_code == 204 and "odata-entityid" in r.headers
    r = client.patch("/contacts(smig_sourceid='P-7')", json={"lastname": "B"})
    assert r.status_code == 204
    assert client.get("/contacts/$count").text == "1"
    missing = str(uuid.uuid4())
    err = error_of(client.patch(f"/contacts({missing})", json={"lastname": "C"}, headers={"If-Match": "*"}), 404)
    assert err["message"] == f"contact With Id = {missing} Does Not Exist"
    err = error_of(client.patch("/contacts(smig_sourceid='P-7')", json={"lastname": "C"},
                                headers={"If-None-Match": "*"}), 412)
    assert err["message"] == "A record with matching key values already exists."
    current = client.get("/contacts(smig_sourceid='P-7')").json()
    err = error_of(client.patch(f"/contacts({current['contactid']})", json={"lastname": "D"},
                                headers={"If-Match": 'W/"1"'}), 412)
    assert err["message"] == "The version of the existing record doesn't match the RowVersion property provided."
    r = client.patch(f"/contacts({current['contactid']})", json={"lastname": "E"},
                     headers={"If-Match": current["@odata.etag"], "Prefer": "return=representation"})
    assert r.status_code == 200 and r.json()["lastname"] == "E"


def test_upsert_with_representation_says_whether_it_created(client: httpx.Client) -> None:
    prefer = {"Prefer": "return=representation"}
    created = client.patch("/contacts(smig_sourceid='P-8')", json={"lastname": "A"}, headers=prefer)
    updated = client.patch("/contacts(smig_sourceid='P-8')", json={"lastname": "B"}, headers=prefer)
    assert (created.status_code, updated.status_code) == (201, 200)
    assert updated.json()["lastname"] == "B"


def test_duplicate_key_on_post_is_412_not_409(client: httpx.Client) -> None:
    create_contact(client, {"lastname": "A", "smig_sourceid": "P-1"})
    assert error_of(client.post("/contacts", json={"lastname": "B", "smig_sourceid": "P-1"}), 412)["code"] == (
        "0x80060892")


def test_delete_is_204_then_404(client: httpx.Client) -> None:
    rid = create_contact(client, {"lastname": "A"})
    assert client.delete(f"/contacts({rid})").status_code == 204
    assert error_of(client.delete(f"/contacts({rid})"), 404)["message"].endswith("Does Not Exist")


def test_validation_and_bind_errors_come_back_as_error_bodies(client: httpx.Client) -> None:
    assert error_of(client.post("/contacts", json={"nickname2": "x"}), 400)["code"] == "0x80048d19"
    missing = str(uuid.uuid4())
    body = {"lastname": "A", "parentcustomerid_account@odata.bind": f"/accounts({missing})"}
    assert error_of(client.post("/contacts", json=body), 404)["code"] == "0x80040217"
    assert client.get("/contacts/$count").text == "0"
    error_of(client.get("/nosuchthings"), 404)


def test_paging_with_maxpagesize_nextlink_and_count(client: httpx.Client) -> None:
    for i in range(7):
        create_contact(client, {"lastname": "Pg", "firstname": f"{i:02d}"})
    create_contact(client, {"lastname": "Other"})
    headers = {"Prefer": "odata.maxpagesize=3"}
    r = client.get("/contacts", params={"$filter": "lastname eq 'Pg'", "$orderby": "firstname desc",
                                        "$select": "firstname", "$count": "true", "$top": "1"}, headers=headers)
    assert r.status_code == 200 and r.headers["preference-applied"] == "odata.maxpagesize=3"
    body = r.json()
    assert body["@odata.count"] == 7 and len(body["value"]) == 3  # $top ignored with maxpagesize
    seen = [v["firstname"] for v in body["value"]]
    while "@odata.nextLink" in body:
        assert "$skiptoken=" in body["@odata.nextLink"]
        body = client.get(body["@odata.nextLink"], headers=headers).json()
        seen += [v["firstname"] for v in body["value"]]
    assert seen == [f"{i:02d}" for i in reversed(range(7))]
    assert len(client.get("/contacts", params={"$top": "2"}).json()["value"]) == 2


def test_maxpagesize_is_capped_and_skip_is_rejected(client: httpx.Client) -> None:
    r = client.get("/contacts", headers={"Prefer": "odata.maxpagesize=9000"})
    assert r.headers["preference-applied"] == "odata.maxpagesize=5000"
    error_of(client.get("/contacts", params={"$skip": "5"}), 400)
    error_of(client.get("/contacts", params={"$skiptoken": "forged"}), 400)
    error_of(client.get("/contacts", params={"$filter": "substringof('x',lastname)"}), 400)  # not OData 4.0
    error_of(client.get("/contacts", params={"$select": "nosuchcolumn"}), 400)


def test_count_is_capped_at_5000(emulator: DataverseEmulator, client: httpx.Client) -> None:
    with emulator.store._lock:  # bulk-seed directly: 5001 creates through HTTP would dominate the test time
        for i in range(5001):
            emulator.store.create("contact", {"lastname": f"C{i}"})
    r = client.get("/contacts/$count")
    assert r.headers["content-type"].startswith("text/plain") and r.text == "5000"
    assert client.get("/contacts", params={"$count": "true", "$select": "lastname"}).json()["@odata.count"] == 5000


def test_bearer_token_required_when_validator_given(emulator: DataverseEmulator) -> None:
    now = [1_000_000.0]
    entra = EntraStandIn(clock=lambda: now[0])
    emulator.token_validator, emulator.tenant, emulator.audience = entra.token_info, entra.tenant, ENV_URL
    with httpx.Client(transport=httpx.WSGITransport(app=entra), base_url="https://login.test") as login:
        token = login.post(f"/{entra.tenant}/oauth2/v2.0/token", data={
            "grant_type": "client_credentials", "client_id": "sandbox-client", "client_secret": "sandbox-secret",
            "scope": f"{ENV_URL}/.default"}).json()["access_token"]
    with serve_wsgi(emulator) as url, httpx.Client(base_url=url + "/api/data/v9.2") as c:
        for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic abc"}):
            r = c.get("/contacts", headers=headers)
            error_of(r, 401)
            assert r.headers["www-authenticate"].startswith("Bearer authorization_uri=https://login.microsoftonline")
        assert c.get("/contacts", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        now[0] += 2 * 3600  # past the 60-90 minute lifetime
        error_of(c.get("/contacts", headers={"Authorization": f"Bearer {token}"}), 401)


def test_real_http_create_and_read_back(emulator: DataverseEmulator) -> None:
    with serve_wsgi(emulator) as url, httpx.Client(base_url=url + "/api/data/v9.2") as c:
        r = c.post("/contacts", json={"lastname": "Http"})
        assert r.status_code == 204 and r.headers["odata-entityid"].startswith(url + "/api/data/v9.2/contacts(")
        assert c.get(r.headers["odata-entityid"]).json()["lastname"] == "Http"


def test_concurrent_http_writes_from_8_threads_land_exactly_once(emulator: DataverseEmulator) -> None:
    failures: list[str] = []
    with serve_wsgi(emulator) as url:
        def worker(n: int) -> None:
            with httpx.Client(base_url=url + "/api/data/v9.2") as c:
                for i in range(10):
                    r1 = c.patch(f"/contacts(smig_sourceid='K-{i}')", json={"lastname": f"T{n}"})
                    r2 = c.post("/contacts", json={"lastname": "U", "smig_sourceid": f"U-{n}-{i}"})
                    failures.extend(r.text for r in (r1, r2) if r.status_code != 204)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == []
    rows = emulator.store.query("contact")
    assert sorted(r.values["smig_sourceid"] for r in rows) == sorted(
        [f"K-{i}" for i in range(10)] + [f"U-{n}-{i}" for n in range(8) for i in range(10)])


@pytest.mark.parametrize("char", ["/", "+", "%", ":"])
def test_bind_by_key_with_reserved_characters_fails(emulator: DataverseEmulator, client: httpx.Client,
                                                    char: str) -> None:
    # Must-have 3: such key values break lookup by key, in an @odata.bind as in the URL (the account exists, so a
    # lenient emulator would bind it).
    emulator.catalog.add_alternate_key("account", "smig_accountnumber_key", ["accountnumber"])
    emulator.catalog.set_key_status("account", "smig_accountnumber_key", "Active")
    assert client.post("/accounts", json={"name": "Clinic", "accountnumber": f"A{char}1"}).status_code == 204
    body = {"lastname": "Ng", "parentcustomerid_account@odata.bind": f"/accounts(accountnumber='A{char}1')"}
    assert "must not contain" in error_of(client.post("/contacts", json=body), 400)["message"]
    assert client.post("/contacts", json={**body, "parentcustomerid_account@odata.bind": "/accounts(accountnumber='A1')"}
                       ).status_code == 404  # the check is on the characters, not on binds by key in general


def test_filter_or_between_equalities_on_one_column(client) -> None:
    """How clients read records back by a list of keys: ``(c eq 'a' or c eq 'b') and d eq ...``; quotes protect
    ' or ' / ' and ' inside literals; an or across columns is a disjunction too."""
    for name in ("a or b", "O'Neil and co", "plain"):
        assert client.post("/accounts", json={"name": name}).status_code == 204
    quoted = "name eq 'a or b' or name eq 'O''Neil and co'"
    r = client.get(f"/accounts?$select=name&$filter=({quoted})")
    assert r.status_code == 200, r.text
    assert sorted(v["name"] for v in r.json()["value"]) == ["O'Neil and co", "a or b"]
    r = client.get("/accounts?$select=name&$filter=name eq 'plain' or accountnumber eq 'x'")
    assert r.status_code == 200, r.text
    assert [v["name"] for v in r.json()["value"]] == ["plain"]


# -- text compares as an English environment's database collation, _CI_AI -------------------------------------------
def test_alternate_keys_match_without_case_or_accents(client: httpx.Client) -> None:
    rid = create_contact(client, {"lastname": "Ng", "smig_sourceid": "Café-7"})
    for spelling in ("café-7", "CAFE-7", "cafe-7"):
        r = client.get(f"/contacts(smig_sourceid='{quote(spelling)}')", params={"$select": "smig_sourceid"})
        assert r.status_code == 200 and r.json()["smig_sourceid"] == "Café-7", spelling  # stored as written
    r = client.patch("/contacts(smig_sourceid='CAFE-7')", json={"lastname": "Updated"})
    assert r.status_code == 204 and r.headers["odata-entityid"].endswith("/contacts(smig_sourceid='CAFE-7')")
    assert client.get(f"/contacts({rid})", params={"$select": "lastname"}).json()["lastname"] == "Updated"
    duplicate = client.post("/contacts", json={"lastname": "Other", "smig_sourceid": "cafe-7"})
    assert error_of(duplicate, 412)["code"] == "0x80060892"
    assert client.get("/contacts/$count").text == "1"


def test_filter_string_equality_ignores_case(client: httpx.Client) -> None:
    for last, key in (("Ng", "K-1"), ("NG", "K-2"), ("Nguyen", "K-3")):
        create_contact(client, {"lastname": last, "smig_sourceid": key})
    def found(filter_text: str) -> list[str]:
        rows = client.get("/contacts", params={"$filter": filter_text, "$select": "smig_sourceid"}).json()["value"]
        return sorted(r["smig_sourceid"] for r in rows)
    assert found("lastname eq 'ng'") == ["K-1", "K-2"]
    assert found("smig_sourceid eq 'k-3' or smig_sourceid eq 'K-1'") == ["K-1", "K-3"]
    assert found("smig_sourceid eq 'k-2'") == ["K-2"]


def test_a_key_index_written_case_sensitively_is_rebuilt_on_open(tmp_path: Path) -> None:
    catalog = Catalog.load()
    catalog.add_column("contact", "smig_SourceId", "String", max_length=100)
    catalog.add_alternate_key("contact", "smig_sourceid_key", ["smig_sourceid"])
    catalog.set_key_status("contact", "smig_sourceid_key", "Active")
    store = RecordStore(tmp_path / "old.sqlite", catalog)
    store.create("contact", {"lastname": "Ng", "smig_sourceid": "ABC"})
    with store._lock:  # the file as an emulator before case-insensitive keys left it
        store._conn.execute("""UPDATE key_index SET keyvalue='["ABC"]'""")
        store._conn.execute("PRAGMA user_version = 0")
    store.close()
    reopened = RecordStore(tmp_path / "old.sqlite", catalog)
    try:
        assert reopened.find_by_key("contact", {"smig_sourceid": "abc"}).values["lastname"] == "Ng"
    finally:
        reopened.close()


def test_string_functions_and_lookup_paths_in_filter(client: httpx.Client) -> None:
    for last, key in (("Anderson (sample)", "K-1"), ("50%_off", "K-2"), ("Campbell", "K-3")):
        create_contact(client, {"lastname": last, "smig_sourceid": key})
    def found(filter_text: str) -> list[str]:
        r = client.get("/contacts", params={"$filter": filter_text, "$select": "smig_sourceid"})
        assert r.status_code == 200, r.text
        return sorted(row["smig_sourceid"] for row in r.json()["value"])
    assert found("contains(lastname,'SAMPLE')") == ["K-1"]  # case-insensitive, like eq
    assert found("startswith(lastname,'camp') and smig_sourceid eq 'K-3'") == ["K-3"]
    assert found("endswith(lastname,'_off')") == ["K-2"]
    assert found("contains(lastname,'%')") == ["K-2"]  # a wildcard in the text is a literal
    account = client.post("/accounts", json={"name": "A"}).headers["odata-entityid"].rsplit("(", 1)[1][:-1]
    create_contact(client, {"lastname": "Child", "smig_sourceid": "K-4",
                            "parentcustomerid_account@odata.bind": f"/accounts({account})"})
    assert found(f"parentcustomerid_account/accountid eq {account}") == ["K-4"]
    assert found("contains(lastname,'camp') or lastname eq 'child'") == ["K-3", "K-4"]
    child = client.post("/accounts", json={"name": "B", "parentaccountid@odata.bind": f"/accounts({account})"}
                        ).headers["odata-entityid"].rsplit("(", 1)[1][:-1]
    create_contact(client, {"lastname": "Grandchild", "smig_sourceid": "K-5",
                            "parentcustomerid_account@odata.bind": f"/accounts({child})"})
    assert found("parentcustomerid_account/parentaccountid/name eq 'a'") == ["K-5"]  # a lookup's lookup
    assert found("parentcustomerid_account/parentaccountid/name eq 'b'") == []
    error_of(client.get("/contacts", params={"$filter": "lastname in ('a','b')"}), 400)  # not OData 4.0's syntax


def test_doubles_are_stored_with_the_columns_precision_and_money_with_its_currency(client: httpx.Client) -> None:
    r = client.post("/accounts", params={"$select": "address1_latitude,revenue"},
                    json={"name": "A", "address1_latitude": 47.639583, "revenue": 5000000},
                    headers={"Prefer": "return=representation"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["address1_latitude"] == 47.63958  # Precision 5
    assert "_transactioncurrencyid_value" in body  # a money value comes with its currency (none seeded here)


def test_parameter_aliases_and_dataverse_paging_cookies(client: httpx.Client) -> None:
    for i in range(5):
        create_contact(client, {"lastname": "Alias" if i < 4 else "Other", "smig_sourceid": f"P-{i}"})
    r = client.get("/contacts", params={"$select": "smig_sourceid", "$filter": "lastname eq @p1", "@p1": "'alias'"},
                   headers={"Prefer": "odata.maxpagesize=3"})
    assert r.status_code == 200 and len(r.json()["value"]) == 3, r.text
    first_page = {row["smig_sourceid"] for row in r.json()["value"]}
    cookie = ('<cookie pagenumber="2" pagingcookie="%3ccookie%20page%3d%221%22%3e%3c%2fcookie%3e" '
              'istracking="False" />')  # Dataverse's own $skiptoken form, as Microsoft's examples print it
    r = client.get("/contacts", params={"$select": "smig_sourceid", "$filter": "lastname eq @p1", "@p1": "'alias'",
                                        "$skiptoken": cookie}, headers={"Prefer": "odata.maxpagesize=3"})
    second_page = [row["smig_sourceid"] for row in r.json()["value"]]
    assert second_page == sorted({"P-0", "P-1", "P-2", "P-3"} - first_page) and "@odata.nextLink" not in r.json()


def test_formatted_values_and_lookup_annotations_when_asked(client: httpx.Client) -> None:
    parent = client.post("/accounts", json={"name": "Parent Co"}).headers["odata-entityid"].rsplit("(", 1)[1][:-1]
    r = client.post("/accounts", json={"name": "Child", "numberofemployees": 9500, "donotpostalmail": False,
                                       "accountratingcode": 1, "parentaccountid@odata.bind": f"/accounts({parent})"})
    child = r.headers["odata-entityid"].rsplit("(", 1)[1][:-1]
    url = f"/accounts({child})?$select=numberofemployees,donotpostalmail,accountratingcode,_parentaccountid_value"
    plain = client.get(url)
    assert not any("@" in k for k in plain.json() if not k.startswith("@odata")) and \
        "preference-applied" not in plain.headers
    r = client.get(url, headers={"Prefer": 'odata.include-annotations="*"'})
    body = r.json()
    assert r.headers["preference-applied"] == 'odata.include-annotations="*"'
    assert body["numberofemployees@OData.Community.Display.V1.FormattedValue"] == "9,500"
    assert body["donotpostalmail@OData.Community.Display.V1.FormattedValue"] == "Allow"
    assert body["accountratingcode@OData.Community.Display.V1.FormattedValue"] == "Default Value"
    assert body["_parentaccountid_value@OData.Community.Display.V1.FormattedValue"] == "Parent Co"
    assert body["_parentaccountid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "account"
    assert body["_parentaccountid_value@Microsoft.Dynamics.CRM.associatednavigationproperty"] == "parentaccountid"
    only = client.get(url, headers={"Prefer": 'odata.include-annotations="OData.Community.Display.V1.FormattedValue"'})
    assert not any(k.endswith("lookuplogicalname") for k in only.json())
