"""Dagster resources, one per domain, that own the plumbing: the Sensei source, the DuckDB store, the field map,
Dataverse (sessions of clients, loader, catalog and entity sets), Microsoft Graph (SharePoint), the audit store and
staging's options. Asset bodies ask these for what they need and never build clients themselves.

Defaults come from ``settings`` (the environment, read in that one place) and point at the local sandbox. Secrets
are taken as ``EnvVar`` when set, so a real deployment's secret is resolved by Dagster at run time and shown by name
only; :func:`build_resources` is what ``definitions.py`` registers.
"""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import duckdb
from dagster import Config, ConfigurableResource, EnvVar, get_dagster_logger
from dagster_duckdb import DuckDBResource
from pydantic import Field as ConfigField

from senseimig_dagster import settings
from senseimig_dagster.audit.store import ALIAS as AUDIT_ALIAS
from senseimig_dagster.audit.store import KEY_ENV as AUDIT_KEY_ENV
from senseimig_dagster.dataverse.client import DataverseClient
from senseimig_dagster.dataverse.schema import SchemaPlan
from senseimig_dagster.graph.drive import GraphDrive
from senseimig_dagster.load.session import DataverseSession
from senseimig_dagster.mapping import default_map_path, load_valid
from senseimig_dagster.mapping.gate import GateProblem, gate_problems
from senseimig_dagster.mapping.model import FieldMapFile
from senseimig_dagster.mapping.schema_plan import DEFAULT_OPTION_VALUE_PREFIX, DEFAULT_PREFIX, default_plan
from senseimig_dagster.objects import SenseiObject
from senseimig_dagster.privacy.encryption import KEY_ENV as STORE_KEY_ENV
from senseimig_dagster.privacy.encryption import (
    OPT_OUT_ENV,
    OPT_OUT_VALUE,
    STORE_ALIAS,
    connection,
    digest_key,
    usable_key,
)
from senseimig_dagster.privacy.logs import install as install_log_redaction
from senseimig_dagster.sensei.client import SenseiClient
from senseimig_dagster.sensei.exports import export_count, extract_export
from senseimig_dagster.sensei.records import Batch, Extraction
from senseimig_dagster.store import Store
from senseimig_dagster.transport.entra import BearerAuth, EntraTokenProvider

# The sandbox's app registration (the Entra stand-in's default app and tenant): not secrets.
SANDBOX_TENANT, SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET = "00000000-0000-4000-8000-00000000e17a", "sandbox-client", \
    "sandbox-secret"


class SenseiSource(ConfigurableResource):
    """Where Sensei records come from. ``api``: the REST API (real tenant or the sandbox simulator);
    ``export``: a folder of CSV Data Export files. Both produce the same typed rows."""

    mode: Literal["api", "export"] = "api"
    base_url: str = f"http://127.0.0.1:{settings.SANDBOX_SENSEI_PORT}"
    api_key: str = ConfigField(default=settings.SANDBOX_API_KEY, description="Csd-Api-Key; use EnvVar for real")
    export_dir: str = "data/export"
    export_encodings: dict[str, str] = ConfigField(
        default_factory=dict, description="object name (or '*') -> encoding of a legacy export, e.g. cp1252")
    page_size: int = 5000  # the API maximum: fewer round trips; memory stays bounded (two pages in flight)
    timeout_seconds: float = 30.0
    max_retries: int = 6

    def client(self) -> SenseiClient:
        return SenseiClient(self.base_url, self.api_key, page_size=self.page_size, timeout=self.timeout_seconds,
                            max_retries=self.max_retries)

    def export_encoding(self, obj: SenseiObject) -> str:
        return self.export_encodings.get(obj.name, self.export_encodings.get("*", "utf-8"))

    def extract(self, obj: SenseiObject, since: dt.datetime | None, before: dt.datetime | None) -> Extraction:
        if self.mode == "export":
            return extract_export(obj, Path(self.export_dir), since, before, encoding=self.export_encoding(obj))
        client = self.client()
        try:
            extraction = client.extract(obj, since, before)
        except BaseException:
            client.close()
            raise
        return replace(extraction, batches=_closing(extraction.batches, client))

    def count(self, obj: SenseiObject) -> int:
        """What the source says it holds for an object, all history."""
        if self.mode == "export":
            return export_count(obj, Path(self.export_dir), encoding=self.export_encoding(obj))
        with self.client() as client:
            return client.count(obj)


