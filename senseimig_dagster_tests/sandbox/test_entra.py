"""The Entra ID stand-in's wire behaviour (in-process and over HTTPS) and the local-CA TLS server."""

from __future__ import annotations

import base64
import logging
import ssl

import httpx
import orjson
import pytest

from senseimig_dagster.sandbox.entra import EntraStandIn, serve_entra
from senseimig_dagster.sandbox.tls import TLSFiles

TENANT = "contoso-tenant"
SECRET = "Sup3r~secret.value"
ENV = "https://org.crm.dynamics.com"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stand_in(clock: Clock) -> EntraStandIn:
    return EntraStandIn(apps={"app-1": SECRET}, tenant=TENANT, clock=clock, seed=1)


@pytest.fixture
def client(stand_in: EntraStandIn):
    with httpx.Client(transport=httpx.WSGITransport(app=stand_in), base_url="https://login.test") as c:
        yield c


def _token(client: httpx.Client, **overrides) -> httpx.Response:
    form = {"grant_type": "client_credentials", "client_id": "app-1", "client_secret": SECRET,
            "scope": f"{ENV}/.default"}
    form.update(overrides)
    return client.post(f"/{TENANT}/oauth2/v2.0/token", data={k: v for k, v in form.items() if v is not None})


def test_openid_configuration_points_back_at_the_host(client: httpx.Client):
    r = client.get(f"/{TENANT}/v2.0/.well-known/openid-configuration")
    assert r.status_code == 200
    doc = r.json()
    assert doc["token_endpoint"] == f"https://login.test/{TENANT}/oauth2/v2.0/token"
    assert doc["issuer"] == f"https://login.test/{TENANT}/v2.0"
    assert doc["authorization_endpoint"].endswith("/oauth2/v2.0/authorize")


def test_instance_discovery_route(client: httpx.Client, stand_in: EntraStandIn):
    r = client.get("/common/discovery/instance", params={"api-version": "1.0"})
    assert r.json()["tenant_discovery_endpoint"] == (
        f"https://login.test/{TENANT}/v2.0/.well-known/openid-configuration")
    assert stand_in.stats["instance_discovery"] == 1


def test_unknown_tenant(client: httpx.Client):
    r = client.get("/someone-else/v2.0/.well-known/openid-configuration")
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_tenant" and r.json()["error_codes"] == [90002]


def test_issues_expiring_tokens(client: httpx.Client, stand_in: EntraStandIn, clock: Clock):
    r = _token(client)
    assert r.status_code == 200 and r.headers["cache-control"].startswith("no-store")
    body = r.json()
    assert body["token_type"] == "Bearer" and 3600 <= body["expires_in"] <= 5400
    info = stand_in.token_info(body["access_token"])
    assert info == ("app-1", f"{ENV}/.default", clock.now + body["expires_in"], TENANT)
    assert info.issuer == f"https://sts.windows.net/{TENANT}/"
    claims = orjson.loads(base64.urlsafe_b64decode(body["access_token"].split(".")[1] + "=="))
    assert claims["aud"] == ENV and claims["appid"] == "app-1" and claims["tid"] == TENANT
    clock.now = info.expires_at - 1
    assert stand_in.token_info(body["access_token"]) is not None
    clock.now = info.expires_at
    assert stand_in.token_info(body["access_token"]) is None
    assert stand_in.token_info("made.up.token") is None


def test_lifetimes_spread_over_60_to_90_minutes(client: httpx.Client):
    lifetimes = {_token(client).json()["expires_in"] for _ in range(40)}
    assert min(lifetimes) >= 3600 and max(lifetimes) <= 5400 and len(lifetimes) > 20


def test_double_slash_scope_is_accepted(client: httpx.Client, stand_in: EntraStandIn):
    r = _token(client, scope=f"{ENV}//.default")
    assert r.status_code == 200
    info = stand_in.token_info(r.json()["access_token"])
    assert info.scope == f"{ENV}//.default" and info.resource == ENV


def test_client_secret_basic(client: httpx.Client, stand_in: EntraStandIn):
    r = client.post(f"/{TENANT}/oauth2/v2.0/token", auth=("app-1", SECRET),
                    data={"grant_type": "client_credentials", "scope": f"{ENV}/.default"})
    assert r.status_code == 200 and stand_in.token_info(r.json()["access_token"]).client_id == "app-1"


