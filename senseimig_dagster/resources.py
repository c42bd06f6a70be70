"""Dagster resources: the Sensei source (REST API or CSV Data Export) and the DuckDB store."""

from __future__ import annotations

import datetime as dt
import os
import ssl
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from dagster import Config, ConfigurableResource, EnvVar
from pydantic import Field as ConfigField

from senseimig_dagster import settings
from senseimig_dagster.dataverse.auth import BearerAuth, DataverseTokenProvider
from senseimig_dagster.dataverse.client import DataverseClient
from senseimig_dagster.dataverse.schema import (
    DEFAULT_OPTION_VALUE_PREFIX,
    DEFAULT_PREFIX,
    SchemaPlan,
    default_plan,
)
from senseimig_dagster.objects import SenseiObject
from senseimig_dagster.sensei.client import SenseiClient
from senseimig_dagster.sensei.exports import export_count, extract_export
from senseimig_dagster.sensei.records import Batch, Extraction

if TYPE_CHECKING:
    from senseimig_dagster.dataverse.metadata import DataverseMetadata


class SenseiSource(ConfigurableResource):
    """Where Sensei records come from. ``api``: the REST API (real tenant or the sandbox simulator);
    ``export``: a folder of CSV Data Export files. Both produce the same typed rows."""

    mode: Literal["api", "export"] = "api"
    base_url: str = f"http://127.0.0.1:{settings.SANDBOX_SENSEI_PORT}"
    api_key: str = ConfigField(default=settings.SANDBOX_API_KEY, description="Csd-Api-Key; use EnvVar for real")
    export_dir: str = "data/export"
    page_size: int = 5000  # the API maximum: fewer round trips; memory stays bounded (two pages in flight)
    timeout_seconds: float = 30.0
    max_retries: int = 6

    def client(self) -> SenseiClient:
        return SenseiClient(self.base_url, self.api_key, page_size=self.page_size, timeout=self.timeout_seconds,
                            max_retries=self.max_retries)

    def extract(self, obj: SenseiObject, since: dt.datetime | None, before: dt.datetime | None) -> Extraction:
        if self.mode == "export":
            return extract_export(obj, Path(self.export_dir), since, before)
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
            return export_count(obj, Path(self.export_dir))
        with self.client() as client:
            return client.count(obj)


def _closing(batches: Iterator[Batch] | list[Batch], client: SenseiClient) -> Iterator[Batch]:
    with client:
        yield from batches


def sensei_source_from_env() -> SenseiSource:
    """The source as configured by environment; the API key stays an EnvVar so it is never shown or stored."""
    api_key = EnvVar("SENSEI_API_KEY") if "SENSEI_API_KEY" in os.environ else settings.SANDBOX_API_KEY
    return SenseiSource(mode=settings.sensei_source(), base_url=settings.sensei_base_url(),  # type: ignore[arg-type]
                        api_key=api_key, export_dir=settings.sensei_export_dir())


# The sandbox's app registration (sandbox/entra.py DEFAULT_APPS, DEFAULT_TENANT): not secrets.
SANDBOX_TENANT, SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET = "00000000-0000-4000-8000-00000000e17a", "sandbox-client", \
    "sandbox-secret"


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
        default_factory=list, description="more application users to load with: limits are per user (reference §6)")
    fallback_owner: str | None = ConfigField(
        default_factory=lambda: os.environ.get("SENSEIMIG_FALLBACK_OWNER") or None,
        description="owner of unmatched or disabled Sensei users' records: an e-mail, a systemuserid or a teamid")

    def client(self) -> DataverseClient:
        """A client acting as the main application user."""
        return self._client(self.client_id, self.client_secret)

    def clients(self) -> list[DataverseClient]:
        """One client per application user (the main one first), for :class:`~.dataverse.loader.BulkLoader`."""
        return [self.client(), *(self._client(u.client_id, u.client_secret) for u in self.extra_users)]

    def _client(self, client_id: str, secret: str) -> DataverseClient:
        provider = DataverseTokenProvider(self.tenant_id, client_id, secret, self.environment_url,
                                          authority_host=self.authority_host, verify=self.ca_bundle or True)
        tls = ssl.create_default_context(cafile=self.ca_bundle) if self.ca_bundle else True
        return DataverseClient(self.environment_url, BearerAuth(provider), timeout=self.timeout_seconds, verify=tls)

    def metadata(self, client: DataverseClient) -> DataverseMetadata:
        from senseimig_dagster.dataverse.metadata import DataverseMetadata

        return DataverseMetadata(client)

    def plan(self) -> SchemaPlan:
        return default_plan(self.prefix, self.option_value_prefix)


