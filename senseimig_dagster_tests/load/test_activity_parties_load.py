"""Communications through ``write_object`` into the emulator over the Web API: phone calls and e-mails with their
activity parties (Sender/To by direction), original times, owner and Completed state; a changed direction replaces
the parties of a closed activity (re-opened and closed again); a user who left gets no staff party."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pytest

from senseimig_dagster import mapping
from senseimig_dagster.audit.log import AuditLog
from senseimig_dagster.dataverse import DataverseClient
from senseimig_dagster.dataverse.bulk import BulkLoader
from senseimig_dagster.dataverse.metadata import DataverseMetadata
from senseimig_dagster.load.closing import closing_state
from senseimig_dagster.load.journal import JournalEntry, RecordOutcome
from senseimig_dagster.load.owners import OwnerMap
from senseimig_dagster.load.read_back import read_back
from senseimig_dagster.load.upsert import load_staged
from senseimig_dagster.load.writer import WriteContext, write_object
from senseimig_dagster.mapping.targets import TargetCatalog
from senseimig_dagster.sandbox.dataverse_emulator.seed import load_seed
from senseimig_dagster_tests.support.environments import schema_client

FMAP = mapping.load_valid(mapping.default_map_path())
CATALOG = TargetCatalog()
SEED = load_seed()
HARPER = SEED.user("harper.hygienist@sandbox.example")["systemuserid"]
FALLBACK = SEED.user("avery.admin@sandbox.example")["systemuserid"]
# u1 matched by e-mail; u2 left the practice: owned by the fallback user, no e-mail match
OWNERS = OwnerMap({"u1": f"/systemusers({HARPER})", "u2": f"/systemusers({FALLBACK})"},
                  {"harper.hygienist@sandbox.example": HARPER})
T0 = dt.datetime(2021, 3, 4, 9, 30, tzinfo=dt.UTC)
SENDER, TO = 1, 2


@pytest.fixture
def client(tmp_path: Path) -> Iterator[DataverseClient]:
    with schema_client(tmp_path / "dv.sqlite") as c:
        yield c


@pytest.fixture
def ctx(client: DataverseClient) -> WriteContext:
    loader = BulkLoader([client], chunk_size=10, max_parallel=2)
    sets = DataverseMetadata(client).entity_sets(["contact", "phonecall", "email"])
    patients = pl.DataFrame({"_object": ["patient"] * 2, "_source_id": ["p1", "p2"],
                             "smig_sourcesystemid": ["p1", "p2"], "lastname": ["Ng", "Oh"]})
    assert not load_staged(loader, {"patient": patients}, FMAP, CATALOG, sets)["patient"].failed
    return WriteContext(loader, CATALOG, sets, AuditLog(duckdb.connect()), "run-1", "dataverse/communication", {})


def staged(directions: list[bool]) -> pl.DataFrame:
    """c1 call (u1), c2 e-mail (u1), c3 call by u2 who left; times differ per row so a mix-up shows."""
    n = len(directions)
    start = [T0 + dt.timedelta(days=i) for i in range(n)]
    frame = pl.DataFrame({
        "_object": ["communication"] * n, "_source_id": ["c1", "c2", "c3"][:n],
        "_table": ["phonecall", "email", "phonecall"][:n], "smig_sourcesystemid": ["c1", "c2", "c3"][:n],
        "subject": ["Recall", "Reminder", "Balance"][:n],
        "regardingobjectid_contact_phonecall": ["p1", None, "p2"][:n],
        "regardingobjectid_contact_email": [None, "p2", None][:n],
        "ownerid_phonecall": ["Harper.Hygienist@sandbox.example", None, "gone@sandbox.example"][:n],
        "ownerid_email": [None, "harper.hygienist@sandbox.example", None][:n],
        "_owner_user_id": ["u1", "u1", "u2"][:n], "directioncode": directions,
        "actualstart": start, "actualend": [s + dt.timedelta(minutes=7) for s in start],
        "overriddencreatedon": [s - dt.timedelta(hours=1) for s in start]})
    status = pl.DataFrame({"_source_id": ["c1", "c2", "c3"][:n], "status": ["Completed"] * n})
    return closing_state("communication", frame, FMAP.objects["communication"].tables, status)


def write(ctx: WriteContext, frame: pl.DataFrame) -> list[RecordOutcome]:
    rows = write_object(ctx, FMAP.objects["communication"], frame, owners=OWNERS)
    assert [r.outcome for r in rows if r.outcome == "failed"] == [], [(r.source_id, r.status, r.code) for r in rows]
    return rows


def parties(client: DataverseClient, activity: str) -> set[tuple[int, str]]:
    rows = client.query("activityparties", ["participationtypemask", "_partyid_value"],
                        filter=f"_activityid_value eq {activity}")
    return {(p["participationtypemask"], p["_partyid_value"]) for p in rows}


def landed(client: DataverseClient, sid: str) -> tuple[str, dict]:
    for entity_set, table in (("phonecalls", "phonecall"), ("emails", "email")):
        found = read_back(client, entity_set, table, [sid], [
            "actualstart", "actualend", "createdon", "directioncode", "statecode", "statuscode", "_ownerid_value"])
        if sid in found:
            return table, found[sid]
    raise AssertionError(f"{sid} not in Dataverse")


def contact_id(client: DataverseClient, sid: str) -> str:
    return client.retrieve("contacts", {"smig_sourcesystemid": sid}, ["contactid"])["contactid"]


def test_communications_land_with_parties_times_direction_and_completed_state(
        ctx: WriteContext, client: DataverseClient) -> None:
    frame = staged([True, False, False])
    rows = write(ctx, frame)
    assert sorted((r.table, r.outcome) for r in rows) == [("email", "created"), ("phonecall", "created"),
                                                          ("phonecall", "created")]
    p1, p2 = contact_id(client, "p1"), contact_id(client, "p2")
    expected_parties = {"c1": {(SENDER, HARPER), (TO, p1)},  # outbound: staff -> patient
                        "c2": {(TO, HARPER)},  # inbound e-mail: email.from may not be a contact (metadata)
                        "c3": {(SENDER, p2)}}  # u2 left: no staff party, never the fallback user
    expected_state = {"c1": ("phonecall", 1, 2), "c2": ("email", 1, 4), "c3": ("phonecall", 1, 4)}
    for source in frame.iter_rows(named=True):
        sid = source["_source_id"]
        table, record = landed(client, sid)
        assert (table, record["statecode"], record["statuscode"]) == expected_state[sid]
        assert parties(client, record["activityid"]) == expected_parties[sid]
        stamp = "%Y-%m-%dT%H:%M:%SZ"
        assert record["actualstart"] == source["actualstart"].strftime(stamp)
        assert record["actualend"] == source["actualend"].strftime(stamp)
        assert record["createdon"] == source["overriddencreatedon"].strftime(stamp)
        assert record["directioncode"] is source["directioncode"]
        assert record["_ownerid_value"] == (FALLBACK if sid == "c3" else HARPER)


def test_a_changed_direction_replaces_the_parties_of_the_closed_activity(
        ctx: WriteContext, client: DataverseClient) -> None:
    first = write(ctx, staged([True, False]))
    previous = {(r.table, r.source_id): JournalEntry(r.dataverse_id, r.body_hash, r.digests) for r in first}
    again = WriteContext(ctx.loader, ctx.catalog, ctx.entity_sets, ctx.audit, "run-2", ctx.asset, previous)
    assert {r.outcome for r in write(again, staged([True, False]))} == {"unchanged"}  # nothing sent
    sent = again.audit.conn.execute("SELECT count(*) FROM audit.writes WHERE run_id = 'run-2'").fetchone()[0]
    assert sent == 0

    third = WriteContext(ctx.loader, ctx.catalog, ctx.entity_sets, ctx.audit, "run-3", ctx.asset, previous)
    rows = {r.source_id: r.outcome for r in write(third, staged([False, False]))}  # c1 now inbound
    assert rows == {"c1": "updated", "c2": "unchanged"}
    table, call = landed(client, "c1")
    assert parties(client, call["activityid"]) == {(SENDER, contact_id(client, "p1")), (TO, HARPER)}
    assert (call["statecode"], call["statuscode"], call["directioncode"]) == (1, 4, False)  # Received, closed
    ops = [o for (o,) in third.audit.conn.execute(
        "SELECT operation FROM audit.writes WHERE run_id = 'run-3' AND outcome = 'ok' ORDER BY seq").fetchall()]
    assert ops == ["state", "update", "update", "state"]  # re-open, columns, parties (PUT), close again
