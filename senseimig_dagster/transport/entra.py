"""Microsoft Entra ID app-only tokens (client credentials) through msal, and an ``httpx.Auth`` that puts them on
requests: shared by the Dataverse and the Microsoft Graph clients.

Per Microsoft (authenticate with OAuth): scope ``<resource>/.default`` (a Dataverse environment URL, or Graph's
``https://graph.microsoft.com``); no refresh token with client
credentials, so call ``acquire_token_for_client`` before every request (msal serves its cache until about five
minutes before expiry); on a 401 re-acquire once and retry. Secrets and tokens never reach logs, reprs or errors.

msal accepts only ``https://`` authorities; against the sandbox's Entra stand-in pass its authority host and the
local CA file as ``verify``. msal talks HTTP through httpx here (see :class:`_MsalHttpClient`).
"""

from __future__ import annotations

import re
import ssl
import threading
from collections.abc import Generator, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
import msal
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"


class EntraAuthError(Exception):
    """A token could not be acquired. ``error`` is the OAuth error (``invalid_client``...), ``codes`` the AADSTS
    numbers, ``correlation_id`` what Microsoft support asks for. Never contains the secret or a token."""

    def __init__(self, message: str, error: str | None = None, codes: tuple[int, ...] = (),
                 correlation_id: str | None = None):
        super().__init__(message)
        self.error, self.codes, self.correlation_id = error, codes, correlation_id

    @property
    def aadsts(self) -> str | None:
        return f"AADSTS{self.codes[0]}" if self.codes else None


