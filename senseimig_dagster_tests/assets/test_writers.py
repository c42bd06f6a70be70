"""The ``dataverse/<object>`` writers end to end: a small generated tenant extracted through the raw assets, staged,
then schema + owners + every writer against the HTTPS emulator (seeded users and team; the team is the fallback
owner), under a confirmed copy of the default map. Write requests are counted by a WSGI wrapper around the
emulator, so "nothing was sent" is measured on the wire."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance, materialize

from senseimig_dagster.assets.dataverse_schema import dataverse_schema
from senseimig_dagster.assets.keys import writer_key
from senseimig_dagster.assets.owners import staging_owners
from senseimig_dagster.assets.partitions import range_tags
from senseimig_dagster.assets.raw import raw_assets
from senseimig_dagster.assets.staging import staging_assets
from senseimig_dagster.assets.writers import WRITER_KEYS, dataverse_assets
from senseimig_dagster.dataverse.metadata import DataverseMetadata
from senseimig_dagster.load.closing import closing_state
from senseimig_dagster.load.journal import JOURNAL
from senseimig_dagster.load.payload import PayloadBuilder
from senseimig_dagster.load.read_back import read_back
from senseimig_dagster.mapping import default_map
from senseimig_dagster.mapping.scope import writer_parents
from senseimig_dagster.mapping.targets import TargetCatalog
from senseimig_dagster.resources import AuditStore, MappingResource, StoreResource
from senseimig_dagster_tests.support.constants import SEED_APP_USER as APP_USER
from senseimig_dagster_tests.support.constants import SEED_TEAM as TEAM
from senseimig_dagster_tests.support.environments import sandbox
from senseimig_dagster_tests.support.maps import confirmed_map, default_map_copy


@pytest.fixture(scope="module")
def env(tenant: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The seed's Front Desk team is the fallback owner (no Sensei user matches a seed user); the load runs as the
    seed's application user. ``counter`` is the wire in front of the emulator."""
    work = tmp_path_factory.mktemp("load")
    confirmed, unconfirmed = confirmed_map(work / "mapping.yaml"), default_map_copy(work / "unconfirmed.yaml")
    database = work / "db.duckdb"
    with sandbox(work, tenant=tenant, key_delay=0.05, fallback_owner=TEAM) as served, \
            DagsterInstance.ephemeral() as instance:
        resources = served.resources(database, mapping=confirmed, audit=work / "audit.duckdb")
        tags = range_tags()
        assert materialize(raw_assets, resources=resources, instance=instance, tags=tags).success
        yield {"resources": resources, "instance": instance, "counter": served.wire, "database": str(database),
               "unconfirmed": str(unconfirmed), "audit": work / "audit.duckdb"}


EVERYTHING = [dataverse_schema, staging_assets, staging_owners, *dataverse_assets]
# The generic writers: documents have their own asset (bodies, SharePoint; test_documents_asset.py).
GENERIC_KEYS = [k for k in WRITER_KEYS if k != writer_key("document")]


def _writers(env: dict, keys=GENERIC_KEYS, mapping: str | None = None):
    resources = dict(env["resources"])
    if mapping:
        resources["mapping"] = MappingResource(path=mapping)
    before = env["counter"].writes
    result = materialize(EVERYTHING, resources=resources, instance=env["instance"], selection=list(keys),
                         raise_on_error=False)
    return result, env["counter"].writes - before


def _sql(env: dict, query: str, params=None) -> pl.DataFrame:
    with duckdb.connect(env["database"], read_only=True) as conn:
        return conn.execute(query, params or []).pl()


def _audit(env: dict, query: str) -> pl.DataFrame:
    with AuditStore(path=str(env["audit"])).connect(read_only=True) as conn:
        return conn.execute(query).pl()


@pytest.mark.slow
def test_unconfirmed_map_writes_nothing(env: dict) -> None:
    assert materialize([dataverse_schema, staging_assets, staging_owners], resources=env["resources"],
                       instance=env["instance"]).success
    result, writes = _writers(env, mapping=env["unconfirmed"])
    assert not result.success and writes == 0
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures and "field map gate closed" in str(failures[0].event_specific_data.error.message)


@pytest.fixture(scope="module")
def first(env: dict) -> dict:
    result, writes = _writers(env)
    assert result.success
    return {"result": result, "writes": writes}


