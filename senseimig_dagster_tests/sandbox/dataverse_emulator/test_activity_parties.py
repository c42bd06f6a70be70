"""Activity parties of the emulator (an activity's senders and recipients, ``activity_parties.py``): deep insert on
POST (also inside ``$batch``), PUT replacement, read-back, cascade delete, and the refusals a lenient stand-in would
miss."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from senseimig_dagster.sandbox.dataverse_emulator.app import DataverseEmulator
from senseimig_dagster.sandbox.dataverse_emulator.seed import load_seed
from senseimig_dagster_tests.support import environments
from senseimig_dagster_tests.support.web_api import parts_of, post_batch, request

SEED = load_seed()
USER = SEED.user("harper.hygienist@sandbox.example")["systemuserid"]
DISABLED = SEED.user("dana.departed@sandbox.example")["systemuserid"]
MISSING = "00000000-0000-4000-8000-00000000dead"
INVALID_ARGUMENT, NOT_FOUND = "0x80040203", "0x80040217"


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[DataverseEmulator]:
    with environments.emulator(tmp_path / "dv.sqlite", key_delay=None, column_delay=None) as app:  # seeded
        yield app


@pytest.fixture
def patient(client: httpx.Client) -> str:
    return create(client, "contacts", {"lastname": "Patient"})


def error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code, r.text


def create(client: httpx.Client, entity_set: str, body: dict) -> str:
    r = client.post(f"/{entity_set}", json=body)
    assert r.status_code == 204, r.text
    return re.search(r"\(([^)]+)\)$", r.headers["OData-EntityId"])[1]


def parties(contact: str, user: str = USER, *, sender: str = "user") -> list[dict]:
    him, her = {"partyid_systemuser@odata.bind": f"/systemusers({user})"}, \
        {"partyid_contact@odata.bind": f"/contacts({contact})"}
    first, second = (him, her) if sender == "user" else (her, him)
    return [{**first, "participationtypemask": 1}, {**second, "participationtypemask": 2}]


def read_parties(client: httpx.Client, activity: str) -> set[tuple[int, str]]:
    r = client.get("/activityparties", params={"$filter": f"_activityid_value eq {activity}",
                                                "$select": "participationtypemask,_partyid_value"})
    assert r.status_code == 200, r.text
    return {(p["participationtypemask"], p["_partyid_value"]) for p in r.json()["value"]}


def count(client: httpx.Client, entity_set: str) -> int:
    return len(client.get(f"/{entity_set}").json()["value"])


def test_deep_insert_creates_the_parties_read_back_by_activity(client: httpx.Client, patient: str) -> None:
    call = create(client, "phonecalls", {"subject": "Recall", "phonecall_activity_parties": parties(patient)})
    assert read_parties(client, call) == {(1, USER), (2, patient)}
    r = client.get(f"/phonecalls({call})/phonecall_activity_parties")
    assert r.status_code == 200 and len(r.json()["value"]) == 2
    assert all(p["_activityid_value"] == call for p in r.json()["value"])
    # each party names its table (partyobjecttypecode, SystemRequired in Microsoft's metadata)
    assert {(p["partyobjecttypecode"], p["_partyid_value"]) for p in r.json()["value"]} == {
        ("systemuser", USER), ("contact", patient)}


def test_a_disabled_user_may_be_a_party(client: httpx.Client, patient: str) -> None:
    mail = create(client, "emails", {"subject": "x", "email_activity_parties": parties(patient, DISABLED)})
    assert read_parties(client, mail) == {(1, DISABLED), (2, patient)}


def test_a_phonecall_refuses_a_mask_it_does_not_take_and_writes_nothing(client: httpx.Client, patient: str) -> None:
    body = [{"partyid_contact@odata.bind": f"/contacts({patient})", "participationtypemask": 3}]  # Cc: e-mail only
    error(client.post("/phonecalls", json={"subject": "x", "phonecall_activity_parties": body}), 400,
          INVALID_ARGUMENT)
    body[0]["participationtypemask"] = 5  # Required attendee: appointments only
    error(client.post("/emails", json={"subject": "x", "email_activity_parties": body}), 400, INVALID_ARGUMENT)
    assert count(client, "phonecalls") == count(client, "emails") == count(client, "activityparties") == 0


def test_a_bind_to_a_missing_party_is_404_and_rolls_the_activity_back(client: httpx.Client, patient: str) -> None:
    r = client.post("/phonecalls", json={"subject": "x", "phonecall_activity_parties": parties(MISSING)})
    error(r, 404, NOT_FOUND)
    assert count(client, "phonecalls") == 0 and count(client, "activityparties") == 0


def test_parties_in_a_patch_or_a_bulk_message_are_refused(client: httpx.Client, patient: str) -> None:
    new_id = "11111111-2222-4333-8444-555555555555"
    error(client.patch(f"/phonecalls({new_id})", json={"phonecall_activity_parties": parties(patient)}), 400,
          INVALID_ARGUMENT)
    target = {"@odata.type": "Microsoft.Dynamics.CRM.phonecall", "subject": "x",
              "phonecall_activity_parties": parties(patient)}
    for message in ("CreateMultiple", "UpsertMultiple"):
        error(client.post(f"/phonecalls/Microsoft.Dynamics.CRM.{message}", json={"Targets": [target]}), 400,
              INVALID_ARGUMENT)
    assert count(client, "phonecalls") == 0


def test_activityparties_take_no_direct_writes(client: httpx.Client, patient: str) -> None:
    call = create(client, "phonecalls", {"subject": "x"})
    body = {"partyid_contact@odata.bind": f"/contacts({patient})", "participationtypemask": 2,
            "activityid_phonecall@odata.bind": f"/phonecalls({call})"}
    r = client.post("/activityparties", json=body)
    error(r, 400, INVALID_ARGUMENT)
    assert "'Create' method does not support entities of type 'activityparty'" in r.json()["error"]["message"]
    assert count(client, "activityparties") == 0


def test_put_replaces_every_party(client: httpx.Client, patient: str) -> None:
    call = create(client, "phonecalls", {"subject": "x", "phonecall_activity_parties": parties(patient)})
    before = client.get(f"/phonecalls({call})", params={"$select": "versionnumber"}).json()["versionnumber"]
    r = client.put(f"/phonecalls({call})/phonecall_activity_parties",
                   json={"value": parties(patient, sender="patient")})
    assert r.status_code == 204, r.text
    assert read_parties(client, call) == {(1, patient), (2, USER)}
    assert client.get(f"/phonecalls({call})", params={"$select": "versionnumber"}).json()["versionnumber"] > before
    error(client.put(f"/phonecalls({MISSING})/phonecall_activity_parties", json={"value": []}), 404, NOT_FOUND)


def test_parties_of_a_completed_activity_are_read_only(client: httpx.Client, patient: str) -> None:
    call = create(client, "phonecalls", {"subject": "x", "phonecall_activity_parties": parties(patient)})
    assert client.patch(f"/phonecalls({call})", json={"statecode": 1, "statuscode": 2}).status_code == 204
    error(client.put(f"/phonecalls({call})/phonecall_activity_parties", json={"value": []}), 400, INVALID_ARGUMENT)
    assert read_parties(client, call) == {(1, USER), (2, patient)}


def test_deleting_the_activity_deletes_its_parties(client: httpx.Client, patient: str) -> None:
    call = create(client, "phonecalls", {"subject": "x", "phonecall_activity_parties": parties(patient)})
    keep = create(client, "phonecalls", {"subject": "y", "phonecall_activity_parties": parties(patient)})
    assert client.delete(f"/phonecalls({call})").status_code == 204
    assert read_parties(client, call) == set()
    assert len(read_parties(client, keep)) == 2
    assert client.get(f"/contacts({patient})").status_code == 200  # the party itself stays


def test_deep_insert_and_put_inside_batch(client: httpx.Client, patient: str) -> None:
    call = create(client, "phonecalls", {"subject": "y"})
    r = post_batch(client,
                   request("POST", "/api/data/v9.2/emails",
                           {"subject": "x", "email_activity_parties": parties(patient)}),
                   request("PUT", f"/api/data/v9.2/phonecalls({call})/phonecall_activity_parties",
                           {"value": parties(patient, sender="patient")}),
                   prefer="odata.continue-on-error")
    assert r.status_code == 200, r.text
    assert [p.status for p in parts_of(r)] == [204, 204]
    mail = re.search(r"\(([^)]+)\)$", parts_of(r)[0].http_headers["odata-entityid"])[1]
    assert read_parties(client, mail) == {(1, USER), (2, patient)}
    assert read_parties(client, call) == {(1, patient), (2, USER)}



def test_an_email_refuses_a_contact_as_sender_as_its_published_targets_say(client: httpx.Client, patient: str) -> None:
    """email.from targets queue and systemuser only (Microsoft's metadata); a phone call's may be a contact."""
    r = client.post("/emails", json={"subject": "x", "email_activity_parties": parties(patient, sender="patient")})
    error(r, 400, INVALID_ARGUMENT)
    assert "'from'" in r.json()["error"]["message"] and count(client, "emails") == 0
    call = create(client, "phonecalls", {"subject": "x", "phonecall_activity_parties": parties(patient, sender="patient")})
    assert read_parties(client, call) == {(1, patient), (2, USER)}