def _closing(batches: Iterator[Batch] | list[Batch], client: SenseiClient) -> Iterator[Batch]:
    with client:
        yield from batches


class _Encrypted:
    """What the local stores share: an encryption key (EnvVar), and whether they may be opened without one."""

    def _key(self, store: str) -> str | None:
        return usable_key(self.key, required=self.require_key, opted_out=self.plaintext_opt_out,  # type: ignore
                          store=store, warn=get_dagster_logger().warning)


class StoreResource(DuckDBResource, _Encrypted):
    """The migration's DuckDB file, encrypted with ``key`` when given (``privacy/encryption.py``); :meth:`open`
    gives the reads assets share (``store.Store``). ``require_key``: a real environment's store refuses to open
    without a key unless ``plaintext_opt_out``."""

    key: str | None = ConfigField(default=None, description=f"encryption key; use EnvVar('{STORE_KEY_ENV}')")
    require_key: bool = False
    plaintext_opt_out: bool = False
    allow_unsafe_crypto: bool = ConfigField(default=False, description="tests only: DuckDB's mbedtls fallback")

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.connect() as conn:
            yield conn

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        with connection(self.database, self._key("migration store"), alias=STORE_ALIAS,
                        read_only=read_only, allow_unsafe_crypto=self.allow_unsafe_crypto,
                        what="migration store") as conn:
            yield conn

    @contextmanager
    def open(self) -> Iterator[Store]:
        with self.get_connection() as conn:
            yield Store(conn)

    def digest_key(self) -> bytes | None:
        """The HMAC key of the load journal's column digests, kept with the store's key (None: no key)."""
        return digest_key(self.key) if self.key else None


class MappingResource(ConfigurableResource):
    """The migration's field map file: ``$SENSEIMIG_MAPPING``, else ``mapping.yaml`` in the working directory.
    Staging reads it (the shipped default map while the file does not exist); every Dataverse write runs behind its
    confirmation gate."""

    path: str = ConfigField(default_factory=settings.mapping_path)

    def load(self) -> FieldMapFile:
        return load_valid(self.path) if Path(self.path).exists() else load_valid(default_map_path())

    def gate_problems(self) -> list[GateProblem]:
        """Why nothing may be written under this map (empty: confirmed and unchanged since)."""
        return gate_problems(self.path)


class StagingResource(ConfigurableResource):
    """Options of the staging rules that a migration engineer sets."""

    fallback_provider_id: str | None = ConfigField(
        default_factory=settings.fallback_provider_id,
        description="Sensei provider id given to rows whose free-text provider is unknown or ambiguous")
    corrections_path: str = ConfigField(
        default_factory=settings.corrections_path,
        description="corrections to quarantined or rejected records (YAML or CSV: object, record_id, field, value, "
                    "by, why), applied on every staging run")
    match_overrides: str = ConfigField(
        default_factory=settings.match_overrides_path,
        description="CSV of a person's decisions on patient pairs (id_a,id_b,action merge|never): they win on "
                    "every run")


class ApplicationUser(Config):
    """An extra Entra app registration with its own Dataverse application user; secret via EnvVar."""

    client_id: str
    client_secret: str