class MappingResource(ConfigurableResource):
    """The migration's field map file (senseimig_dagster.mapping): ``$SENSEIMIG_MAPPING``, else ``mapping.yaml`` in
    the working directory. Dataverse writes run behind its confirmation gate."""

    path: str = ConfigField(default_factory=lambda: os.environ.get("SENSEIMIG_MAPPING", "mapping.yaml"))


def sample_dataverse_from_env() -> DataverseResource:
    """Where the sample migration writes (assets/sample.py): the sandbox emulator, or ``SAMPLE_DATAVERSE_URL`` (a
    customer's sandbox environment, same app registration variables as :func:`dataverse_from_env`). Never follows
    ``DATAVERSE_URL``: production writes are gated behind the confirmed map."""
    url = os.environ.get("SAMPLE_DATAVERSE_URL")
    if url is None:
        sandbox = f"https://127.0.0.1:{settings.SANDBOX_DATAVERSE_PORT}"
        return DataverseResource(environment_url=sandbox, authority_host=sandbox,
                                 ca_bundle=str(Path(f"{settings.SANDBOX_DATAVERSE_DB}.tls") / "ca.pem"))
    real = dataverse_from_env()
    return DataverseResource(environment_url=url, tenant_id=real.tenant_id, client_id=real.client_id,
                             client_secret=real.client_secret, authority_host=settings.azure_authority_host(),
                             ca_bundle=os.environ.get("DATAVERSE_CA_BUNDLE") or None)


class GraphResource(ConfigurableResource):
    """The SharePoint document library Dynamics integrates with contact, through Microsoft Graph (issue 7), as the
    same app registration as Dataverse by default (it needs Graph's Sites.Selected or Sites.ReadWrite.All
    application permission [memory]). ``site_url`` None: SharePoint is not configured."""

    graph_url: str = ConfigField(default_factory=settings.graph_url)
    site_url: str | None = ConfigField(default_factory=settings.sharepoint_site_url)
    library: str = "contact"
    tenant_id: str = SANDBOX_TENANT
    client_id: str = SANDBOX_CLIENT_ID
    client_secret: str = ConfigField(default=SANDBOX_CLIENT_SECRET, description="use EnvVar for real tenants")
    authority_host: str = ConfigField(default_factory=settings.azure_authority_host)
    ca_bundle: str | None = ConfigField(default=None, description="CA file to trust (a sandbox's local CA)")

    def drive(self):  # -> graph.drive.GraphDrive | None
        if not self.site_url:
            return None
        from senseimig_dagster.graph.drive import GraphDrive

        return GraphDrive(graph_url=self.graph_url, tenant_id=self.tenant_id, client_id=self.client_id,
                          client_secret=self.client_secret, authority_host=self.authority_host,
                          site_url=self.site_url, library=self.library, verify=self.ca_bundle or True)


def graph_from_env() -> GraphResource:
    """Graph as configured by environment (``SHAREPOINT_SITE_URL``, ``GRAPH_URL``, ``GRAPH_CA_BUNDLE``, the
    ``AZURE_*`` app registration); the secret stays an EnvVar."""
    secret = EnvVar("AZURE_CLIENT_SECRET") if "AZURE_CLIENT_SECRET" in os.environ else SANDBOX_CLIENT_SECRET
    # GRAPH_AUTHORITY_HOST: only the sandbox, whose Graph stand-in issues its own tokens (real: one Entra ID).
    return GraphResource(tenant_id=os.environ.get("AZURE_TENANT_ID", SANDBOX_TENANT),
                         authority_host=os.environ.get("GRAPH_AUTHORITY_HOST") or settings.azure_authority_host(),
                         client_id=os.environ.get("AZURE_CLIENT_ID", SANDBOX_CLIENT_ID),
                         client_secret=secret,  # type: ignore[arg-type]
                         ca_bundle=os.environ.get("GRAPH_CA_BUNDLE") or None)


def dataverse_from_env() -> DataverseResource:
    """The Dataverse resource as configured by environment; the secret stays an EnvVar."""
    secret = EnvVar("AZURE_CLIENT_SECRET") if "AZURE_CLIENT_SECRET" in os.environ else SANDBOX_CLIENT_SECRET
    return DataverseResource(tenant_id=os.environ.get("AZURE_TENANT_ID", SANDBOX_TENANT),
                             client_id=os.environ.get("AZURE_CLIENT_ID", SANDBOX_CLIENT_ID),
                             client_secret=secret)  # type: ignore[arg-type]
