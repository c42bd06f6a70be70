"""The load's speed fixes keep its outcomes: parallel read-back answers exactly what a sequential one did, a
parent's time-ordered trail goes in rounds (never two of one parent in flight, each parent's rows in order, ids and
failures mapped back to their rows), and the emulator answers a read-back by source id from its key index."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from senseimig_dagster.dataverse.bulk import LoadResult, RowFailure
from senseimig_dagster.dataverse.errors import DataverseError
from senseimig_dagster.load.upsert import read_back
from senseimig_dagster.load.writer import _rounds, _Row, _Sender
from senseimig_dagster.sandbox.dataverse_emulator.odata import AnyOf
from senseimig_dagster.sandbox.dataverse_emulator.store import RecordStore
from senseimig_dagster_tests.support.constants import SOURCE_KEY as KEY
from senseimig_dagster_tests.support.environments import keyed_contacts


# -- read-back ---------------------------------------------------------------------------------------------------
class _SlowClient:
    """Answers ``query`` from ``rows`` after a short wait, counting how many queries were in flight at once; a
    filter naming ``bad`` is refused with 400 (the one-by-one fallback's trigger)."""

    pool_size = 64

    def __init__(self, rows: dict[str, dict[str, Any]], bad: str | None = None) -> None:
        self.rows, self.bad = rows, bad
        self.in_flight = self.peak = self.queries = 0
        self.lock = threading.Lock()

    def query(self, entity_set: str, select: list[str], filter: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            self.in_flight += 1
            self.queries += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            time.sleep(0.02)
            if self.bad and f"'{self.bad}'" in (filter or ""):
                raise DataverseError(400, "0x0", None, entity_set, "query")
            return [r for sid, r in self.rows.items() if f"'{sid}'" in (filter or "")]
        finally:
            with self.lock:
                self.in_flight -= 1


def test_read_back_sends_its_queries_together_and_answers_every_row() -> None:
    rows = {f"s{i:03d}": {KEY: f"s{i:03d}", "contactid": f"id{i}"} for i in range(40)}
    client = _SlowClient(rows)
    got = read_back(client, "contacts", "contact", [*rows, "missing"], ["contactid"], chunk=3, parallel=4)
    assert got == rows  # every id that exists, nothing else
    assert client.queries == 14  # 41 ids in pieces of 3
    assert client.peak == 4  # up to `parallel` in flight, never more


def test_read_back_one_at_a_time_when_asked() -> None:
    client = _SlowClient({"a": {KEY: "a", "contactid": "1"}, "b": {KEY: "b", "contactid": "2"}})
    assert set(read_back(client, "contacts", "contact", ["a", "b"], [], chunk=1, parallel=1)) == {"a", "b"}
    assert client.peak == 1


def test_read_back_raises_what_is_not_a_refused_filter() -> None:
    class Failing(_SlowClient):
        def query(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
            raise DataverseError(503, None, None, "contacts", "query")

    with pytest.raises(DataverseError) as err:
        read_back(Failing({}), "contacts", "contact", ["a", "b", "c"], [], chunk=1, parallel=3)
    assert err.value.status == 503


# -- rounds ------------------------------------------------------------------------------------------------------
def test_rounds_put_the_nth_row_of_each_lane_in_round_n() -> None:
    assert _rounds(["c1", "c2", "c1", "c3", "c1", "c2"]) == [[0, 1, 3], [2, 5], [4]]
    assert _rounds([]) == []


class _RecordingLoader:
    """Upserts by recording each call's source ids; ``refuse`` fails that source id with 400."""

    def __init__(self, refuse: str) -> None:
        self.calls: list[list[str]] = []
        self.refuse = refuse
        self.clients = [None]

    def upsert(self, table: str, bodies: list[dict[str, Any]], keys: list[str]) -> LoadResult:
        sids = [b[KEY] for b in bodies]
        self.calls.append(sids)
        failed = [RowFailure(i, 400, "0x80040203", None) for i, s in enumerate(sids) if s == self.refuse]
        return LoadResult(succeeded=len(sids) - len(failed), ids=[None] * len(sids), failed=failed, requests=1)


def test_a_time_ordered_trail_goes_in_rounds_with_outcomes_on_the_right_rows() -> None:
    bind = "smig_ClaimId@odata.bind"
    events = [("e1", "c1"), ("e2", "c2"), ("e3", "c1"), ("e4", None), ("e5", "c1"), ("e6", "c2"), ("e7", None)]
    loader = _RecordingLoader(refuse="e6")
    ctx = SimpleNamespace(loader=loader, entity_sets={"smig_claimstatusevent": "smig_claimstatusevents"})
    sender = _Sender(ctx, "smig_claimstatusevent", False, {}, bind)  # type: ignore[arg-type]
    chunk = [(_Row(sid, {bind: claim and f"/smig_billingledgers({KEY}='{claim}')"}, {}), {"smig_status": "x"})
             for sid, claim in events]
    result = sender._write(chunk, "create")
    # Never two events of one claim in one call; each claim's events in their (time) order; no claim: independent.
    assert loader.calls == [["e1", "e2", "e4", "e7"], ["e3", "e6"], ["e5"]]
    assert [(f.index, f.status, f.code) for f in result.failed] == [(5, 400, "0x80040203")]  # e6's chunk index
    assert result.succeeded == 6 and result.requests == 3 and len(result.ids) == 7


# -- the emulator's key index ------------------------------------------------------------------------------------
@pytest.fixture
def store(tmp_path: Path) -> RecordStore:
    catalog = keyed_contacts()
    s = RecordStore(tmp_path / "dv.sqlite", catalog)
    yield s
    s.close()


def test_emulator_answers_a_source_id_filter_from_the_key_index(store: RecordStore,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    made = {sid: store.create("contact", {"lastname": "N", KEY: sid}) for sid in ("P-1", "O'Hara", "P-3", "1")}
    store.create("contact", {"lastname": "no key"})
    renamed = store.update("contact", made["P-3"].id, {KEY: "P-4"})

    def no_scan(*args: Any) -> Any:
        raise AssertionError("a filter on the key column scanned the table")

    monkeypatch.setattr(RecordStore, "_where", staticmethod(no_scan))
    got = store.query("contact", [(KEY, AnyOf(("O'Hara", "P-1", "P-3", "P-4", "missing")))])
    # Ordered by primary key as SQL Server orders it: the emulator's sequential ids make that creation order.
    expected = [made["P-1"].id, made["O'Hara"].id, renamed.id]
    assert [r.id for r in got] == expected  # the old key value gone with its update
    assert [r.values[KEY] for r in store.query("contact", [(KEY, "P-1")])] == ["P-1"]
    assert [r.id for r in store.query("contact", [(KEY, AnyOf(("O'Hara", "P-1", "P-4")))], limit=2, offset=1)] \
        == expected[1:]
    with pytest.raises(AssertionError):  # any other filter takes the general path
        store.query("contact", [("lastname", "N")])
    with pytest.raises(AssertionError):  # a number is not the string key "1": json_extract's comparison decides
        store.query("contact", [(KEY, 1)])


# -- the version read of one chunk overlaps the next chunk's write -------------------------------------------------
class _Audit:
    def __init__(self, events: list[str]) -> None:
        self.events, self.outcomes, self.batches = events, [], 0

    def intend(self, run_id: str, asset: str, table: str, entity_set: str, intents: list) -> int:
        self.batches += 1
        self.events.append(f"intend {','.join(i[0] for i in intents)}")
        return self.batches

    def record(self, batch: int, outcomes: list) -> None:
        self.events.append(f"record {batch}")
        self.outcomes += [(batch, o.source_id, o.outcome, o.after_version, o.error_code) for o in outcomes]


def test_outcomes_carry_the_versions_read_after_the_next_chunk_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    import senseimig_dagster.load.writer as writer

    monkeypatch.setattr(writer, "AUDIT_CHUNK", 2)
    events: list[str] = []
    loader = _RecordingLoader(refuse="r3")
    loader.upsert = lambda table, bodies, keys, up=loader.upsert: (  # type: ignore[method-assign]
        events.append(f"write {','.join(b[KEY] for b in bodies)}"), up(table, bodies, keys))[1]
    client = _SlowClient({f"r{i}": {KEY: f"r{i}", "contactid": f"id{i}", "versionnumber": 100 + i}
                          for i in range(1, 6)})
    loader.clients = [client]
    audit = _Audit(events)
    ctx = SimpleNamespace(loader=loader, entity_sets={"contact": "contacts"}, audit=audit, run_id="run",
                          asset="dataverse/patient")
    rows = [_Row(f"r{i}", {}, {}) for i in range(1, 6)]
    _Sender(ctx, "contact", False, {}).send("create", [(r, {"lastname": "x"}) for r in rows])  # type: ignore[arg-type]
    assert events == ["intend r1,r2", "write r1,r2", "intend r3,r4", "write r3,r4", "record 1",
                      "intend r5", "write r5", "record 2", "record 3"]
    assert audit.outcomes == [(1, "r1", "ok", "101", None), (1, "r2", "ok", "102", None),
                              (2, "r3", "failed", None, "0x80040203"), (2, "r4", "ok", "104", None),
                              (3, "r5", "ok", "105", None)]
    assert [r.dataverse_id for r in rows] == ["id1", "id2", None, "id4", "id5"]
    assert rows[2].failure == (400, "0x80040203") and not rows[2].sent and rows[3].sent
