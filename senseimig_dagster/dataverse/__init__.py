"""The Dataverse Web API client, and nothing of the migration: records and queries (:mod:`.client`), ``$batch``
(:mod:`.batch`), the throughput engine for many rows into one table (:mod:`.bulk`), errors (:mod:`.errors`), the
metadata API (:mod:`.metadata`), a schema's shape and its idempotent setup (:mod:`.schema`, :mod:`.schema_setup`),
and Microsoft's metadata of the standard tables (:mod:`.standard_tables`). Tokens come from ``transport.entra``.
Imports nothing of the project but ``transport``: the migration (``load/``) is built on top of it."""

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