class DataverseResource(ConfigurableResource):
    """One Dataverse environment and the application user the migration writes as. Real environments take the
    secret from ``EnvVar("AZURE_CLIENT_SECRET")``; the defaults point at the sandbox emulator."""

    environment_url: str = ConfigField(default_factory=settings.dataverse_url)
    tenant_id: str = SANDBOX_TENANT
    client_id: str = SANDBOX_CLIENT_ID
    client_secret: str = ConfigField(default=SANDBOX_CLIENT_SECRET, description="use EnvVar for real environments")
    authority_host: str = ConfigField(default_factory=settings.azure_authority_host)
    ca_bundle: str | None = ConfigField(default_factory=settings.dataverse_ca_bundle,
                                        description="CA file to trust (the sandbox's local CA); None = system store")
    prefix: str = ConfigField(default=DEFAULT_PREFIX, description="publisher customization prefix")
    option_value_prefix: int = DEFAULT_OPTION_VALUE_PREFIX
    dataverse_tier: Literal["professional", "enterprise"] = ConfigField(
        default_factory=settings.dataverse_tier, description="professional allows 15 custom tables")
    timeout_seconds: float = 120.0
    extra_users: list[ApplicationUser] = ConfigField(
        default_factory=list, description="more application users to load with: service protection limits are per "
                                          "user")
    fallback_owner: str | None = ConfigField(
        default_factory=settings.fallback_owner,
        description="owner of unmatched or disabled Sensei users' records: an e-mail, a systemuserid or a teamid")

    def client(self) -> DataverseClient:
        """A client acting as the main application user."""
        return self._client(self.client_id, self.client_secret)

    def clients(self) -> list[DataverseClient]:
        """One client per application user (the main one first), for the bulk loader."""
        return [self.client(), *(self._client(u.client_id, u.client_secret) for u in self.extra_users)]

    def _client(self, client_id: str, secret: str) -> DataverseClient:
        provider = EntraTokenProvider(self.tenant_id, client_id, secret, self.environment_url,
                                      authority_host=self.authority_host, verify=self.ca_bundle or True)
        tls = ssl.create_default_context(cafile=self.ca_bundle) if self.ca_bundle else True
        return DataverseClient(self.environment_url, BearerAuth(provider), timeout=self.timeout_seconds, verify=tls)

    def plan(self) -> SchemaPlan:
        return default_plan(self.prefix, self.option_value_prefix)

    @contextmanager
    def session(self) -> Iterator[DataverseSession]:
        """Every application user's client, the loader, metadata, catalog and entity sets; closed on exit."""
        with DataverseSession(self.clients(), self.plan()) as session:
            yield session


class GraphResource(ConfigurableResource):
    """The SharePoint document library Dynamics integrates with contact, through Microsoft Graph, as the same app
    registration as Dataverse by default (it needs Graph's Sites.Selected or Sites.ReadWrite.All application
    permission). ``site_url`` None: SharePoint is not configured (documents that need it fail with a reason)."""

    graph_url: str = ConfigField(default_factory=settings.graph_url)
    site_url: str | None = ConfigField(default_factory=settings.sharepoint_site_url)
    library: str = "contact"
    tenant_id: str = SANDBOX_TENANT
    client_id: str = SANDBOX_CLIENT_ID
    client_secret: str = ConfigField(default=SANDBOX_CLIENT_SECRET, description="use EnvVar for real tenants")
    authority_host: str = ConfigField(default_factory=settings.graph_authority_host)
    ca_bundle: str | None = ConfigField(default_factory=settings.graph_ca_bundle,
                                        description="CA file to trust (a sandbox's local CA)")

    @contextmanager
    def drive(self) -> Iterator[GraphDrive | None]:
        """The library's drive (None when SharePoint is not configured), closed on exit."""
        if not self.site_url:
            yield None
            return
        drive = GraphDrive(graph_url=self.graph_url, tenant_id=self.tenant_id, client_id=self.client_id,
                           client_secret=self.client_secret, authority_host=self.authority_host,
                           site_url=self.site_url, library=self.library, verify=self.ca_bundle or True)
        try:
            yield drive
        finally:
            drive.close()