def test_graph_orders_parents_before_children() -> None:
    fmap = default_map()
    assert writer_parents(fmap, "patient") == ["location", "provider"]
    assert "claim" in writer_parents(fmap, "claim_status_event")
    assert "patient" in writer_parents(fmap, "claim")  # via policy
    by_key = {a.key: a for a in dataverse_assets}
    upstream = by_key[writer_key("eligibility_check")].asset_deps[writer_key("eligibility_check")]
    assert {writer_key("patient"), writer_key("payer"), AssetKey(["staging", "owners"]),
            AssetKey(["dataverse", "schema"]), AssetKey(["staging", "eligibility_check"])} <= set(upstream)


def test_finished_work_gets_microsofts_state_pairs() -> None:
    comms = pl.DataFrame({"_source_id": ["a", "b", "c", "d", "e"],
                          "_table": ["phonecall", "phonecall", "phonecall", "email", "email"],
                          "directioncode": [True, False, True, True, False]})
    status = pl.DataFrame({"_source_id": ["a", "b", "c", "d", "e"],
                           "status": ["LeftVoicemail", "Completed", "Failed", "Sent", "Received"]})
    got = closing_state("communication", comms, default_map().objects["communication"].tables, status)
    assert got.select("statecode", "statuscode").rows() == [(1, 2), (1, 4), (2, 3), (1, 3), (1, 4)]
    staged = pl.DataFrame({"_source_id": ["a1", "a2", "a3"], "smig_status": ["Completed", "Future", "Cancelled"]})
    appts = closing_state("appointment", staged, ("smig_appointment",),
                          staged.select("_source_id", pl.col("smig_status").alias("status")))
    assert appts.select("statecode", "statuscode").rows() == [(1, 2), (None, None), (1, 2)]


def test_a_team_owns_by_reference_and_custom_tables_take_state() -> None:
    builder = PayloadBuilder("smig_appointment", ["ownerid", "statecode", "statuscode"], TargetCatalog(),
                             {"systemuser": "systemusers"})
    body = builder.body({"ownerid": f"/teams({TEAM})", "statecode": 1, "statuscode": 2})
    assert body == {"statecode": 1, "statuscode": 2, "ownerid@odata.bind": f"/teams({TEAM})"}


@pytest.mark.slow
def test_every_staged_row_lands_with_lookups_owner_dates_and_state(env: dict, first: dict) -> None:
    journal = _sql(env, f"SELECT * FROM {JOURNAL} WHERE run_id = ?", [first["result"].run_id])
    assert journal.filter(pl.col("outcome") == "failed").is_empty(), journal.filter(pl.col("outcome") == "failed")
    assert set(journal.get_column("outcome")) == {"created"} and first["writes"] > 0
    with StoreResource(database=env["database"]).get_connection() as conn:
        staged = {name: conn.sql(f'SELECT * FROM staging."{name}"').pl()
                  for name in ("patient", "appointment", "communication", "claim_status_event", "location")}
    assert journal.filter(pl.col("object") == "patient").height == staged["patient"].height > 50
    client = env["resources"]["dataverse"].client()
    try:
        # Every staged row is in Dataverse, by source id, for every table written.
        sets = DataverseMetadata(client).entity_sets(set(journal.get_column("table")))
        for (table,), part in journal.group_by("table"):
            found = read_back(client, sets[table], table, part.get_column("source_id").to_list(),
                              ["smig_sourcesystemid"])
            assert len(found) == part.height, table
        patients = read_back(client, "contacts", "contact", staged["patient"].get_column("_source_id").to_list(),
                             ["contactid", "_ownerid_value", "_parentcustomerid_value", "createdon"])
        locations = read_back(client, "accounts", "account", staged["location"].get_column("_source_id").to_list(),
                              ["accountid"])
        for row in staged["patient"].head(5).iter_rows(named=True):
            got = patients[row["_source_id"]]
            assert got["_parentcustomerid_value"] == locations[row["parentcustomerid_account"]]["accountid"]
            assert got["_ownerid_value"] == APP_USER  # no Sensei user on a patient: Dataverse's default owner
            assert got["createdon"].startswith(row["overriddencreatedon"].strftime("%Y-%m-%dT%H:%M:%S"))
        appts = staged["appointment"]
        done = appts.filter(pl.col("smig_status") == "Completed").head(3)
        future = appts.filter(~pl.col("smig_status").is_in(["Completed", "Cancelled", "NoShow", "Rescheduled"]))
        got = read_back(client, "smig_appointments", "smig_appointment",
                        [*done.get_column("_source_id"), *future.head(2).get_column("_source_id")],
                        ["statecode", "statuscode", "_smig_patientid_value", "_ownerid_value"])
        for sid in done.get_column("_source_id"):
            assert (got[sid]["statecode"], got[sid]["statuscode"]) == (1, 2)
        for sid in future.head(2).get_column("_source_id"):
            assert got[sid]["statecode"] == 0
        calls = staged["communication"].filter(pl.col("_table") == "phonecall").head(5)
        got = read_back(client, "phonecalls", "phonecall", calls.get_column("_source_id").to_list(),
                        ["statecode", "statuscode", "_ownerid_value", "_regardingobjectid_value"])
        assert {got[s]["statecode"] for s in calls.get_column("_source_id")} <= {1, 2}
        assert {got[s]["_ownerid_value"] for s in calls.get_column("_source_id")} == {TEAM}
    finally:
        client.close()


