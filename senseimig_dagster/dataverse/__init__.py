"""Dataverse Web API client (auth: :mod:`.auth`)."""

from senseimig_dagster.dataverse.auth import BearerAuth, DataverseAuthError, DataverseTokenProvider

__all__ = ["BearerAuth", "DataverseAuthError", "DataverseTokenProvider"]
