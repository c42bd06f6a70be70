"""Bearer tokens: the emulator accepts only tokens Entra ID issued, in its tenant, for this environment; a token
for Microsoft Graph or another host is refused like a missing one (401 with Dataverse's challenge), on record
requests, ``$batch``, note downloads and the metadata API alike."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from senseimig_dagster.sandbox.dataverse_emulator.app import DataverseEmulator
from senseimig_dagster.sandbox.entra import EntraStandIn
from senseimig_dagster_tests.support import environments
from senseimig_dagster_tests.support.constants import EMULATOR_URL, ENV_URL
from senseimig_dagster_tests.support.web_api import error_of, post_batch, request, web_api_client

TENANT = "22222222-3333-4444-8555-666666666666"


@pytest.fixture
def entra() -> EntraStandIn:
    return EntraStandIn(apps={"app": "pw", "other-tenant-app": "pw"}, tenant=TENANT, seed=5)


@pytest.fixture
def emulator(tmp_path: Path, entra: EntraStandIn) -> Iterator[DataverseEmulator]:
    with environments.emulator(tmp_path / "dv.sqlite", key_delay=None, column_delay=None) as app:
        app.token_validator, app.tenant = entra.token_info, TENANT
        yield app


def token(stand_in: EntraStandIn, resource: str, client_id: str = "app") -> str:
    with httpx.Client(transport=httpx.WSGITransport(app=stand_in), base_url="https://login.test") as login:
        r = login.post(f"/{stand_in.tenant}/oauth2/v2.0/token", data={
            "grant_type": "client_credentials", "client_id": client_id, "client_secret": "pw",
            "scope": f"{resource}/.default"})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def note_of(client: httpx.Client) -> str:
    r = client.post("/annotations", json={"subject": "x", "filename": "a.txt", "documentbody": "YQ=="},
                    headers={"Prefer": "return=representation"})
    assert r.status_code == 201, r.text
    return r.json()["annotationid"]


def assert_challenged(r: httpx.Response) -> None:
    assert error_of(r, 401)["code"] == "0x8005F101"
    assert r.headers["www-authenticate"] == (
        f"Bearer authorization_uri=https://login.microsoftonline.com/{TENANT}/oauth2/authorize, "
        f"resource_id={EMULATOR_URL}/")


def test_only_tokens_for_this_environment_pass(emulator: DataverseEmulator, entra: EntraStandIn) -> None:
    good = token(entra, EMULATOR_URL)
    with web_api_client(emulator, headers={"Authorization": f"Bearer {good}"}) as client:
        note = note_of(client)
        requests = {
            "records": lambda c: c.get("/contacts"),
            "batch": lambda c: post_batch(c, request("GET", "/api/data/v9.2/contacts")),
            "note download": lambda c: c.get(f"/annotations({note})/documentbody/$value"),
            "metadata": lambda c: c.get("/EntityDefinitions(LogicalName='contact')",
                                        params={"$select": "LogicalName"}),
        }
        for what, send in requests.items():
            assert send(client).status_code == 200, what
        refused = {"graph": token(entra, "https://graph.microsoft.com"), "evil": token(entra, "https://evil.example"),
                   "another environment": token(entra, ENV_URL), "none": None}
        for name, bad in refused.items():
            client.headers.pop("Authorization")
            if bad is not None:
                client.headers["Authorization"] = f"Bearer {bad}"
            for what, send in requests.items():
                r = send(client)
                assert r.status_code == 401, (name, what, r.text)
                assert_challenged(r)


def test_the_audience_is_compared_without_case_or_trailing_slash(emulator: DataverseEmulator,
                                                                  entra: EntraStandIn) -> None:
    with web_api_client(emulator) as client:
        for resource in (EMULATOR_URL.upper().replace("HTTP://", "http://"), EMULATOR_URL + "/"):
            r = client.get("/contacts", headers={"Authorization": f"Bearer {token(entra, resource)}"})
            assert r.status_code == 200, (resource, r.text)


def test_a_configured_environment_url_is_the_audience(emulator: DataverseEmulator, entra: EntraStandIn) -> None:
    emulator.audience = ENV_URL  # served behind another address than the one tokens name
    with web_api_client(emulator) as client:
        assert client.get("/contacts", headers={"Authorization": f"Bearer {token(entra, ENV_URL)}"}).status_code == 200
        r = client.get("/contacts", headers={"Authorization": f"Bearer {token(entra, EMULATOR_URL)}"})
        assert r.status_code == 401 and r.headers["www-authenticate"].endswith(f"resource_id={ENV_URL}/")


def test_a_token_from_another_tenant_is_refused(emulator: DataverseEmulator) -> None:
    foreign = EntraStandIn(apps={"app": "pw"}, tenant="99999999-0000-4000-8000-000000000000")
    emulator.token_validator = lambda t: foreign.token_info(t)  # a validator that knows the other tenant's tokens
    with web_api_client(emulator) as client:
        r = client.get("/contacts", headers={"Authorization": f"Bearer {token(foreign, EMULATOR_URL)}"})
        assert_challenged(r)
