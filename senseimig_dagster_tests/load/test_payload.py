"""Staged rows become bodies the emulator accepts: values in wire formats, lookups bound by alternate key."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from senseimig_dagster.dataverse import DataverseClient
from senseimig_dagster.dataverse.bulk import BulkLoader
from senseimig_dagster.dataverse.standard_tables import standard_entity_sets
from senseimig_dagster.load.payload import PayloadBuilder, PayloadError
from senseimig_dagster.mapping.targets import TargetCatalog
from senseimig_dagster.sandbox.dataverse_emulator.seed import load_seed
from senseimig_dagster_tests.support.environments import schema_client

OWNER = load_seed().user("harper.hygienist@sandbox.example")["systemuserid"]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DataverseClient]:
    with schema_client(Path(tmp_path_factory.mktemp("dv")) / "dv.sqlite") as c:
        yield c


def test_values_take_wire_formats_and_lookups_bind_by_alternate_key() -> None:
    frame = pl.DataFrame({
        "_source_id": ["p1"], "smig_sourcesystemid": ["p1"], "lastname": ["Ng"], "birthdate": [dt.date(1980, 2, 29)],
        "smig_sourcecreatedon": [dt.datetime(2026, 3, 1, 14, 5, tzinfo=dt.UTC)], "firstname": [None],
        "parentcustomerid_account": ["loc-1"], "ownerid": [OWNER],
    })
    builder = PayloadBuilder("contact", frame.columns, TargetCatalog(), standard_entity_sets())
    (body,) = builder.bodies(frame)
    assert body == {
        "smig_sourcesystemid": "p1", "lastname": "Ng", "birthdate": "1980-02-29",
        "smig_sourcecreatedon": "2026-03-01T14:05:00Z",
        "parentcustomerid_account@odata.bind": "/accounts(smig_sourcesystemid='loc-1')",
        "ownerid@odata.bind": f"/systemusers({OWNER})",
    }
    assert builder.body(frame.row(0, named=True), send_nulls=True)["firstname"] is None


def test_columns_the_table_cannot_take_are_named() -> None:
    catalog = TargetCatalog()
    with pytest.raises(PayloadError, match="contact has no column or navigation property 'firstnam'"):
        PayloadBuilder("contact", ["firstnam"], catalog, standard_entity_sets())
    with pytest.raises(PayloadError, match="navigation property 'parentcustomerid'"):  # needs _account/_contact
        PayloadBuilder("contact", ["parentcustomerid"], catalog, standard_entity_sets())
    with pytest.raises(PayloadError, match="no entity set known for smig_appointment"):
        PayloadBuilder("smig_clinicalnote", ["smig_AppointmentId"], catalog, standard_entity_sets())


def test_bodies_load_through_the_bulk_loader_and_read_back(client: DataverseClient) -> None:
    catalog = TargetCatalog()
    accounts = pl.DataFrame({"smig_sourcesystemid": ["loc-1"], "name": ["Summit Denver"],
                             "smig_isinsurancecarrier": [False]})
    contacts = pl.DataFrame({
        "smig_sourcesystemid": ["p1", "p2"], "lastname": ["Ng", "O'Hara"],
        "birthdate": [dt.date(1980, 2, 29), None], "parentcustomerid_account": ["loc-1", "loc-1"],
        "ownerid": [OWNER, OWNER], "smig_primaryeffectivedate": [None, dt.date(2025, 1, 1)],
    })
    loader = BulkLoader([client], chunk_size=10, max_parallel=2)
    for table, frame in (("account", accounts), ("contact", contacts)):
        builder = PayloadBuilder(table, frame.columns, catalog, standard_entity_sets())
        result = loader.upsert(table, builder.bodies(frame), ["smig_sourcesystemid"])
        assert result.failed == [] and result.succeeded == frame.height
    account = client.retrieve("accounts", {"smig_sourcesystemid": "loc-1"}, ["accountid"])
    contact = client.retrieve("contacts", {"smig_sourcesystemid": "p2"},
                              ["lastname", "_parentcustomerid_value", "_ownerid_value", "smig_primaryeffectivedate"])
    assert contact["lastname"] == "O'Hara"
    assert contact["_parentcustomerid_value"] == account["accountid"]
    assert contact["_ownerid_value"] == OWNER
    assert contact["smig_primaryeffectivedate"] == "2025-01-01"


def test_decimal_amounts_keep_their_cents() -> None:
    frame = pl.DataFrame({"smig_amount": [decimal.Decimal("12345678.91")]},
                         schema={"smig_amount": pl.Decimal(12, 2)})
    (body,) = PayloadBuilder("smig_billingledger", frame.columns, TargetCatalog(), {}).bodies(frame)
    assert repr(body["smig_amount"]) == "12345678.91"
