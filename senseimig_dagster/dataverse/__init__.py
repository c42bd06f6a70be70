"""Dataverse Web API client (auth: :mod:`.auth`, records and queries: :mod:`.client`, ``$batch``: :mod:`.batch`,
the throughput engine: :mod:`.loader`, errors: :mod:`.errors`)."""

from senseimig_dagster.dataverse.batch import BatchRequest, BatchResponse, BatchResult, ChangeSet
from senseimig_dagster.dataverse.bulk import BulkLoader, LoadResult, RowFailure
from senseimig_dagster.dataverse.client import DataverseClient, key_segment, record_segment
from senseimig_dagster.dataverse.errors import (
    DataverseConflict,
    DataverseError,
    DataverseNotFound,
    DataverseThrottled,
)
from senseimig_dagster.transport.entra import BearerAuth, EntraAuthError, EntraTokenProvider

__all__ = [
    "BatchRequest",
    "BatchResponse",
    "BatchResult",
    "BearerAuth",
    "BulkLoader",
    "ChangeSet",
    "EntraAuthError",
    "DataverseClient",
    "DataverseConflict",
    "DataverseError",
    "DataverseNotFound",
    "DataverseThrottled",
    "EntraTokenProvider",
    "LoadResult",
    "RowFailure",
    "key_segment",
    "record_segment",
]
