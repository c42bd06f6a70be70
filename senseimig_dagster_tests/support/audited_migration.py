"""A small migration written by hand for the audit log and rollback tests: the schema set up as ``dataverse/schema``
does it (recording to ``audit.schema_changes``), records that exist before the migration, and a :class:`Migration`
that writes through the bulk loader and the client and records every write exactly as the writers do (intent,
request, outcome with ``after_version``), with a :class:`Crash` between a request and its outcome on demand."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb
import httpx

from senseimig_dagster.audit.log import AuditLog, AuditOutcome, before_image
from senseimig_dagster.audit.schema_changes import CHANGES_TABLE, ensure_changes_table
from senseimig_dagster.dataverse import DataverseClient
from senseimig_dagster.dataverse.bulk import BulkLoader
from senseimig_dagster.dataverse.metadata import DataverseMetadata
from senseimig_dagster.dataverse.schema_setup import SchemaChange, SchemaSetup
from senseimig_dagster.mapping.schema_plan import default_plan
from senseimig_dagster.sandbox.dataverse_emulator import DataverseEmulator
from senseimig_dagster_tests.support.constants import EMULATOR_URL
from senseimig_dagster_tests.support.constants import SOURCE_KEY as KEY

RUN = "run-migrate"
TABLE_ORDER = ["account", "contact", "smig_appointment"]  # parents first, as load_order() maps


def connect(emulator: DataverseEmulator, transport: httpx.BaseTransport | None = None) -> DataverseClient:
    """A client of ``emulator`` in process that never retries (``transport``: e.g. a counting one)."""
    return DataverseClient(EMULATOR_URL, None, transport=transport or httpx.WSGITransport(app=emulator), max_retries=0)


def setup_schema(client: DataverseClient, conn: duckdb.DuckDBPyConnection, run_id: str = "run-schema") -> None:
    """The schema asset's work, recording to ``audit.schema_changes`` as it does."""
    ensure_changes_table(conn)

    def record(change: SchemaChange) -> None:
        if change.outcome != "exists":
            conn.execute(f"INSERT INTO {CHANGES_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)",
                         [run_id, change.at, change.kind, change.table, change.name, change.outcome, change.detail])

    SchemaSetup(DataverseMetadata(client), default_plan(), on_change=record).run()


def seed_existing(client: DataverseClient) -> dict[str, str]:
    """Records that exist before the migration and that it will update."""
    ids = {"account": client.create("accounts", {"name": "Existing Practice", "telephone1": "555-0100"}),
           "contact": client.create("contacts", {"lastname": "Existing", "firstname": "Pat"})}
    return ids


@dataclass
class Migration:
    """Writes like the Dataverse assets: intent, request, outcome with ``after_version``; ``stop_after`` ends the run
    between a request and its outcome after that many steps (a crash)."""

    client: DataverseClient
    log: AuditLog
    existing: dict[str, str]
    run_id: str = RUN
    stop_after: int | None = None
    steps: int = field(default=0, init=False)

    def _step(self) -> None:
        self.steps += 1
        if self.stop_after is not None and self.steps > self.stop_after:
            raise Crash

    def versions(self, entity_set: str, primary: str) -> dict[str, str]:
        return {str(r[primary]): str(r["versionnumber"]) for r in self.client.query(entity_set, [primary,
                                                                                                 "versionnumber"])}

    def create(self, asset: str, table: str, entity_set: str, primary: str, rows: list[dict[str, Any]]) -> None:
        batch = self.log.intend(self.run_id, asset, table, entity_set, [(r[KEY], "create") for r in rows])
        result = BulkLoader([self.client], chunk_size=2, max_parallel=1, entity_sets={table: entity_set}).create(
            table, rows)
        self._step()  # a crash here: the records exist, their outcome is never recorded
        versions = self.versions(entity_set, primary)
        failed = {f.index: f.code for f in result.failed}
        self.log.record(batch, [
            AuditOutcome(r[KEY], rid, "create", "failed" if i in failed else "ok", failed.get(i),
                         after_version=versions.get(rid or ""))
            for i, (r, rid) in enumerate(zip(rows, result.ids, strict=True))])

    def update(self, asset: str, table: str, entity_set: str, record_id: str, changes: dict[str, Any],
               operation: str = "update", lookups: dict[str, tuple[str, str]] | None = None) -> None:
        select = [c for c in changes if not c.endswith("@odata.bind")] + [c for c, _ in (lookups or {}).values()]
        current = self.client.retrieve(entity_set, record_id, select=select)
        before = before_image(current, changes, lookups)
        batch = self.log.intend(self.run_id, asset, table, entity_set, [(None, operation, record_id, before)])
        self.client.update(entity_set, record_id, changes)
        self._step()
        version = self.client.retrieve(entity_set, record_id, select=["versionnumber"])["versionnumber"]
        self.log.record(batch, [AuditOutcome(None, record_id, operation, "ok",  # type: ignore[arg-type]
                                             after_version=str(version))])

    def run(self) -> None:
        self.create("dataverse/location", "account", "accounts", "accountid", [
            {KEY: f"loc-{i}", "name": f"Practice {i}"} for i in range(3)])
        self.create("dataverse/provider", "contact", "contacts", "contactid", [
            {KEY: "prov-1", "lastname": "Dentist", "parentcustomerid_account@odata.bind": "/accounts(smig_sourcesystemid='loc-0')"}])
        self.create("dataverse/patient", "contact", "contacts", "contactid", [
            {KEY: f"pat-{i}", "lastname": f"Patient{i}",
             "parentcustomerid_account@odata.bind": f"/accounts(smig_sourcesystemid='loc-{i % 3}')",
             "smig_PreferredDentistId@odata.bind": "/contacts(smig_sourcesystemid='prov-1')"} for i in range(4)])
        self.create("dataverse/appointment", "smig_appointment", "smig_appointments", "smig_appointmentid", [
            {KEY: f"appt-{i}", "smig_name": f"Visit {i}",
             "smig_PatientId@odata.bind": f"/contacts(smig_sourcesystemid='pat-{i}')",
             "smig_LocationId@odata.bind": "/accounts(smig_sourcesystemid='loc-0')"} for i in range(3)])
        # Updates of records that existed before, with before-images (a lookup among the changed columns).
        self.update("dataverse/patient", "contact", "contacts", self.existing["contact"], {
            "firstname": "Patricia", "telephone1": "555-0199",
            "smig_PreferredDentistId@odata.bind": "/contacts(smig_sourcesystemid='prov-1')"},
            lookups={"smig_PreferredDentistId@odata.bind": ("_smig_preferreddentistid_value", "contacts")})
        self.update("dataverse/location", "account", "accounts", self.existing["account"], {"telephone1": "555-0111"})
        self.update("dataverse/location", "account", "accounts", self.existing["account"],
                    {"statecode": 1, "statuscode": 2}, operation="state")


class Crash(Exception):
    """The migration process dying between a request and its recorded outcome."""
