"""The unaudited load (load/upsert.py) against the emulator in-process, with the schema set up: parents before
children, lookups resolved by alternate key, in-frame references and state in a second pass, routed tables, owners,
re-runs, read back."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from senseimig_dagster import mapping
from senseimig_dagster.dataverse import DataverseClient
from senseimig_dagster.dataverse.bulk import BulkLoader
from senseimig_dagster.dataverse.metadata import DataverseMetadata
from senseimig_dagster.load.frames import deterministic_id
from senseimig_dagster.load.owners import OwnerMap
from senseimig_dagster.load.read_back import build_readback, read_back, readback_columns, source_id_filter
from senseimig_dagster.load.upsert import landed_per_table, load_staged
from senseimig_dagster.mapping.sample import field_diff, sample_patient_ids, sample_rows
from senseimig_dagster.mapping.scope import tables_of
from senseimig_dagster.mapping.targets import TargetCatalog
from senseimig_dagster.objects import REGISTRY
from senseimig_dagster.sandbox.dataverse_emulator.seed import load_seed
from senseimig_dagster.sandbox.generator import generate
from senseimig_dagster.staging.pipeline import stage_tenant
from senseimig_dagster_tests.support.environments import schema_client
from senseimig_dagster_tests.support.tenants import read_object

FMAP = mapping.load_valid(mapping.default_map_path())
CATALOG = TargetCatalog()
HARPER = load_seed().user("harper.hygienist@sandbox.example")["systemuserid"]
CREATED = dt.datetime(2019, 5, 6, 7, 8, 9, tzinfo=dt.UTC)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[DataverseClient]:
    with schema_client(tmp_path / "dv.sqlite") as c:
        yield c


def _staged() -> dict[str, pl.DataFrame]:
    """Children first on purpose: the load order must come from the registry, not the dict."""
    return {
        "appointment": pl.DataFrame({
            "_object": ["appointment"], "_source_id": ["a1"], "smig_sourcesystemid": ["a1"],
            "smig_PatientId": ["p2"], "smig_LocationId": ["loc-1"], "smig_name": ["Appointment 2024-01-02"]}),
        "patient": pl.DataFrame({
            "_object": ["patient"] * 2, "_source_id": ["p1", "p2"], "smig_sourcesystemid": ["p1", "p2"],
            "lastname": ["Ng", "O'Hara"], "parentcustomerid_account": ["loc-1", "loc-1"],
            # p1's policyholder is p2, a row of the same frame: bound in the second pass
            "smig_PrimaryPolicyholderId": ["p2", None], "statecode": [1, 0],
            "overriddencreatedon": [CREATED, CREATED]}),
        "location": pl.DataFrame({"_object": ["location"], "_source_id": ["loc-1"], "smig_sourcesystemid": ["loc-1"],
                                  "name": ["Summit Denver"]}),
        "communication": pl.DataFrame({
            "_object": ["communication"] * 2, "_source_id": ["c1", "c2"], "_table": ["phonecall", "email"],
            "smig_sourcesystemid": ["c1", "c2"], "subject": ["Recall", "Reminder"],
            "regardingobjectid_contact_phonecall": ["p1", None], "regardingobjectid_contact_email": [None, "p2"],
            "ownerid_phonecall": ["Harper.Hygienist@sandbox.example", None],
            "ownerid_email": [None, "nobody@sandbox.example"], "_owner_user_id": ["u1", "u2"]}),
        "document": pl.DataFrame({"_object": ["document"], "_source_id": ["d1"], "smig_sourcesystemid": ["d1"],
                                  "objectid_contact": ["p1"], "subject": ["Xray"]}),
    }


def _load(client: DataverseClient, staged: dict[str, pl.DataFrame], owners: OwnerMap | None = None):
    sets = DataverseMetadata(client).entity_sets(tables_of(FMAP, staged))
    return load_staged(BulkLoader([client], chunk_size=10, max_parallel=2), staged, FMAP, CATALOG, sets,
                       owners=owners), sets


def test_parents_load_first_and_every_lookup_resolves(client: DataverseClient) -> None:
    staged = _staged()
    results, sets = _load(client, staged)
    assert {k: (r.succeeded, r.failed) for k, r in results.items()} == {
        "location": (1, []), "patient": (2, []), "appointment": (1, []), "communication": (2, []),
        "document": (1, [])}
    assert landed_per_table(staged, results, FMAP) == {
        "account": 1, "annotation": 1, "contact": 2, "email": 1, "phonecall": 1, "smig_appointment": 1}
    account = client.retrieve("accounts", {"smig_sourcesystemid": "loc-1"}, ["accountid"])["accountid"]
    p1 = client.retrieve("contacts", {"smig_sourcesystemid": "p1"},
                         ["contactid", "_parentcustomerid_value", "_smig_primarypolicyholderid_value", "statecode",
                          "createdon", "_ownerid_value"])
    p2 = client.retrieve("contacts", {"smig_sourcesystemid": "p2"}, ["contactid", "statecode"])
    assert p1["_parentcustomerid_value"] == account
    assert p1["_smig_primarypolicyholderid_value"] == p2["contactid"]  # in-frame reference, second pass
    assert (p1["statecode"], p2["statecode"]) == (1, 0)  # state after create (not valid for create on contact)
    assert p1["createdon"] == "2019-05-06T07:08:09Z"  # overriddencreatedon becomes createdon
    appointment = client.retrieve("smig_appointments", {"smig_sourcesystemid": "a1"},
                                  ["_smig_patientid_value", "_smig_locationid_value"])
    assert (appointment["_smig_patientid_value"], appointment["_smig_locationid_value"]) == (p2["contactid"], account)
    call = client.retrieve("phonecalls", {"smig_sourcesystemid": "c1"}, ["_regardingobjectid_value"])
    assert call["_regardingobjectid_value"] == p1["contactid"]
    note = client.retrieve("annotations", deterministic_id("annotation", "d1"), ["_objectid_value"])
    assert note["_objectid_value"] == p1["contactid"]


def test_a_second_run_updates_in_place(client: DataverseClient) -> None:
    _load(client, _staged())
    staged = _staged()
    staged["patient"] = staged["patient"].with_columns(pl.Series("lastname", ["Ng-Okafor", "O'Hara"]))
    results, _ = _load(client, staged)  # overriddencreatedon is create-only: a re-run must leave it out
    assert all(not r.failed for r in results.values()), {k: r.failed for k, r in results.items()}
    contacts = list(client.query("contacts", ["lastname", "createdon"], filter="smig_sourcesystemid eq 'p1'"))
    assert [(c["lastname"], c["createdon"]) for c in contacts] == [("Ng-Okafor", "2019-05-06T07:08:09Z")]
    assert len(list(client.query("annotations", ["annotationid"]))) == 1  # keyless table: same id, no duplicate


def test_owners_bind_by_guid_only_when_an_owner_map_resolves_them(client: DataverseClient) -> None:
    seeded_owner = {"u1": HARPER}
    results, _ = _load(client, _staged(), OwnerMap(seeded_owner, {"harper.hygienist@sandbox.example": HARPER}))
    assert all(not r.failed for r in results.values())
    call = client.retrieve("phonecalls", {"smig_sourcesystemid": "c1"}, ["_ownerid_value"])
    assert call["_ownerid_value"] == HARPER
    app_user = client.retrieve("emails", {"smig_sourcesystemid": "c2"}, ["_ownerid_value"])["_ownerid_value"]
    assert app_user != HARPER  # u2 unresolved: Dataverse's default owner (the calling user)


def test_read_back_by_source_id_with_lookups_as_values(client: DataverseClient) -> None:
    _load(client, _staged())
    columns = readback_columns("contact", _staged()["patient"].columns, CATALOG)
    assert {"contactid", "_parentcustomerid_value", "_smig_primarypolicyholderid_value", "createdon"} <= set(columns)
    rows = read_back(client, "contacts", "contact", ["p1", "p2", "missing"], columns, chunk=1)
    assert sorted(rows) == ["p1", "p2"] and rows["p1"]["lastname"] == "Ng"
    assert source_id_filter(["a", "O'Neil"]) == "smig_sourcesystemid eq 'a' or smig_sourcesystemid eq 'O''Neil'"


def test_a_generated_sample_round_trips_with_every_value_equal(client: DataverseClient, tmp_path: Path) -> None:
    generate(tmp_path / "tenant", patients=40, seed=5)
    raw = {o.name: read_object(tmp_path / "tenant", o.name) for o in REGISTRY}
    rows = {k: v for k, v in sample_rows(raw, sample_patient_ids(raw["patient"], 4, seed=1)).items() if v.height}
    staged = stage_tenant(rows, FMAP).staged
    results, sets = _load(client, staged)
    assert sum(len(r.failed) for r in results.values()) == 0
    assert sum(landed_per_table(staged, results, FMAP).values()) == sum(f.height for f in staged.values())
    sent = {k: v.drop([c for c in ("ownerid_phonecall", "ownerid_email", "smig_ChangedBy") if c in v.columns])
            for k, v in staged.items()}
    diff = field_diff(FMAP, rows, sent, build_readback(client, sent, FMAP, CATALOG, sets), CATALOG)
    assert diff.height > 1000 and diff.filter(~pl.col("equal")).is_empty()
    looked_up = diff.filter(pl.col("column") == "smig_PatientId")
    assert looked_up.height > 0 and looked_up.get_column("dataverse_value").null_count() == 0
