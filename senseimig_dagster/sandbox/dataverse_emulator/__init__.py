"""Dataverse emulator: metadata model and write validation.

catalog = Catalog.load(column_delay=1, key_delay=2)   # Microsoft's standard tables; metadata API lags (s)
catalog.add_lookup("contact", "smig_PatientId", "account")
record = validate_write(catalog, "contact", body, operation="create")
app = DataverseEmulator(catalog, RecordStore("dv.sqlite", catalog),   # WSGI at /api/data/v9.2/
                        protection=ServiceProtection(Limits(time_scale=60), servers=4),
                        bulk_unsupported={"contact"})   # CreateMultiple etc. refused, hidden in sdkmessagefilters
restore_custom_schema(catalog, store)          # replay + journal custom schema in the store (.metadata_api)
server.run_dataverse_server(Path("dv.sqlite"), port=8766, tls=True)   # `senseimig sandbox dataverse` (.server)
"""

from senseimig_dagster.sandbox.dataverse_emulator.app import DataverseEmulator
from senseimig_dagster.sandbox.dataverse_emulator.errors import DataverseError
from senseimig_dagster.sandbox.dataverse_emulator.limits import Limits, ServiceProtection
from senseimig_dagster.sandbox.dataverse_emulator.metadata import AlternateKey, Catalog, Column, Lookup, Table
from senseimig_dagster.sandbox.dataverse_emulator.metadata_api import restore_custom_schema
from senseimig_dagster.sandbox.dataverse_emulator.store import RecordStore, StoredRecord
from senseimig_dagster.sandbox.dataverse_emulator.validation import (
    BindTarget,
    NormalizedRecord,
    validate_write,
)

__all__ = [
    "AlternateKey",
    "BindTarget",
    "Catalog",
    "Column",
    "DataverseEmulator",
    "DataverseError",
    "Limits",
    "Lookup",
    "NormalizedRecord",
    "RecordStore",
    "ServiceProtection",
    "StoredRecord",
    "Table",
    "restore_custom_schema",
    "validate_write",
]