@pytest.mark.parametrize(("overrides", "status", "error", "code"), [
    ({"client_secret": "wrong"}, 401, "invalid_client", 7000215),
    ({"client_secret": None}, 401, "invalid_client", 7000218),
    ({"client_id": "stranger"}, 400, "unauthorized_client", 700016),
    ({"scope": f"{ENV}/user_impersonation"}, 400, "invalid_scope", 1002012),
    ({"scope": f"{ENV}/.default https://graph.microsoft.com/.default"}, 400, "invalid_scope", 1002012),
    ({"scope": None}, 400, "invalid_request", 900144),
    ({"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
    ({"grant_type": None}, 400, "invalid_request", 900144),
])
def test_errors_in_entra_shape(client: httpx.Client, stand_in: EntraStandIn, overrides, status, error, code):
    correlation = "0f0e0d0c-0b0a-4909-8807-060504030201"
    form = {"grant_type": "client_credentials", "client_id": "app-1", "client_secret": SECRET,
            "scope": f"{ENV}/.default"} | overrides
    r = client.post(f"/{TENANT}/oauth2/v2.0/token", headers={"client-request-id": correlation},
                    data={k: v for k, v in form.items() if v is not None})
    assert r.status_code == status
    body = r.json()
    assert body["error"] == error and body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert f"Correlation ID: {correlation}" in body["error_description"]
    assert body["correlation_id"] == correlation and body["trace_id"] and body["timestamp"].endswith("Z")
    assert SECRET not in r.text
    assert stand_in.stats["tokens_issued"] == 0 and stand_in.stats["token_errors"] == 1


def test_token_endpoint_wants_post(client: httpx.Client):
    r = client.get(f"/{TENANT}/oauth2/v2.0/token")
    assert r.status_code == 400 and r.json()["error_codes"] == [900561]


def test_revocation_and_app_removal(client: httpx.Client, stand_in: EntraStandIn):
    t1, t2 = _token(client).json()["access_token"], _token(client).json()["access_token"]
    assert stand_in.revoke(t1) and stand_in.token_info(t1) is None and stand_in.token_info(t2) is not None
    stand_in.remove_app("app-1")
    assert _token(client).json()["error"] == "unauthorized_client"
    assert stand_in.revoke_all("app-1") == 1 and stand_in.token_info(t2) is None


def test_handles_only_its_routes():
    assert EntraStandIn.handles(f"/{TENANT}/oauth2/v2.0/token")
    assert EntraStandIn.handles("/x/v2.0/.well-known/openid-configuration")
    assert not EntraStandIn.handles("/api/data/v9.2/contacts")


def test_secrets_and_tokens_stay_out_of_repr_and_logs(client: httpx.Client, stand_in: EntraStandIn,
                                                      caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG, logger="senseimig")
    token = _token(client).json()["access_token"]
    _token(client, client_secret="Wrong-" + SECRET)
    assert SECRET not in repr(stand_in)
    assert caplog.records and SECRET not in caplog.text and token not in caplog.text


def test_served_over_https_with_the_local_ca(stand_in: EntraStandIn, tls_files: TLSFiles):
    with serve_entra(stand_in, tls=tls_files) as url:
        assert url.startswith("https://127.0.0.1:")
        with httpx.Client(verify=ssl.create_default_context(cafile=str(tls_files.ca_cert))) as c:
            doc = c.get(f"{url}/{TENANT}/v2.0/.well-known/openid-configuration").json()
            assert doc["token_endpoint"] == f"{url}/{TENANT}/oauth2/v2.0/token"  # scheme and port from the request
            r = c.post(doc["token_endpoint"], data={"grant_type": "client_credentials", "client_id": "app-1",
                                                    "client_secret": SECRET, "scope": f"{ENV}/.default"})
            assert r.status_code == 200 and stand_in.token_info(r.json()["access_token"]) is not None
        with pytest.raises(httpx.ConnectError), httpx.Client() as c:  # not trusted without the CA
            c.get(f"{url}/{TENANT}/v2.0/.well-known/openid-configuration")
        with pytest.raises(httpx.HTTPError), httpx.Client() as c:  # plain http to the TLS port
            c.get(url.replace("https://", "http://") + "/x", timeout=2)
        with httpx.Client(verify=tls_files.client_context()) as c:  # the server survived both
            assert c.get(f"{url}/{TENANT}/v2.0/.well-known/openid-configuration").status_code == 200


def test_local_ca_files(tls_files: TLSFiles):
    assert tls_files.ca_cert.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" in tls_files.key.read_text() and (tls_files.key.stat().st_mode & 0o077) == 0
    assert not list(tls_files.ca_cert.parent.glob("ca-key*"))  # the CA key is never written