class _MsalHttpClient:
    """msal's HTTP client interface (``msal.oauth2cli.http.HttpClient``) over httpx.

    msal's default is a ``requests.Session`` with ``verify`` set on the session, which requests lets
    ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` override (psf/requests#3829), so a CA given here would be ignored
    wherever those are set. httpx honours ``verify`` as given."""

    def __init__(self, verify: bool | str, timeout: float):
        context: bool | ssl.SSLContext = (ssl.create_default_context(cafile=verify) if isinstance(verify, str)
                                          else verify)
        self._client = httpx.Client(verify=context, timeout=timeout, follow_redirects=False)

    def post(self, url: str, params: Mapping[str, Any] | None = None, data: Any = None,
             headers: Mapping[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        if isinstance(data, str):
            return self._client.post(url, params=params, content=data.encode("utf-8"), headers=headers,
                                     timeout=kwargs.get("timeout", httpx.USE_CLIENT_DEFAULT))
        return self._client.post(url, params=params, data=data, headers=headers,
                                 timeout=kwargs.get("timeout", httpx.USE_CLIENT_DEFAULT))

    def get(self, url: str, params: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None,
            **kwargs: Any) -> httpx.Response:
        return self._client.get(url, params=params, headers=headers,
                                timeout=kwargs.get("timeout", httpx.USE_CLIENT_DEFAULT))

    def close(self) -> None:
        self._client.close()


class EntraTokenProvider:
    """App-only tokens for one resource (a Dataverse environment, Microsoft Graph), cached by msal (in memory, per
    provider).

    Credential: ``client_secret``, or ``certificate={"private_key": <PEM>, "thumbprint": <SHA-1 hex>}`` (optionally
    ``"public_certificate"`` for subject-name/issuer auth), passed to msal as its ``client_credential`` dict
    (msal then signs a client assertion instead of sending a secret)."""

    def __init__(self, tenant_id: str, client_id: str, client_secret: str | None, resource: str,
                 authority_host: str = DEFAULT_AUTHORITY_HOST, verify: bool | str = True,
                 timeout: float = 30.0, *, certificate: Mapping[str, str] | None = None):
        if not tenant_id or not client_id:
            raise ValueError("tenant_id and client_id are required")
        if bool(client_secret) == bool(certificate):
            raise ValueError("give exactly one credential: client_secret or certificate")
        if certificate and not (certificate.get("private_key") and certificate.get("thumbprint")):
            raise ValueError("a certificate credential needs 'private_key' and 'thumbprint'")
        self._certificate = dict(certificate) if certificate else None
        self.tenant_id, self.client_id = tenant_id, client_id
        self.resource = resource.rstrip("/")
        self.scope = f"{self.resource}/.default"
        self.authority = f"{authority_host.rstrip('/')}/{tenant_id}"
        self._secret = client_secret
        self._verify = verify
        self._timeout = timeout
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        credential = "certificate='***'" if self._certificate else "client_secret='***'"
        return (f"EntraTokenProvider(tenant_id={self.tenant_id!r}, client_id={self.client_id!r}, "
                f"{credential}, resource={self.resource!r}, authority={self.authority!r})")

    def _credential(self) -> str | dict[str, str]:
        return self._certificate if self._certificate is not None else self._secret

    def _application(self) -> msal.ConfidentialClientApplication:
        # Built on first use: msal fetches the authority's OpenID configuration in its constructor.
        if self._app is None:
            host = urlsplit(self.authority).hostname or ""
            try:
                self._app = msal.ConfidentialClientApplication(
                    self.client_id, client_credential=self._credential(), authority=self.authority,
                    http_client=_MsalHttpClient(self._verify, self._timeout),
                    # Instance discovery asks login.microsoftonline.com whether the authority host is known; a
                    # private authority (the sandbox) is known to us, not to Microsoft.
                    instance_discovery=None if host in WELL_KNOWN_AUTHORITY_HOSTS else False,
                )
            except Exception as e:  # ValueError from discovery, transport errors
                # msal replaces discovery's own error (which holds Entra's JSON body) with a generic one; the
                # original is its __context__.
                chain = f"{e} {e.__context__ or ''}"
                codes = tuple(dict.fromkeys(int(c) for c in re.findall(r"AADSTS(\d+)", chain)))
                error = re.search(r'"error"\s*:\s*"(\w+)"', chain)
                prefix = f"{error[1] if error else 'error'}: AADSTS{codes[0]}: " if codes else ""
                raise EntraAuthError(
                    self._scrub(f"cannot use authority {self.authority}: {prefix}{type(e).__name__}: {e}"),
                    error=error[1] if error else None, codes=codes) from None
        return self._app

    def token(self) -> str:
        """A valid access token: msal's cached one while it has more than ~5 minutes left, else a fresh one."""
        with self._lock:
            app = self._application()
            try:
                result = app.acquire_token_for_client(scopes=[self.scope])
            except Exception as e:  # transport failures
                raise EntraAuthError(self._scrub(
                    f"token request to {self.authority} failed: {type(e).__name__}: {e}")) from None
        if "access_token" in result:
            return result["access_token"]
        error = result.get("error")
        codes = tuple(int(c) for c in result.get("error_codes") or () if str(c).isdigit())
        description = (result.get("error_description") or "").split("\r\n", 1)[0].split("\n", 1)[0]
        raise EntraAuthError(
            self._scrub(f"token request for {self.scope} as client {self.client_id} failed: {error}: "
                        f"{description}"),
            error=error, codes=codes, correlation_id=result.get("correlation_id"))

    def invalidate(self, token: str | None = None) -> None:
        """Drop the cached token (only if it is still ``token``, when given), so the next :meth:`token` fetches a
        new one. Used after a 401: several requests failing with the same token cause one re-acquisition."""
        with self._lock:
            if self._app is None:
                return
            cache = self._app.token_cache
            for entry in list(cache.search(cache.CredentialType.ACCESS_TOKEN, target=[self.scope])):
                if token is None or entry.get("secret") == token:
                    cache.remove_at(entry)

    def close(self) -> None:
        """Close msal's HTTP connections and drop its cache; a later :meth:`token` starts afresh."""
        with self._lock:
            if self._app is not None:
                self._app.http_client.close()
                self._app = None

    def __enter__(self) -> EntraTokenProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _scrub(self, text: str) -> str:
        for secret in (self._secret, (self._certificate or {}).get("private_key")):
            if secret:
                text = text.replace(secret, "***")
        return text


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer <token>`` on every request; on a 401, invalidate the token and retry once.

    Synchronous: under an ``httpx.AsyncClient`` the (rarely network-bound) token lookup blocks the loop briefly."""

    requires_request_body = True  # a streamed body must be replayable for the retry

    def __init__(self, provider: EntraTokenProvider):
        self.provider = provider

    def __repr__(self) -> str:
        return f"BearerAuth({self.provider!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.provider.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            self.provider.invalidate(token)
            request.headers["Authorization"] = f"Bearer {self.provider.token()}"
            yield request