@pytest.mark.slow
def test_claim_status_events_are_created_in_time_order_under_their_claim(env: dict, first: dict) -> None:
    audit = _audit(env, "SELECT seq, source_id FROM audit.writes WHERE asset = 'dataverse/claim_status_event' "
                        "AND operation = 'create' AND outcome = 'pending' ORDER BY seq")
    with StoreResource(database=env["database"]).get_connection() as conn:
        events = conn.sql('SELECT _source_id, "smig_ClaimId", smig_occurredat FROM staging.claim_status_event').pl()
    assert events.height > 10
    order = {sid: i for i, sid in enumerate(audit.get_column("source_id"))}
    timed = events.with_columns(pl.col("_source_id").replace_strict(order).alias("sent")).sort("sent")
    assert timed.get_column("smig_occurredat").is_sorted()
    client = env["resources"]["dataverse"].client()
    try:
        claim = timed.get_column("smig_ClaimId")[0]
        ids = read_back(client, "smig_billingledgers", "smig_billingledger", [claim], ["smig_billingledgerid"])
        got = read_back(client, "smig_claimstatusevents", "smig_claimstatusevent",
                        timed.filter(pl.col("smig_ClaimId") == claim).get_column("_source_id").to_list(),
                        ["_smig_claimid_value"])
        assert {r["_smig_claimid_value"] for r in got.values()} == {ids[claim]["smig_billingledgerid"]}
    finally:
        client.close()


@pytest.mark.slow
def test_audit_has_one_intent_and_one_outcome_per_write(env: dict, first: dict) -> None:
    writes = _audit(env, f"SELECT batch, source_id, operation, outcome FROM audit.writes "
                         f"WHERE run_id = '{first['result'].run_id}'")
    per = writes.group_by("batch", "source_id", "operation").agg(pl.col("outcome").sort().alias("outcomes"))
    assert per.height > 1000
    assert set(per.get_column("outcomes").list.join(",")) == {"ok,pending"}
    creates = per.filter(pl.col("operation") == "create").height
    journal = _sql(env, f"SELECT count(*) AS n FROM {JOURNAL} WHERE run_id = ?", [first["result"].run_id])
    assert creates == journal.item()
    assert per.filter(pl.col("operation") == "state").height > 0


@pytest.fixture(scope="module")
def second(env: dict, first: dict) -> dict:
    result, writes = _writers(env)
    assert result.success
    return {"result": result, "writes": writes}


@pytest.mark.slow
def test_second_run_sends_zero_writes_and_marks_all_unchanged(env: dict, first: dict, second: dict) -> None:
    assert second["writes"] == 0
    journal = _sql(env, f"SELECT outcome, count(*) AS n FROM {JOURNAL} WHERE run_id = ? GROUP BY ALL",
                  [second["result"].run_id])
    total = _sql(env, f"SELECT count(*) AS n FROM {JOURNAL} WHERE run_id = ?", [first["result"].run_id]).item()
    assert dict(journal.iter_rows()) == {"unchanged": total}


