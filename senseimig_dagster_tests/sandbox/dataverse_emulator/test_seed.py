"""Seed data and the one-port token endpoint (Entra's token path on the emulator's own port): what a fresh
environment holds, that a restart never re-seeds, custom seed files, and tokens from the emulator's own port that
expire."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import httpx
import pytest

from senseimig_dagster.sandbox.dataverse_emulator import Catalog
from senseimig_dagster.sandbox.dataverse_emulator import seed as seed_module
from senseimig_dagster.sandbox.dataverse_emulator.app import DataverseEmulator
from senseimig_dagster.sandbox.dataverse_emulator.seed import apply_seed, load_seed
from senseimig_dagster.sandbox.dataverse_emulator.server import single_port_app
from senseimig_dagster.sandbox.dataverse_emulator.store import RecordStore
from senseimig_dagster.sandbox.entra import EntraStandIn
from senseimig_dagster_tests.support.constants import SEED_TEAM, SEED_TEAM_NAME

SEED = load_seed()
ENV = "https://dv.test"


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[DataverseEmulator]:
    catalog = Catalog.load()
    store = RecordStore(tmp_path / "dv.sqlite", catalog)
    assert apply_seed(store, SEED) is True
    yield DataverseEmulator(catalog, store)
    store.close()


def test_a_fresh_store_holds_the_organization_business_unit_users_and_team(client: httpx.Client) -> None:
    org = client.get("/organizations", params={"$select": "name,maxuploadfilesize"}).json()["value"]
    assert [(o["organizationid"], o["maxuploadfilesize"]) for o in org] == [
        ("5eed0000-0000-4000-8000-000000000001", 5_242_880)]
    assert client.get("/businessunits/$count").text == "1"
    users = client.get("/systemusers", params={
        "$select": "fullname,internalemailaddress,domainname,isdisabled,accessmode,applicationid,"
                   "_businessunitid_value"}).json()["value"]
    by_mail = {u["internalemailaddress"]: u for u in users}
    assert by_mail["dana.departed@sandbox.example"]["isdisabled"] is True
    assert by_mail["harper.hygienist@sandbox.example"]["fullname"] == "Harper Hygienist"
    assert {u["internalemailaddress"] for u in users if u["accessmode"] == 4 and not u.get("applicationid")} == {
        "integration@sandbox.example"}
    app_users = [u for u in users if u.get("applicationid")]
    assert [u["systemuserid"] for u in app_users] == [SEED.application_users["sandbox-client"]]
    assert all(u["_businessunitid_value"] == SEED.businessunit["businessunitid"] for u in users)
    enabled = client.get("/systemusers", params={"$filter": "isdisabled eq false", "$select": "fullname"})
    assert len(enabled.json()["value"]) == 4
    teams = client.get("/teams", params={"$select": "name,teamtype,_administratorid_value"}).json()["value"]
    assert [(t["teamid"], t["name"], t["teamtype"]) for t in teams] == [
        (SEED_TEAM, SEED_TEAM_NAME, 0)]


def test_guids_are_deterministic() -> None:
    again = load_seed()
    assert [u["systemuserid"] for u in again.systemusers] == [u["systemuserid"] for u in SEED.systemusers]
    assert SEED.user("AVERY.ADMIN@sandbox.example")["systemuserid"] == "5eed0000-0000-4000-8000-000000000101"
    assert "sandbox-secret" not in repr(SEED)


def test_a_restart_does_not_reseed(tmp_path: Path) -> None:
    catalog = Catalog.load()
    store = RecordStore(tmp_path / "dv.sqlite", catalog)
    apply_seed(store, SEED)
    org = SEED.organization["organizationid"]
    store.update("organization", org, {"maxuploadfilesize": 131_072_000})  # an admin raised the limit
    store.close()
    store = RecordStore(tmp_path / "dv.sqlite", catalog)
    try:
        assert apply_seed(store, SEED) is False
        assert store.count("systemuser") == len(SEED.systemusers) and store.count("organization") == 1
        assert store.retrieve("organization", org).values["maxuploadfilesize"] == 131_072_000
        assert store.default_owner == SEED.default_owner  # set on every start
    finally:
        store.close()


def test_a_custom_yaml_seed_sets_credentials_limit_and_owner(tmp_path: Path) -> None:
    raw = json.loads(resources.files(seed_module.__package__).joinpath(seed_module.DEFAULT_SEED_FILE).read_text())
    raw["applications"] = [{"client_id": "dental-app", "client_secret": "s3cret-value",
                            "systemuserid": "5eed0000-0000-4000-8000-000000000104"}]
    raw["organization"]["maxuploadfilesize"] = 1000
    path = tmp_path / "seed.yaml"
    import yaml

    path.write_text(yaml.safe_dump(raw))
    seed = load_seed(path)
    assert seed.apps == {"dental-app": "s3cret-value"} and seed.default_owner.endswith("000000000104")
    entra = EntraStandIn(apps=seed.apps, tenant=seed.tenant)
    catalog = Catalog.load()
    store = RecordStore(tmp_path / "dv.sqlite", catalog)
    apply_seed(store, seed)
    app = single_port_app(entra, DataverseEmulator(catalog, store, token_validator=entra.token_info,
                                                     tenant=entra.tenant))
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=ENV) as c:
        form = {"grant_type": "client_credentials", "scope": f"{ENV}/.default"}
        refused = c.post(f"/{seed.tenant}/oauth2/v2.0/token",
                         data={**form, "client_id": "sandbox-client", "client_secret": "sandbox-secret"})
        assert refused.status_code == 400 and refused.json()["error"] == "unauthorized_client"
        token = c.post(f"/{seed.tenant}/oauth2/v2.0/token",
                       data={**form, "client_id": "dental-app", "client_secret": "s3cret-value"}).json()
        r = c.post("/api/data/v9.2/annotations", json={"subject": "S", "documentbody": "A" * 1001},
                   headers={"Authorization": f"Bearer {token['access_token']}"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "0x80044a02"
    store.close()


@pytest.mark.parametrize("change", [
    {"applications": [{"client_id": "a", "client_secret": "do-not-print", "systemuserid": "unknown"}]},
    {"applications": []},
    {"organization": None},
])
def test_an_invalid_seed_file_is_refused_without_its_secrets(tmp_path: Path, change: dict) -> None:
    raw = {"tenant": "t", "organization": {"organizationid": "5eed0000-0000-4000-8000-000000000001"},
           "businessunit": {"businessunitid": "5eed0000-0000-4000-8000-000000000002"}, "systemusers": []} | change
    if raw["organization"] is None:
        del raw["organization"]
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="seed file") as info:
        load_seed(path)
    assert "do-not-print" not in str(info.value)


def test_the_cli_passes_the_seed_file(monkeypatch, tmp_path: Path) -> None:
    from senseimig_dagster import cli
    from senseimig_dagster.sandbox.dataverse_emulator import server

    calls: list[dict] = []
    monkeypatch.setattr(server, "run_dataverse_server", lambda *a, **kw: calls.append(kw))
    args = cli.build_parser().parse_args(["sandbox", "dataverse", "--db", str(tmp_path / "dv.sqlite"),
                                          "--seed", str(tmp_path / "seed.yaml")])
    assert args.func(args) == 0
    assert calls[0]["seed"] == tmp_path / "seed.yaml"


class Clock:
    now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_one_port_issues_tokens_that_expire(tmp_path: Path) -> None:
    clock = Clock()
    entra = EntraStandIn(apps=SEED.apps, tenant=SEED.tenant, clock=clock)
    catalog = Catalog.load()
    store = RecordStore(tmp_path / "dv.sqlite", catalog)
    apply_seed(store, SEED)
    app = single_port_app(entra, DataverseEmulator(catalog, store, token_validator=entra.token_info,
                                                     tenant=entra.tenant))
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=ENV) as c:
        discovery = c.get(f"/{SEED.tenant}/v2.0/.well-known/openid-configuration").json()
        assert discovery["token_endpoint"] == f"{ENV}/{SEED.tenant}/oauth2/v2.0/token"
        assert c.get("/common/discovery/instance").status_code == 200
        token = c.post(discovery["token_endpoint"], data={
            "grant_type": "client_credentials", "client_id": "sandbox-client", "client_secret": "sandbox-secret",
            "scope": f"{ENV}/.default"}).json()
        assert 3600 <= token["expires_in"] <= 5400
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        assert c.get("/api/data/v9.2/contacts", headers=auth).status_code == 200
        assert c.get("/api/data/v9.2/contacts").status_code == 401
        clock.now += token["expires_in"]
        r = c.get("/api/data/v9.2/contacts", headers=auth)
        assert r.status_code == 401 and r.json()["error"]["code"] == "0x8005F101"
    store.close()


def test_sharepoint_integration_seeds_the_default_site_and_the_contact_library(client: httpx.Client) -> None:
    sites = client.get("/sharepointsites", params={"$select": "absoluteurl,isdefault"}).json()["value"]
    assert [(s["absoluteurl"], s["isdefault"]) for s in sites] == [("https://contoso.sharepoint.com/sites/dental", True)]
    site = sites[0]["sharepointsiteid"]
    library = client.get("/sharepointdocumentlocations", params={
        "$filter": f"_parentsiteorlocation_value eq {site} and relativeurl eq 'contact'"}).json()["value"]
    assert len(library) == 1
    contact = client.post("/contacts", json={"lastname": "P"}).headers["OData-EntityId"].rsplit("(", 1)[1][:-1]
    folder = {"name": "Documents", "relativeurl": "ABC",
              "parentsiteorlocation_sharepointdocumentlocation@odata.bind":
                  f"/sharepointdocumentlocations({library[0]['sharepointdocumentlocationid']})",
              "regardingobjectid_contact@odata.bind": f"/contacts({contact})"}  # document management on contact
    assert client.post("/sharepointdocumentlocations", json=folder).status_code == 204
    both = client.post("/sharepointdocumentlocations", json={**folder, "absoluteurl": "https://x.test/a"})
    assert both.status_code == 400 and both.json()["error"]["code"] == "0x80040203"
    account = client.post("/sharepointdocumentlocations", json={  # a table without document management
        "name": "x", "relativeurl": "y", "regardingobjectid_email@odata.bind": f"/emails({contact})"})
    assert account.status_code == 400
