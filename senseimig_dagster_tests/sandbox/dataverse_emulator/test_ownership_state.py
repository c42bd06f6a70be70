"""Owners (users and teams, never a disabled user), state/status pairs, closed activities and overriddencreatedon:
each test fails if the emulator were more lenient than Dataverse."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from senseimig_dagster.sandbox.dataverse_emulator.app import DataverseEmulator
from senseimig_dagster.sandbox.dataverse_emulator.seed import load_seed
from senseimig_dagster_tests.support import environments

SEED = load_seed()
ENABLED = SEED.user("harper.hygienist@sandbox.example")["systemuserid"]
DISABLED = SEED.user("dana.departed@sandbox.example")["systemuserid"]
TEAM = SEED.teams[0]["teamid"]


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[DataverseEmulator]:
    with environments.emulator(tmp_path / "dv.sqlite", key_delay=None, column_delay=None) as app:  # seeded
        yield app


def error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code, r.text
    return r.json()["error"]["message"]


def create(client: httpx.Client, entity_set: str, body: dict) -> str:
    r = client.post(f"/{entity_set}", json=body)
    assert r.status_code == 204, r.text
    return re.search(r"\(([^)]+)\)$", r.headers["OData-EntityId"])[1]


def read(client: httpx.Client, entity_set: str, record_id: str, select: str) -> dict:
    r = client.get(f"/{entity_set}({record_id})", params={"$select": select})
    assert r.status_code == 200, r.text
    return r.json()


# -- owners -------------------------------------------------------------------------------------------------------
def test_a_disabled_owner_is_refused_on_create_and_update(client: httpx.Client) -> None:
    bind = {"ownerid@odata.bind": f"/systemusers({DISABLED})"}
    message = error(client.post("/contacts", json={"lastname": "Ng", **bind}), 400, "0x8004022b")
    assert message == "The specified owner has been disabled."
    contact = create(client, "contacts", {"lastname": "Ng"})
    error(client.patch(f"/contacts({contact})", json=bind), 400, "0x8004022b")
    assert read(client, "contacts", contact, "_ownerid_value")["_ownerid_value"] == SEED.default_owner


def test_a_user_outside_any_business_unit_is_refused_as_owner(client: httpx.Client) -> None:
    user = create(client, "systemusers", {"firstname": "No", "lastname": "Unit", "domainname": "nu@sandbox.example",
                                          "internalemailaddress": "nu@sandbox.example"})
    message = error(client.post("/accounts", json={"name": "A", "ownerid@odata.bind": f"/systemusers({user})"}),
                    400, "0x80040225")
    assert message == "The specified user is either disabled or is not a member of any business unit."


@pytest.mark.parametrize("owner", [f"/systemusers({ENABLED})", f"/teams({TEAM})"])
def test_an_enabled_user_or_a_team_may_own(client: httpx.Client, owner: str) -> None:
    contact = create(client, "contacts", {"lastname": "Ng", "ownerid@odata.bind": owner})
    assert read(client, "contacts", contact, "_ownerid_value")["_ownerid_value"] == owner.split("(")[1][:-1]


def test_records_created_without_an_owner_belong_to_the_application_user(client: httpx.Client) -> None:
    contact = create(client, "contacts", {"lastname": "Ng"})
    assert read(client, "contacts", contact, "_ownerid_value")["_ownerid_value"] == SEED.default_owner
    assert SEED.default_owner == SEED.application_users["sandbox-client"]


# -- state and status ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("entity_set", ["contacts", "appointments"])
def test_statecode_is_not_valid_on_create(client: httpx.Client, entity_set: str) -> None:
    message = error(client.post(f"/{entity_set}", json={"statecode": 1}), 400, "0x80040203")
    assert "'statecode'" in message


def test_a_new_record_starts_in_state_0_with_its_default_status(client: httpx.Client) -> None:
    appointment = create(client, "appointments", {"subject": "Cleaning"})
    got = read(client, "appointments", appointment, "statecode,statuscode")
    assert (got["statecode"], got["statuscode"]) == (0, 1)


@pytest.mark.parametrize(("entity_set", "body"), [
    ("contacts", {"statecode": 1, "statuscode": 1}),  # Active status with Inactive state
    ("appointments", {"statecode": 1, "statuscode": 4}),  # Canceled status with Completed state
    ("phonecalls", {"statecode": 2, "statuscode": 2}),  # Made with Canceled
])
def test_a_wrong_state_status_pair_is_0x80048408(client: httpx.Client, entity_set: str, body: dict) -> None:
    first = {"lastname": "Ng"} if entity_set == "contacts" else {"subject": "S"}
    record = create(client, entity_set, first)
    message = error(client.patch(f"/{entity_set}({record})", json=body), 400, "0x80048408")
    assert f"{body['statuscode']} is not a valid status code for state code" in message
    assert read(client, entity_set, record, "statecode")["statecode"] == 0


@pytest.mark.parametrize(("entity_set", "change", "expected"), [
    ("contacts", {"statuscode": 2}, {"statecode": 1, "statuscode": 2}),  # status alone maps to its state
    ("appointments", {"statuscode": 3}, {"statecode": 1, "statuscode": 3}),
    ("phonecalls", {"statuscode": 4}, {"statecode": 1, "statuscode": 4}),  # Received is a Completed reason
    ("contacts", {"statecode": 1}, {"statecode": 1, "statuscode": 2}),  # state alone gets its default status
    ("emails", {"statecode": 2}, {"statecode": 2, "statuscode": 5}),
])
def test_status_alone_sets_its_state_and_state_alone_its_default_status(
        client: httpx.Client, entity_set: str, change: dict, expected: dict) -> None:
    first = {"lastname": "Ng"} if entity_set == "contacts" else {"subject": "S"}
    record = create(client, entity_set, first)
    assert client.patch(f"/{entity_set}({record})", json=change).status_code == 204
    got = read(client, entity_set, record, "statecode,statuscode")
    assert (got["statecode"], got["statuscode"]) == (expected["statecode"], expected["statuscode"])


@pytest.mark.parametrize(("entity_set", "close"), [
    ("appointments", {"statecode": 1, "statuscode": 3}),  # Completed
    ("appointments", {"statecode": 2, "statuscode": 4}),  # Canceled
    ("phonecalls", {"statecode": 1, "statuscode": 2}),
    ("emails", {"statecode": 2, "statuscode": 5}),
])
def test_a_closed_activity_is_read_only(client: httpx.Client, entity_set: str, close: dict) -> None:
    activity = create(client, entity_set, {"subject": "Recall visit"})
    assert client.patch(f"/{entity_set}({activity})", json={"description": "written first", **close}).status_code == 204
    owner = f"ownerid_{entity_set[:-1]}@odata.bind"  # activities' owner navigation property (navigation_overlay)
    for change in ({"subject": "changed"}, {owner: f"/systemusers({ENABLED})"},
                   {**close, "description": "again"}, close):
        message = error(client.patch(f"/{entity_set}({activity})", json=change), 400, "0x80040203")
        assert "closed" in message and activity in message
    assert read(client, entity_set, activity, "subject")["subject"] == "Recall visit"


def test_a_closed_activity_can_be_reopened_then_edited(client: httpx.Client) -> None:
    call = create(client, "phonecalls", {"subject": "Confirm"})
    assert client.patch(f"/phonecalls({call})", json={"statecode": 1, "statuscode": 2}).status_code == 204
    assert client.patch(f"/phonecalls({call})", json={"statecode": 0, "statuscode": 1}).status_code == 204
    assert client.patch(f"/phonecalls({call})", json={"subject": "Edited"}).status_code == 204
    got = read(client, "phonecalls", call, "subject,statecode")
    assert (got["subject"], got["statecode"]) == ("Edited", 0)


def test_a_closed_activity_can_be_deleted_but_not_recreated_closed(client: httpx.Client) -> None:
    call = create(client, "phonecalls", {"subject": "Confirm"})
    assert client.patch(f"/phonecalls({call})", json={"statuscode": 3}).status_code == 204  # Canceled
    assert client.delete(f"/phonecalls({call})").status_code == 204
    error(client.post("/phonecalls", json={"subject": "x", "statecode": 1}), 400, "0x80040203")


# -- overriddencreatedon ------------------------------------------------------------------------------------------
def test_overriddencreatedon_becomes_createdon_and_is_refused_on_update(client: httpx.Client) -> None:
    contact = create(client, "contacts", {"lastname": "Ng", "overriddencreatedon": "2015-06-01T09:30:00Z"})
    got = read(client, "contacts", contact, "createdon,overriddencreatedon")
    assert got["createdon"] == "2015-06-01T09:30:00Z" and got["overriddencreatedon"] != "2015-06-01T09:30:00Z"
    message = error(client.patch(f"/contacts({contact})", json={"overriddencreatedon": "2014-01-01T00:00:00Z"}),
                    400, "0x80040203")
    assert "'overriddencreatedon'" in message
    assert read(client, "contacts", contact, "createdon")["createdon"] == "2015-06-01T09:30:00Z"