@pytest.mark.slow
def test_a_changed_value_updates_only_that_row_with_its_before_image(env: dict, second: dict) -> None:
    with duckdb.connect(env["database"]) as conn:
        sid, old = conn.execute('SELECT _source_id, smig_modelboxnumber FROM staging.patient '
                                'ORDER BY _source_id LIMIT 1').fetchone()
        conn.execute("UPDATE staging.patient SET smig_modelboxnumber = 'BOX-CHANGED' WHERE _source_id = ?", [sid])
    result, writes = _writers(env, keys=[writer_key("patient")])
    assert result.success and writes == 1
    journal = _sql(env, f"SELECT source_id, outcome FROM {JOURNAL} WHERE run_id = ?", [result.run_id])
    assert journal.filter(pl.col("outcome") == "updated").get_column("source_id").to_list() == [sid]
    assert set(journal.filter(pl.col("source_id") != sid).get_column("outcome")) == {"unchanged"}
    audit = _audit(env, f"SELECT operation, source_id, outcome, CAST(\"before\" AS VARCHAR) AS before "
                        f"FROM audit.writes WHERE run_id = '{result.run_id}'")
    assert audit.filter(pl.col("outcome") == "pending").select("operation", "source_id").rows() == [("update", sid)]
    before = json.loads(audit.filter(pl.col("outcome") == "pending").get_column("before")[0])
    assert before == {"smig_modelboxnumber": old}
    client = env["resources"]["dataverse"].client()
    try:
        got = read_back(client, "contacts", "contact", [sid], ["smig_modelboxnumber"])
        assert got[sid]["smig_modelboxnumber"] == "BOX-CHANGED"
    finally:
        client.close()


@pytest.mark.slow
def test_a_changed_closed_phonecall_is_reopened_updated_and_closed_again(env: dict, second: dict) -> None:
    with duckdb.connect(env["database"]) as conn:
        (sid,) = conn.execute("SELECT _source_id FROM staging.communication WHERE _table = 'phonecall' "
                              "ORDER BY _source_id LIMIT 1").fetchone()
        conn.execute("UPDATE staging.communication SET subject = 'Changed subject' WHERE _source_id = ?", [sid])
    client = env["resources"]["dataverse"].client()
    try:
        state = read_back(client, "phonecalls", "phonecall", [sid], ["statecode", "statuscode"])[sid]
        assert state["statecode"] == 1  # completed: read-only until re-opened
        result, writes = _writers(env, keys=[writer_key("communication")])
        assert result.success and writes == 3  # re-open, update, close
        audit = _audit(env, f"SELECT operation, CAST(\"before\" AS VARCHAR) AS before FROM audit.writes "
                            f"WHERE run_id = '{result.run_id}' AND outcome = 'pending' ORDER BY seq")
        assert audit.get_column("operation").to_list() == ["state", "update", "state"]
        assert json.loads(audit.get_column("before")[0]) == {"statecode": 1, "statuscode": state["statuscode"]}
        got = read_back(client, "phonecalls", "phonecall", [sid], ["statecode", "statuscode", "subject"])[sid]
        assert (got["statecode"], got["statuscode"], got["subject"]) == (1, state["statuscode"], "Changed subject")
    finally:
        client.close()


@pytest.mark.slow
def test_rows_written_before_a_lost_journal_are_found_by_key_not_created_again(env: dict, second: dict) -> None:
    """A crash after the writes but before the journal append: the audit log names the rows, a lookup by key finds
    them, and they are updated without the create-only overriddencreatedon (the emulator refuses it on update)."""
    with duckdb.connect(env["database"]) as conn:
        conn.execute(f"DELETE FROM {JOURNAL} WHERE object = 'payer'")
        payers = conn.execute("SELECT count(*) FROM staging.payer").fetchone()[0]
    result, writes = _writers(env, keys=[writer_key("payer")])
    assert result.success and writes >= 1
    journal = _sql(env, f"SELECT outcome, count(*) AS n FROM {JOURNAL} WHERE run_id = ? GROUP BY ALL",
                  [result.run_id])
    assert dict(journal.iter_rows()) == {"updated": payers}
    ops = _audit(env, f"SELECT DISTINCT operation, outcome FROM audit.writes WHERE run_id = '{result.run_id}'")
    assert sorted(ops.rows()) == [("update", "ok"), ("update", "pending")]
    again, writes = _writers(env, keys=[writer_key("payer")])
    assert again.success and writes == 0