class AuditStore(ConfigurableResource, _Encrypted):
    """The audit log's own DuckDB file, encrypted at rest when a key is configured (``audit/store.py``): writers
    and the rollback job open it with :meth:`connect`."""

    path: str = ConfigField(default_factory=settings.audit_path, description="DuckDB file of the audit log")
    key: str | None = ConfigField(default=None, description=f"encryption key; use EnvVar('{STORE_KEY_ENV}')")
    require_key: bool = False
    plaintext_opt_out: bool = False
    allow_unsafe_crypto: bool = ConfigField(default=False, description="tests only: DuckDB's mbedtls fallback")

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        with connection(self.path, self._key("audit store"), alias=AUDIT_ALIAS, read_only=read_only,
                        allow_unsafe_crypto=self.allow_unsafe_crypto, what="audit store", attach_plain=True) as conn:
            yield conn


# -- as configured by the environment --------------------------------------------------------------------------------
def _secret(name: str, sandbox: str) -> Any:
    return EnvVar(name) if settings.is_set(name) else sandbox


def _app_registration() -> dict[str, Any]:
    return {"tenant_id": settings.azure_tenant_id(SANDBOX_TENANT),
            "client_id": settings.azure_client_id(SANDBOX_CLIENT_ID),
            "client_secret": _secret("AZURE_CLIENT_SECRET", SANDBOX_CLIENT_SECRET)}


def sensei_source_from_env() -> SenseiSource:
    return SenseiSource(mode=settings.sensei_source(), base_url=settings.sensei_base_url(),  # type: ignore[arg-type]
                        api_key=_secret("SENSEI_API_KEY", settings.SANDBOX_API_KEY),
                        export_dir=settings.sensei_export_dir(),
                        export_encodings=settings.sensei_export_encodings())


def dataverse_from_env() -> DataverseResource:
    return DataverseResource(**_app_registration())


def sample_dataverse_from_env() -> DataverseResource:
    """Where the sample migration writes: the sandbox emulator, or ``SAMPLE_DATAVERSE_URL`` (a customer's sandbox
    environment, same app registration as the migration). Never follows ``DATAVERSE_URL``: production writes are
    gated behind the confirmed map."""
    url = settings.sample_dataverse_url()
    if url is None:
        sandbox = f"https://127.0.0.1:{settings.SANDBOX_DATAVERSE_PORT}"
        return DataverseResource(environment_url=sandbox, authority_host=sandbox,
                                 ca_bundle=str(Path(f"{settings.SANDBOX_DATAVERSE_DB}.tls") / "ca.pem"))
    return DataverseResource(environment_url=url, authority_host=settings.azure_authority_host(),
                             ca_bundle=settings.sample_ca_bundle(), **_app_registration())


def graph_from_env() -> GraphResource:
    return GraphResource(**_app_registration())


def store_protection_from_env() -> dict[str, Any]:
    """The stores' key (``SENSEIMIG_STORE_KEY`` as EnvVar) and whether one is required: a real Dataverse environment
    needs it, unless the test-tenant opt-out is spelled out."""
    return {"key": _secret(STORE_KEY_ENV, None), "require_key": not settings.sandbox_dataverse(),
            "plaintext_opt_out": settings.opted_out(OPT_OUT_ENV, OPT_OUT_VALUE)}


def store_from_env(database: str | None = None) -> StoreResource:
    return StoreResource(database=database or settings.duckdb_path(), **store_protection_from_env())


def audit_store_from_env(path: str | None = None) -> AuditStore:
    protection = store_protection_from_env()
    if settings.is_set(AUDIT_KEY_ENV):  # a key of its own
        protection["key"] = EnvVar(AUDIT_KEY_ENV)
    return AuditStore(path=path or settings.audit_path(), **protection)


def build_resources(database: str | None = None) -> dict[str, Any]:
    """Every resource key the assets and jobs use, as the environment configures them. Log records of the product
    and its HTTP stack are redacted from here on (``privacy/logs.py``)."""
    install_log_redaction()
    store = store_from_env(database)
    return {"sensei": sensei_source_from_env(), "dataverse": dataverse_from_env(),
            "sample_dataverse": sample_dataverse_from_env(), "graph": graph_from_env(),
            "mapping": MappingResource(), "staging_rules": StagingResource(), "store": store,
            "audit": audit_store_from_env()}
