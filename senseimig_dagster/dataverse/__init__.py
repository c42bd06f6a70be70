"""Dataverse Web API client (auth: :mod:`.auth`, records and queries: :mod:`.client`, errors: :mod:`.errors`)."""

from senseimig_dagster.dataverse.auth import BearerAuth, DataverseAuthError, DataverseTokenProvider
from senseimig_dagster.dataverse.client import DataverseClient, key_segment, record_segment
from senseimig_dagster.dataverse.errors import (
    DataverseConflict,
    DataverseError,
    DataverseNotFound,
    DataverseThrottled,
)

__all__ = [
    "BearerAuth",
    "DataverseAuthError",
    "DataverseClient",
    "DataverseConflict",
    "DataverseError",
    "DataverseNotFound",
    "DataverseThrottled",
    "DataverseTokenProvider",
    "key_segment",
    "record_segment",
]
