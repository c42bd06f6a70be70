"""Collection-valued navigation properties, references and deep insert (``navigation.py``, ``deep_insert.py``), the
comparison operators of ``$filter`` and the default row order: the cases the documented examples don't cover."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from senseimig_dagster.sandbox.dataverse_emulator.app import DataverseEmulator
from senseimig_dagster_tests.support import environments

NOT_FOUND = "0x80040217"


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[DataverseEmulator]:
    with environments.emulator(tmp_path / "dv.sqlite", key_delay=None, column_delay=None) as app:
        yield app


def create(client: httpx.Client, entity_set: str, body: dict) -> str:
    r = client.post(f"/{entity_set}", json=body)
    assert r.status_code == 204, r.text
    return re.search(r"\(([^()]+)\)$", r.headers["odata-entityid"])[1]


def test_deep_insert_is_one_transaction(client: httpx.Client) -> None:
    r = client.post("/accounts", json={"name": "Parent", "primarycontactid": {"lastname": "Ok"},
                                       "Account_Tasks": [{"subject": "fine"}, {"subject": "x" * 201}]})
    assert r.status_code == 400, r.text  # the second task's subject is longer than its 200 characters
    for entity_set in ("accounts", "contacts", "tasks"):
        assert client.get(f"/{entity_set}").json()["value"] == [], entity_set


def test_deep_insert_binds_children_to_the_new_record(client: httpx.Client) -> None:
    account = create(client, "accounts", {"name": "A", "contact_customer_accounts": [{"lastname": "One"},
                                                                                    {"lastname": "Two"}]})
    r = client.get(f"/accounts({account})/contact_customer_accounts?$select=lastname")
    assert [c["lastname"] for c in r.json()["value"]] == ["One", "Two"]
    assert client.get(f"/accounts({account})/contact_customer_accounts/$ref").json()["value"][0]["@odata.id"]


def test_disassociating_a_record_that_is_not_related_is_404(client: httpx.Client) -> None:
    account = create(client, "accounts", {"name": "A"})
    contact = create(client, "contacts", {"lastname": "Elsewhere"})
    r = client.delete(f"/accounts({account})/contact_customer_accounts({contact})/$ref")
    assert r.status_code == 404 and r.json()["error"]["code"] == NOT_FOUND


def test_associating_a_record_of_another_table_is_refused(client: httpx.Client) -> None:
    account = create(client, "accounts", {"name": "A"})
    other = create(client, "accounts", {"name": "B"})
    r = client.post(f"/accounts({account})/contact_customer_accounts/$ref",
                    json={"@odata.id": f"accounts({other})"})
    assert r.status_code == 400, r.text


def test_single_valued_ref_put_and_delete(client: httpx.Client) -> None:
    account = create(client, "accounts", {"name": "A"})
    contact = create(client, "contacts", {"lastname": "Primary"})
    assert client.put(f"/accounts({account})/primarycontactid/$ref",
                      json={"@odata.id": f"contacts({contact})"}).status_code == 204
    assert client.get(f"/accounts({account})?$select=_primarycontactid_value").json()[
        "_primarycontactid_value"] == contact
    assert client.delete(f"/accounts({account})/primarycontactid/$ref").status_code == 204
    assert client.get(f"/accounts({account})?$select=_primarycontactid_value").json()[
        "_primarycontactid_value"] is None


def test_comparison_operators(client: httpx.Client) -> None:
    for name, employees in (("small", 5), ("large", 500), ("unknown", None)):
        create(client, "accounts", {"name": name, "numberofemployees": employees})

    def names(filter_text: str) -> list[str]:
        r = client.get(f"/accounts?$select=name&$filter={filter_text}&$orderby=name")
        assert r.status_code == 200, r.text
        return [a["name"] for a in r.json()["value"]]

    assert names("numberofemployees gt 5") == ["large"]
    assert names("numberofemployees le 5") == ["small"]
    assert names("numberofemployees ne null") == ["large", "small"]
    assert names("numberofemployees ne 5") == ["large"]  # a null never compares
    assert names("not contains(name,'a')") == ["unknown"]
    assert names("(name eq 'LARGE' or numberofemployees eq 5) and name ne 'x'") == ["large", "small"]
    assert client.get("/accounts?$filter=numberofemployees mod 2 eq 0").status_code == 400  # not supported


def test_new_records_come_back_in_creation_order(client: httpx.Client) -> None:
    created = [create(client, "accounts", {"name": f"n{i}"}) for i in range(12)]
    assert [a["accountid"] for a in client.get("/accounts?$select=name").json()["value"]] == created


def test_many_to_many_associations_from_either_side(client: httpx.Client, emulator: DataverseEmulator) -> None:
    user, role = "4026be43-6b69-e111-8f65-78e7d1620f5e", "e359feba-bb27-ed11-9db1-002248274ada"
    emulator.store.put_system_record("systemuser", {"systemuserid": user, "fullname": "U", "isdisabled": False})
    emulator.store.put_system_record("role", {"roleid": role, "name": "R"})
    url = f"/systemusers({user})/systemuserroles_association"
    assert client.post(f"{url}/$ref", json={"@odata.id": f"roles({role})"}).status_code == 204
    assert client.post(f"{url}/$ref", json={"@odata.id": f"roles({role})"}).status_code == 204  # idempotent
    assert [r["name"] for r in client.get(f"{url}?$select=name").json()["value"]] == ["R"]
    users = client.get(f"/roles({role})/systemuserroles_association?$select=fullname").json()["value"]
    assert [u["systemuserid"] for u in users] == [user]
    assert client.delete(f"{url}({role})/$ref").status_code == 204
    assert client.delete(f"{url}({role})/$ref").status_code == 404  # no longer associated
    assert client.get(f"{url}?$select=name").json()["value"] == []
