"""EntraTokenProvider and BearerAuth against the Entra stand-in over HTTPS (msal does the protocol)."""

from __future__ import annotations

import logging

import httpx
import pytest

from senseimig_dagster.dataverse import BearerAuth, EntraAuthError, EntraTokenProvider
from senseimig_dagster_tests.support.constants import DATAVERSE_CLIENT_ID as CLIENT_ID
from senseimig_dagster_tests.support.constants import DATAVERSE_SECRET as SECRET
from senseimig_dagster_tests.support.constants import ENV_URL
from senseimig_dagster_tests.support.constants import TEST_TENANT as TENANT
from senseimig_dagster_tests.support.environments import Entra


def provider(entra: Entra, secret: str = SECRET, tenant: str = TENANT, env_url: str = ENV_URL):
    return EntraTokenProvider(tenant, CLIENT_ID, secret, env_url, authority_host=entra.url, verify=entra.ca)


def test_acquires_a_token_from_the_stand_in(entra: Entra):
    token = provider(entra).token()
    info = entra.stand_in.token_info(token)
    assert info is not None
    assert info.client_id == CLIENT_ID and info.scope == f"{ENV_URL}/.default" and info.resource == ENV_URL
    assert 3600 <= info.expires_at - entra.clock() <= 5400
    assert entra.stand_in.stats["discovery"] == 1 and entra.stand_in.stats["token_requests"] == 1
    assert entra.stand_in.stats["instance_discovery"] == 0  # skipped: instance_discovery=False


def test_second_call_is_served_from_msal_cache(entra: Entra):
    with provider(entra) as p:
        first = p.token()
        entra.clock.advance(30 * 60)
        assert p.token() == first
    assert entra.stand_in.stats["token_requests"] == 1


def test_new_token_after_expiry(entra: Entra):
    p = provider(entra)
    first = p.token()
    entra.clock.advance(entra.stand_in.token_info(first).expires_at - entra.clock() + 1)
    assert entra.stand_in.token_info(first) is None
    second = p.token()
    assert second != first and entra.stand_in.token_info(second) is not None
    assert entra.stand_in.stats["token_requests"] == 2


def test_refreshed_five_minutes_before_expiry(entra: Entra):
    p = provider(entra)
    first = p.token()
    entra.clock.advance(entra.stand_in.token_info(first).expires_at - entra.clock() - 299)
    assert entra.stand_in.token_info(first) is not None  # still valid, but msal renews early
    assert p.token() != first
    assert entra.stand_in.stats["token_requests"] == 2


def test_wrong_secret_names_the_aadsts_code_not_the_secret(entra: Entra):
    wrong = "definitely-Wrong-secret-123"
    with pytest.raises(EntraAuthError) as e:
        provider(entra, secret=wrong).token()
    assert e.value.aadsts == "AADSTS7000215" and e.value.error == "invalid_client"
    assert "AADSTS7000215" in str(e.value)
    assert e.value.correlation_id
    for text in (str(e.value), repr(e.value)):
        assert wrong not in text and SECRET not in text


def test_unknown_client_is_unauthorized_client(entra: Entra):
    p = EntraTokenProvider(TENANT, "nobody", SECRET, ENV_URL, authority_host=entra.url, verify=entra.ca)
    with pytest.raises(EntraAuthError) as e:
        p.token()
    assert e.value.error == "unauthorized_client" and e.value.aadsts == "AADSTS700016"


def test_bad_scope_is_rejected(entra: Entra):
    p = provider(entra)
    p.scope = f"{ENV_URL}/user_impersonation"  # not a /.default scope: refused for client credentials
    with pytest.raises(EntraAuthError) as e:
        p.token()
    assert e.value.error == "invalid_scope" and e.value.aadsts == "AADSTS1002012"


def test_unknown_resource_is_rejected(entra: Entra):
    entra.stand_in._resources = {"https://other.crm.dynamics.com"}
    with pytest.raises(EntraAuthError) as e:
        provider(entra).token()
    assert e.value.error == "invalid_resource" and e.value.aadsts == "AADSTS500011"


