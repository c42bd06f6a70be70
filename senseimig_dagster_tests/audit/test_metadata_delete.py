"""The emulator's metadata DELETE routes (EntityDefinitions, Attributes, Keys, RelationshipDefinitions) and
DataverseMetadata's delete methods: what a lenient emulator would let through is refused with the status and code
asserted here, and removals survive a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest

from senseimig_dagster.dataverse import DataverseClient
from senseimig_dagster.dataverse.metadata import DataverseMetadata
from senseimig_dagster.sandbox.dataverse_emulator import (
    Catalog,
    DataverseEmulator,
    RecordStore,
    restore_custom_schema,
)
from senseimig_dagster.sandbox.dataverse_emulator.seed import apply_seed, load_seed
from senseimig_dagster_tests.support.audited_migration import connect, setup_schema
from senseimig_dagster_tests.support.constants import EMULATOR_BASE as BASE
from senseimig_dagster_tests.support.environments import open_emulator

DEPENDENCY = "0x8004f01f"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[DataverseEmulator, DataverseClient, httpx.Client]]:
    store, emulator = open_emulator(tmp_path / "dv.sqlite")
    client = connect(emulator)
    setup_schema(client, duckdb.connect())
    with httpx.Client(transport=httpx.WSGITransport(app=emulator), base_url=BASE) as raw:
        yield emulator, client, raw
    client.close()
    store.close()


def _code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


def test_a_key_is_deleted_by_metadata_id_and_upserts_by_it_stop_working(env) -> None:
    emulator, client, raw = env
    client.create("smig_appointments", {"smig_sourcesystemid": "a1", "smig_name": "Visit"})
    keys = raw.get("/EntityDefinitions(LogicalName='smig_appointment')/Keys").json()["value"]
    key_id = keys[0]["MetadataId"]
    assert raw.delete(f"/EntityDefinitions(LogicalName='smig_appointment')/Keys({key_id})").status_code == 204
    assert raw.get(f"/EntityDefinitions(LogicalName='smig_appointment')/Keys({key_id})").status_code == 404
    response = raw.get("/smig_appointments(smig_sourcesystemid='a1')")
    assert response.status_code == 400 and _code(response) == "0x80060890"  # no longer a defined key


def test_columns_in_a_key_lookups_and_standard_columns_cannot_be_deleted_as_attributes(env) -> None:
    _, _, raw = env
    table = "/EntityDefinitions(LogicalName='smig_appointment')/Attributes"
    for column in ("smig_sourcesystemid", "smig_patientid"):  # in a key; a lookup (goes with its relationship)
        response = raw.delete(f"{table}(LogicalName='{column}')")
        assert response.status_code == 400 and _code(response) == DEPENDENCY, column
    response = raw.delete("/EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='lastname')")
    assert response.status_code == 400


def test_a_deleted_column_takes_its_values_with_it(env) -> None:
    emulator, client, raw = env
    record = client.create("contacts", {"lastname": "Ng", "smig_modelboxnumber": "Shelf 4"})
    meta = DataverseMetadata(client)
    assert meta.delete_column("contact", "smig_modelboxnumber") is True
    assert "smig_modelboxnumber" not in emulator.store.retrieve("contact", record).values
    assert meta.delete_column("contact", "smig_modelboxnumber") is False  # already gone: idempotent
    response = raw.get(f"/contacts({record})?$select=smig_modelboxnumber")
    assert response.status_code == 400


def test_a_table_other_tables_look_up_is_refused_until_their_relationships_are_gone(env) -> None:
    emulator, client, raw = env
    meta = DataverseMetadata(client)
    response = raw.delete("/EntityDefinitions(LogicalName='smig_treatmentplan')")
    assert response.status_code == 400 and _code(response) == DEPENDENCY
    assert raw.delete("/EntityDefinitions(LogicalName='contact')").status_code == 400  # a standard table
    relationship = meta.lookup_relationship("smig_plannedprocedure", "smig_treatmentplanid")
    assert relationship is not None
    assert raw.delete(f"/RelationshipDefinitions(SchemaName='{relationship}')").status_code == 204
    assert "smig_TreatmentPlanId" not in emulator.catalog.table("smig_plannedprocedure").lookups
    client.create("smig_treatmentplans", {"smig_name": "Plan"})
    assert meta.delete_table("smig_treatmentplan") is True
    assert raw.get("/EntityDefinitions(LogicalName='smig_treatmentplan')").status_code == 404
    assert emulator.store.count("smig_treatmentplan") == 0
    assert meta.delete_table("smig_treatmentplan") is False


def test_relationships_are_deleted_by_metadata_id_too_and_removals_survive_a_restart(tmp_path: Path) -> None:
    _, emulator = open_emulator(tmp_path / "dv.sqlite")
    restore_custom_schema(emulator.catalog, emulator.store)  # journal every change, as the server does
    client = connect(emulator)
    setup_schema(client, duckdb.connect())
    meta = DataverseMetadata(client)
    raw = httpx.Client(transport=httpx.WSGITransport(app=emulator), base_url=BASE)
    rows = raw.get("/EntityDefinitions(LogicalName='smig_clinicalnote')/ManyToOneRelationships",
                   params={"$filter": "ReferencingAttribute eq 'smig_appointmentid'",
                           "$select": "SchemaName"}).json()["value"]
    assert [r["SchemaName"] for r in rows] == [meta.lookup_relationship("smig_clinicalnote", "smig_appointmentid")]
    assert raw.delete(f"/RelationshipDefinitions({rows[0]['MetadataId']})").status_code == 204
    assert meta.delete_relationship(rows[0]["SchemaName"]) is False  # already gone
    assert meta.delete_key("smig_clinicalnote", meta.keys("smig_clinicalnote")[0]["SchemaName"]) is True
    assert meta.delete_table("smig_perioreading") is True

    def shape(catalog: Catalog) -> dict:
        return {name: (sorted(t.columns), sorted(t.lookups), [k.schema_name for k in t.keys])
                for name, t in catalog.tables.items()}

    fresh = Catalog.load()  # a restart, as the server does it: custom schema replayed, seed (schema parts) applied
    restarted = RecordStore(tmp_path / "dv.sqlite", fresh)
    restore_custom_schema(fresh, restarted)
    apply_seed(restarted, load_seed())
    assert shape(fresh) == shape(emulator.catalog)
    assert "smig_appointmentid" not in shape(fresh)["smig_clinicalnote"][0] and "smig_perioreading" not in fresh.tables
    assert sorted(fresh.relationships) == sorted(emulator.catalog.relationships)
