"""Entra ID stand-in: as much of the Microsoft identity platform (v2.0 endpoints) as msal's client-credentials
flow uses, as a plain WSGI app (in-process under ``httpx.WSGITransport``, or served by :func:`serve_entra`).

    GET  /{tenant}/v2.0/.well-known/openid-configuration   OpenID discovery (msal's "tenant discovery")
    GET  /common/discovery/instance                        instance discovery (msal only calls it on
                                                           login.microsoftonline.com, and not at all with
                                                           ``instance_discovery=False``; here for completeness)
    POST /{tenant}/oauth2/v2.0/token                       grant_type=client_credentials, client_id,
                                                           client_secret (body or HTTP Basic), scope=<resource>/.default

msal accepts only ``https://`` authorities (``msal.authority.canonicalize``), so serve with ``tls=make_local_ca(dir)``
and give the client the CA file (``verify=``). Tokens are unsigned JWT-shaped strings with a random tail, valid
for a lifetime drawn in [60, 90] minutes as Microsoft documents; :meth:`EntraStandIn.token_info` lets another stand-in
(the Dataverse emulator) validate bearer tokens. Errors carry Entra's shape: ``error``, ``error_description``
starting with an ``AADSTS`` code, ``error_codes``, ``timestamp``, ``trace_id``, ``correlation_id``, ``error_uri``.
Secrets and tokens are never logged.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import random
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import NamedTuple
from urllib.parse import parse_qs, unquote_plus

import orjson

from senseimig_dagster.sandbox.tls import TLSFiles, serve_wsgi

log = logging.getLogger("senseimig.sandbox.entra")

DEFAULT_APPS = {"sandbox-client": "sandbox-secret"}
DEFAULT_TENANT = "00000000-0000-4000-8000-00000000e17a"
DEFAULT_LIFETIME = (3600, 5400)  # seconds; Microsoft: "a random value ranging between 60-90 minutes"
DEFAULT_SCOPE_SUFFIX = "/.default"

_PATH = re.compile(r"^/(?P<tenant>[^/]+)/(?P<route>v2\.0/\.well-known/openid-configuration|oauth2/v2\.0/token)$")
_INSTANCE_DISCOVERY = "/common/discovery/instance"
_STATUS = {200: "200 OK", 400: "400 Bad Request", 401: "401 Unauthorized", 404: "404 Not Found",
           405: "405 Method Not Allowed"}
_PURGE_AT = 1024  # purge expired tokens once this many are held

StartResponse = Callable[..., object]


class TokenInfo(NamedTuple):
    """What a valid access token stands for. ``scope`` is as requested (``https://org.crm.dynamics.com//.default``
    keeps its double slash); :attr:`resource` is the normalised audience (the token's ``aud`` claim), ``tenant``
    the issuing tenant (its ``tid``; ``iss`` is :attr:`issuer`)."""

    client_id: str
    scope: str
    expires_at: float
    tenant: str = ""

    @property
    def resource(self) -> str:
        return resource_of(self.scope)

    @property
    def issuer(self) -> str:
        return issuer_of(self.tenant)


def issuer_of(tenant: str) -> str:
    """The ``iss`` of a v1.0 app-only access token (what Dataverse and Graph receive for ``/.default`` scopes)."""
    return f"https://sts.windows.net/{tenant}/"


def resource_of(scope: str) -> str:
    """``https://org.crm.dynamics.com//.default`` and ``https://org.crm.dynamics.com/.default`` →
    ``https://org.crm.dynamics.com``."""
    return scope[: -len(DEFAULT_SCOPE_SUFFIX)].rstrip("/") if scope.endswith(DEFAULT_SCOPE_SUFFIX) else scope


class _EntraError(Exception):
    def __init__(self, status: int, error: str, code: int, message: str):
        super().__init__(message)
        self.status, self.error, self.code, self.message = status, error, code, message


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class EntraStandIn:
    """WSGI app: a tenant with registered confidential client apps (``{client_id: secret}``).

    ``clock`` returns epoch seconds (inject one to expire tokens without sleeping); ``lifetime`` is the inclusive
    range ``expires_in`` is drawn from; ``resources``, when given, limits which resource scopes tokens are issued
    for (others get AADSTS500011, as for an unknown resource principal).
    """

    def __init__(self, apps: Mapping[str, str] | None = None, tenant: str = DEFAULT_TENANT,
                 lifetime: tuple[int, int] = DEFAULT_LIFETIME, clock: Callable[[], float] = time.time,
                 resources: Iterable[str] | None = None, seed: int | None = None):
        if not 0 < lifetime[0] <= lifetime[1]:
            raise ValueError(f"lifetime must be (low, high) with 0 < low <= high, got {lifetime!r}")
        self.tenant = tenant
        self.lifetime = (int(lifetime[0]), int(lifetime[1]))
        self.clock = clock
        self._apps = dict(DEFAULT_APPS if apps is None else apps)
        self._resources = None if resources is None else {r.rstrip("/") for r in resources}
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._tokens: dict[str, TokenInfo] = {}
        self.stats = {"discovery": 0, "instance_discovery": 0, "token_requests": 0, "tokens_issued": 0,
                      "token_errors": 0}

    def __repr__(self) -> str:  # never the secrets
        return f"EntraStandIn(tenant={self.tenant!r}, apps={sorted(self._apps)!r}, lifetime={self.lifetime!r})"

    # -- registry and token validation (for other stand-ins and tests) ----------------------------------------
    def add_app(self, client_id: str, secret: str) -> None:
        with self._lock:
            self._apps[client_id] = secret

    def remove_app(self, client_id: str) -> None:
        with self._lock:
            self._apps.pop(client_id, None)

    def token_info(self, token: str) -> TokenInfo | None:
        """The token's client, scope and expiry, or ``None`` when it is unknown, revoked or expired."""
        with self._lock:
            info = self._tokens.get(token)
        if info is None or self.clock() >= info.expires_at:
            return None
        return info

    def revoke(self, token: str) -> bool:
        with self._lock:
            return self._tokens.pop(token, None) is not None

    def revoke_all(self, client_id: str | None = None) -> int:
        with self._lock:
            doomed = [t for t, i in self._tokens.items() if client_id is None or i.client_id == client_id]
            for t in doomed:
                del self._tokens[t]
        return len(doomed)

    @staticmethod
    def handles(path: str) -> bool:
        """Whether ``path`` is one of this stand-in's routes (to mount it beside another app on one port)."""
        return path == _INSTANCE_DISCOVERY or _PATH.match(path) is not None

    # -- WSGI ----------------------------------------------------------------------------------------------
    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        correlation_id = self._correlation_id(environ)
        try:
            if path == _INSTANCE_DISCOVERY:
                self._require(method, "GET")
                with self._lock:
                    self.stats["instance_discovery"] += 1
                return self._json(start_response, 200, self._instance_metadata(environ), correlation_id)
            m = _PATH.match(path)
            if m is None:
                return self._json(start_response, 404, {"error": "not_found", "error_description": path},
                                  correlation_id)
            if m["tenant"] != self.tenant:
                raise _EntraError(400, "invalid_tenant", 90002,
                                  f"Tenant '{m['tenant']}' not found. Check to make sure you have the correct "
                                  "tenant ID and are signing into the correct cloud.")
            if m["route"].startswith("v2.0"):
                self._require(method, "GET")
                with self._lock:
                    self.stats["discovery"] += 1
                return self._json(start_response, 200, self._openid_configuration(environ), correlation_id)
            with self._lock:
                self.stats["token_requests"] += 1
            try:
                if method != "POST":
                    raise _EntraError(400, "invalid_request", 900561,
                                      f"The endpoint only accepts POST, OPTIONS requests. Received a {method} "
                                      "request.")
                body = self._issue(environ)
            except _EntraError:
                with self._lock:
                    self.stats["token_errors"] += 1
                raise
            return self._json(start_response, 200, body, correlation_id)
        except _EntraError as e:
            return self._error(start_response, e, correlation_id)

    @staticmethod
    def _require(method: str, allowed: str) -> None:
        if method != allowed:
            raise _EntraError(405, "invalid_request", 900561,
                              f"The endpoint only accepts {allowed} requests. Received a {method} request.")

    @staticmethod
    def _base_url(environ: dict) -> str:
        host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', '127.0.0.1')}:{environ.get('SERVER_PORT')}"
        return f"{environ.get('wsgi.url_scheme', 'http')}://{host}"

    def _openid_configuration(self, environ: dict) -> dict:
        base, t = self._base_url(environ), self.tenant
        return {
            "token_endpoint": f"{base}/{t}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "jwks_uri": f"{base}/{t}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/{t}/v2.0",
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{base}/{t}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/{t}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/{t}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce", "tid", "ver"],
            "tenant_region_scope": "NA",
            "cloud_instance_name": "microsoftonline.com",
        }

    def _instance_metadata(self, environ: dict) -> dict:
        base = self._base_url(environ)
        host = base.split("://", 1)[1]
        return {"tenant_discovery_endpoint": f"{base}/{self.tenant}/v2.0/.well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}]}

    # -- the token endpoint ----------------------------------------------------------------------------------
    def _issue(self, environ: dict) -> dict:
        form = self._form(environ)
        grant_type = form.get("grant_type")
        if not grant_type:
            raise _missing("grant_type")
        if grant_type != "client_credentials":
            raise _EntraError(400, "unsupported_grant_type", 70003,
                              "The app requested an unsupported grant type "
                              f"'{grant_type[:64]}'.")  # this stand-in knows only client credentials

        client_id, secret = form.get("client_id"), form.get("client_secret")
        basic = self._basic_credentials(environ)
        if basic is not None:
            client_id, secret = client_id or basic[0], basic[1] if secret is None else secret
        if not client_id:
            raise _missing("client_id")
        with self._lock:
            expected = self._apps.get(client_id)
        if expected is None:
            raise _EntraError(400, "unauthorized_client", 700016,
                              f"Application with identifier '{client_id[:64]}' was not found in the directory "
                              f"'{self.tenant}'. This can happen if the application has not been installed by the "
                              "administrator of the tenant or consented to by any user in the tenant. You may "
                              "have sent your authentication request to the wrong tenant.")
        if form.get("client_assertion"):
            raise _EntraError(401, "invalid_client", 700027,
                              "Client assertion failed signature validation. The certificate used to sign the "
                              f"assertion is not registered on application '{client_id}'.")
        if not secret:
            raise _EntraError(401, "invalid_client", 7000218,
                              "The request body must contain the following parameter: 'client_assertion' or "
                              "'client_secret'.")
        if not hmac.compare_digest(secret.encode(), expected.encode()):
            raise _EntraError(401, "invalid_client", 7000215,
                              "Invalid client secret provided. Ensure the secret being sent in the request is the "
                              "client secret value, not the client secret ID, for a secret added to app "
                              f"'{client_id}'.")

        scope = (form.get("scope") or "").strip()
        if not scope:
            raise _missing("scope")
        scopes = scope.split()
        if len(scopes) != 1 or not scopes[0].endswith(DEFAULT_SCOPE_SUFFIX) or not resource_of(scopes[0]):
            raise _EntraError(400, "invalid_scope", 1002012,
                              f"The provided value for scope {scope[:200]} is not valid. Client credential flows "
                              "must have a scope value with /.default suffixed to the resource identifier "
                              "(application ID URI).")
        scope = scopes[0]
        resource = resource_of(scope)
        if self._resources is not None and resource not in self._resources:
            raise _EntraError(400, "invalid_resource", 500011,
                              f"The resource principal named {resource[:200]} was not found in the tenant named "
                              f"{self.tenant}. This can happen if the application has not been installed by the "
                              "administrator of the tenant or consented to by any user in the tenant. You might "
                              "have sent your authentication request to the wrong tenant.")
        return self._mint(client_id, scope, resource)

    def _mint(self, client_id: str, scope: str, resource: str) -> dict:
        now = self.clock()
        with self._lock:
            expires_in = self._random.randint(*self.lifetime)
        claims = {"aud": resource, "iss": issuer_of(self.tenant), "iat": int(now),
                  "nbf": int(now), "exp": int(now) + expires_in, "appid": client_id, "azp": client_id,
                  "tid": self.tenant, "idtyp": "app", "ver": "1.0", "uti": _b64url(secrets.token_bytes(16))}
        header = {"typ": "JWT", "alg": "none", "kid": "senseimig-sandbox"}
        token = ".".join((_b64url(orjson.dumps(header)), _b64url(orjson.dumps(claims)),
                          _b64url(secrets.token_bytes(32))))
        info = TokenInfo(client_id=client_id, scope=scope, expires_at=float(int(now) + expires_in),
                         tenant=self.tenant)
        with self._lock:
            if len(self._tokens) >= _PURGE_AT:
                for t in [t for t, i in self._tokens.items() if now >= i.expires_at]:
                    del self._tokens[t]
            self._tokens[token] = info
            self.stats["tokens_issued"] += 1
        log.debug("issued a token to %s for %s, expires in %d s", client_id, resource, expires_in)
        return {"token_type": "Bearer", "expires_in": expires_in, "ext_expires_in": expires_in,
                "access_token": token}

    @staticmethod
    def _form(environ: dict) -> dict[str, str]:
        ctype = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        raw = environ["wsgi.input"].read(length) if length > 0 else b""
        if ctype != "application/x-www-form-urlencoded":
            raise _EntraError(400, "invalid_request", 900144,
                              "The request body must contain the following parameter: 'grant_type'.")
        try:
            parsed = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise _EntraError(400, "invalid_request", 90014, "The request body is not valid UTF-8.") from None
        return {k: v[0] for k, v in parsed.items()}

    @staticmethod
    def _basic_credentials(environ: dict) -> tuple[str, str] | None:
        header = environ.get("HTTP_AUTHORIZATION", "")
        if not header.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        # RFC 6749 §2.3.1: client id and secret are form-encoded before going into Basic
        return unquote_plus(user), unquote_plus(password)

    # -- responses -------------------------------------------------------------------------------------------
    @staticmethod
    def _correlation_id(environ: dict) -> str:
        given = environ.get("HTTP_CLIENT_REQUEST_ID", "")
        try:
            return str(uuid.UUID(given))
        except ValueError:
            return str(uuid.uuid4())

    def _error(self, start_response: StartResponse, e: _EntraError, correlation_id: str) -> Iterable[bytes]:
        trace_id = str(uuid.uuid4())
        stamp = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        description = (f"AADSTS{e.code}: {e.message}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}"
                       f"\r\nTimestamp: {stamp}")
        body = {"error": e.error, "error_description": description, "error_codes": [e.code], "timestamp": stamp,
                "trace_id": trace_id, "correlation_id": correlation_id,
                "error_uri": f"https://login.microsoftonline.com/error?code={e.code}"}
        log.info("token endpoint: %s AADSTS%d", e.error, e.code)
        return self._json(start_response, e.status, body, correlation_id, trace_id)

    @staticmethod
    def _json(start_response: StartResponse, status: int, body: dict, correlation_id: str,
              trace_id: str | None = None) -> Iterator[bytes]:
        data = orjson.dumps(body)
        headers = [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(data))),
                   ("Cache-Control", "no-store, no-cache"), ("Pragma", "no-cache"),
                   ("client-request-id", correlation_id),
                   ("x-ms-request-id", trace_id or str(uuid.uuid4()))]
        start_response(_STATUS[status], headers)
        return iter([data])


def _missing(parameter: str) -> _EntraError:
    return _EntraError(400, "invalid_request", 900144,
                       f"The request body must contain the following parameter: '{parameter}'.")


@contextmanager
def serve_entra(stand_in: EntraStandIn, host: str = "127.0.0.1", port: int = 0,
                tls: TLSFiles | None = None) -> Iterator[str]:
    """Serve the stand-in in a background thread; yields the authority host URL (``https://127.0.0.1:<port>``
    with ``tls``). The msal authority is ``f"{url}/{stand_in.tenant}"``."""
    with serve_wsgi(stand_in, host, port, tls=tls, name="entra-stand-in") as url:
        yield url