def test_unknown_tenant_fails_discovery(entra: Entra):
    with pytest.raises(EntraAuthError) as e:
        provider(entra, tenant="not-my-tenant").token()
    assert e.value.aadsts == "AADSTS90002" and e.value.error == "invalid_tenant"
    assert "AADSTS90002" in str(e.value) and SECRET not in str(e.value)


def test_untrusted_certificate_is_refused(entra: Entra):
    p = EntraTokenProvider(TENANT, CLIENT_ID, SECRET, ENV_URL, authority_host=entra.url, verify=True)
    with pytest.raises(EntraAuthError, match="cannot use authority"):
        p.token()


def test_repr_hides_the_secret(entra: Entra):
    p = provider(entra)
    p.token()
    assert SECRET not in repr(p) and "***" in repr(p) and SECRET not in repr(BearerAuth(p))


def test_environment_url_trailing_slash(entra: Entra):
    token = provider(entra, env_url=ENV_URL + "/").token()
    assert entra.stand_in.token_info(token).scope == f"{ENV_URL}/.default"


def test_invalidate_only_drops_the_rejected_token(entra: Entra):
    p = provider(entra)
    old = p.token()
    p.invalidate(old)
    new = p.token()
    assert new != old
    p.invalidate(old)  # a late 401 for the old token must not throw away the new one
    assert p.token() == new
    assert entra.stand_in.stats["token_requests"] == 2


def _api(entra: Entra, reject_first: bool = False, reject_all: bool = False):
    """A tiny protected API: 200 for a valid bearer token of ours, else 401."""
    seen: list[str] = []

    def app(environ, start_response):
        header = environ.get("HTTP_AUTHORIZATION", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        seen.append(token)
        ok = entra.stand_in.token_info(token) is not None and not reject_all
        if reject_first and len(seen) == 1:
            ok = False
        start_response("200 OK" if ok else "401 Unauthorized", [("Content-Type", "text/plain")])
        return [b"ok" if ok else b"no"]

    return app, seen


def test_bearer_auth_sets_the_header(entra: Entra):
    app, seen = _api(entra)
    with httpx.Client(transport=httpx.WSGITransport(app=app), auth=BearerAuth(provider(entra))) as client:
        assert client.get("http://api/x").status_code == 200
        assert client.get("http://api/y").status_code == 200
    assert len(seen) == 2 and seen[0] == seen[1]
    assert entra.stand_in.stats["token_requests"] == 1


def test_bearer_auth_reacquires_once_after_401(entra: Entra):
    app, seen = _api(entra, reject_first=True)
    with httpx.Client(transport=httpx.WSGITransport(app=app), auth=BearerAuth(provider(entra))) as client:
        response = client.post("http://api/x", content=b"payload")
    assert response.status_code == 200 and len(response.history) == 1
    assert len(seen) == 2 and seen[0] != seen[1]
    assert entra.stand_in.stats["token_requests"] == 2


def test_bearer_auth_after_revocation_at_the_stand_in(entra: Entra):
    p = provider(entra)
    app, seen = _api(entra)
    entra.stand_in.revoke(p.token())  # msal still holds it as valid
    with httpx.Client(transport=httpx.WSGITransport(app=app), auth=BearerAuth(p)) as client:
        assert client.get("http://api/x").status_code == 200
    assert len(seen) == 2


def test_bearer_auth_retries_only_once(entra: Entra):
    app, seen = _api(entra, reject_all=True)
    with httpx.Client(transport=httpx.WSGITransport(app=app), auth=BearerAuth(provider(entra))) as client:
        assert client.get("http://api/x").status_code == 401
    assert len(seen) == 2


def test_no_secret_or_token_in_logs(entra: Entra, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    token = provider(entra).token()
    with pytest.raises(EntraAuthError):
        provider(entra, secret="another-Wrong-one").token()
    text = caplog.text
    assert caplog.records  # msal, httpx and the stand-in did log
    for secret in (SECRET, "another-Wrong-one", token, token.rsplit(".", 1)[-1]):
        assert secret not in text
