"""BulkLoader against the emulator over real HTTP on 127.0.0.1, with bearer tokens from the Entra stand-in and
faults: tight service protection limits (time-scaled), tokens expiring and revoked mid-load, bulk messages
unsupported, bad rows inside all-or-nothing bulk chunks, and two application users sharing the work."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from senseimig_dagster.dataverse import BearerAuth, DataverseClient, EntraTokenProvider
from senseimig_dagster.dataverse.bulk import BulkLoader, RowFailure
from senseimig_dagster.sandbox.dataverse_emulator import (
    DataverseEmulator,
    Limits,
    RecordStore,
    ServiceProtection,
)
from senseimig_dagster.sandbox.tls import serve_wsgi
from senseimig_dagster_tests.support.constants import DATAVERSE_CLIENT_ID as CLIENT_ID
from senseimig_dagster_tests.support.constants import DATAVERSE_SECRET as SECRET
from senseimig_dagster_tests.support.constants import SOURCE_KEY as KEY
from senseimig_dagster_tests.support.constants import TEST_TENANT as TENANT
from senseimig_dagster_tests.support.environments import Entra, keyed_contacts

SECOND_ID, SECOND_SECRET = "second-client", "second-Secret~value"
MAX_LENGTH_CODE = "0x80044331"
THROTTLED = (b'{"error":{"code":"0x80072322","message":"Number of requests exceeded the limit of 6000 over time '
             b'window of 300 seconds."}}')


@dataclass
class Seen:
    at: float  # server arrival time (monotonic)
    user: str
    path: str
    status: int = 0
    retry_after: float = 0.0
    answered: float = 0.0


class Recorder:
    """WSGI wrapper: who sent what when, and the status; ``hooks[n]`` runs before the n-th request (0-based)."""

    def __init__(self, app: Callable, entra: Entra):
        self.app, self.entra = app, entra
        self.seen: list[Seen] = []
        self.hooks: dict[int, Callable[[], object]] = {}
        self._lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")[2]
        info = self.entra.stand_in.token_info(token)
        with self._lock:
            hook = self.hooks.pop(len(self.seen), None)
            entry = Seen(time.monotonic(), info.client_id if info else "?", environ["PATH_INFO"])
            self.seen.append(entry)
        if hook is not None and hook() == "429":  # a canned throttle, as Dataverse words it
            entry.status, entry.retry_after, entry.answered = 429, 1.0, time.monotonic()
            start_response("429 Too Many Requests", [("Content-Type", "application/json"), ("Retry-After", "1")])
            return [THROTTLED]

        def start(status: str, headers: list, *args):
            entry.status = int(status.split()[0])
            entry.retry_after = float(dict(headers).get("Retry-After", 0))
            entry.answered = time.monotonic()
            return start_response(status, headers, *args)

        return self.app(environ, start)

    def by(self, user: str) -> list[Seen]:
        return [s for s in self.seen if s.user == user]


@dataclass
class Env:
    recorder: Recorder
    clients: list[DataverseClient]
    store: RecordStore
    entra: Entra


@pytest.fixture
def make_env(tmp_path: Path, entra: Entra) -> Iterator[Callable[..., Env]]:
    entra.stand_in.add_app(SECOND_ID, SECOND_SECRET)
    stack = ExitStack()

    def make(users: int = 1, limits: Limits | None = None, bulk_unsupported: Iterable[str] = ()) -> Env:
        catalog = keyed_contacts()
        store = RecordStore(tmp_path / "dv.sqlite", catalog)
        stack.callback(store.close)
        protection = ServiceProtection(limits or Limits(enabled=False), servers=1)
        emulator = DataverseEmulator(catalog, store, token_validator=entra.stand_in.token_info, tenant=TENANT,
                                     protection=protection, bulk_unsupported=bulk_unsupported)
        recorder = Recorder(emulator, entra)
        url = stack.enter_context(serve_wsgi(recorder))
        clients = []
        for client_id, secret in [(CLIENT_ID, SECRET), (SECOND_ID, SECOND_SECRET)][:users]:
            provider = stack.enter_context(EntraTokenProvider(TENANT, client_id, secret, url,
                                                                  authority_host=entra.url, verify=entra.ca))
            clients.append(stack.enter_context(DataverseClient(url, BearerAuth(provider), timeout=10)))
        return Env(recorder, clients, store, entra)

    yield make
    stack.close()


def contacts(n: int, bad: Iterable[int] = ()) -> Iterator[dict]:
    bad = set(bad)
    for i in range(n):
        yield {"lastname": "x" * 51 if i in bad else f"L{i}", KEY: f"S-{i:04d}"}


def assert_bad_rows(failed: list[RowFailure], indexes: list[int]) -> None:
    assert [f.index for f in failed] == indexes
    for f in failed:
        assert (f.status, f.code) == (400, MAX_LENGTH_CODE) and "'lastname'" in f.message and "'contact'" in f.message


def test_throttling_pauses_every_sender_of_the_user_until_retry_after_and_loses_nothing(make_env) -> None:
    # 10 requests per 1 s window (300 s scaled 300x); 30 bulk chunks need several windows.
    env = make_env(limits=Limits(requests=10, time_scale=300))
    result = BulkLoader(env.clients, chunk_size=10, max_parallel=4).create("contact", contacts(300))
    assert result.succeeded == 300 and result.failed == [] and None not in result.ids
    assert env.clients[0].count("contacts") == 300
    throttles = [s for s in env.recorder.seen if s.status == 429]
    assert result.throttled == len(throttles) >= 1
    for t in throttles:
        # after a 429 is answered, nothing more of that user arrives until Retry-After has elapsed (in-flight
        # requests sent before the client saw the 429 may arrive within a small margin)
        early = [s for s in env.recorder.by(t.user) if t.answered + 0.1 < s.at < t.answered + t.retry_after - 0.05]
        assert early == [], f"{len(early)} requests sent during a {t.retry_after} s pause"
    assert {t.retry_after for t in throttles} == {1.0}  # never escalated: nobody pushed during a pause


def test_a_429_pauses_all_senders_of_that_user_only(make_env) -> None:
    env = make_env(users=2)
    env.recorder.hooks[12] = lambda: "429"
    result = BulkLoader(env.clients, chunk_size=5, max_parallel=4).create("contact", contacts(400))
    assert result.succeeded == 400 and result.throttled == 1
    t = next(s for s in env.recorder.seen if s.status == 429)
    during = [s for s in env.recorder.seen if t.answered + 0.05 < s.at < t.answered + 0.95]
    assert [s for s in during if s.user == t.user] == []  # a per-thread wait would let its other threads send
    assert any(s.user != t.user for s in during)  # the other application user kept going
    assert [s for s in env.recorder.by(t.user) if s.at > t.answered + 0.95]  # and the paused one resumed


def test_tokens_expiring_and_revoked_mid_load_are_reacquired(make_env) -> None:
    env = make_env()
    entra = env.entra
    env.recorder.hooks[5] = lambda: entra.clock.advance(2 * 3600)  # every token expires (msal and stand-in agree)
    env.recorder.hooks[12] = lambda: entra.stand_in.revoke_all()  # 401 for tokens msal still trusts
    result = BulkLoader(env.clients, chunk_size=10, max_parallel=2).create("contact", contacts(200))
    assert result.succeeded == 200 and result.failed == []
    assert any(s.status == 401 for s in env.recorder.seen)
    assert entra.stand_in.stats["tokens_issued"] >= 3
    assert env.clients[0].count("contacts") == 200


def test_bulk_unsupported_falls_back_to_batch_and_support_is_asked_once(make_env) -> None:
    env = make_env(bulk_unsupported={"contact"})
    loader = BulkLoader(env.clients, chunk_size=25, max_parallel=3)
    first = loader.create("contact", contacts(100, bad=[3, 60]))
    second = loader.create("contact", ({**r, KEY: "T" + r[KEY]} for r in contacts(50)))
    paths = [s.path for s in env.recorder.seen]
    assert not any("CreateMultiple" in p for p in paths)
    assert paths.count("/api/data/v9.2/sdkmessagefilters") == 1
    assert paths.count("/api/data/v9.2/$batch") == 4 + 2
    assert first.succeeded == 98 and second.succeeded == 50
    assert_bad_rows(first.failed, [3, 60])
    assert first.ids[3] is None and all(first.ids[i] for i in range(100) if i not in (3, 60))
    row = env.clients[0].retrieve("contacts", first.ids[10], select=[KEY])
    assert row[KEY] == "S-0010"  # ids are in row order


def test_bad_rows_in_a_bulk_chunk_are_isolated_and_good_rows_land(make_env) -> None:
    env = make_env()
    bad = [7, 120, 121, 199]
    result = BulkLoader(env.clients, chunk_size=50, max_parallel=4, per_row_below=8).create(
        "contact", contacts(200, bad=bad))
    assert result.succeeded == 196
    assert_bad_rows(result.failed, bad)
    assert env.clients[0].count("contacts") == 196
    good = [i for i in range(200) if i not in bad]
    assert all(result.ids[i] for i in good) and all(result.ids[i] is None for i in bad)
    assert env.clients[0].retrieve("contacts", result.ids[150], select=[KEY])[KEY] == "S-0150"
    bulk_calls = [s for s in env.recorder.seen if s.path.endswith("CreateMultiple")]
    assert any(s.status == 400 for s in bulk_calls) and any(s.path.endswith("$batch") for s in env.recorder.seen)
    assert "'lastname'" not in repr(result.failed)  # Dataverse's text stays out of reprs


def test_upsert_isolates_bad_rows_and_refuses_unaddressable_keys(make_env) -> None:
    env = make_env()
    loader = BulkLoader(env.clients, chunk_size=20, max_parallel=2)
    assert loader.create("contact", contacts(30)).succeeded == 30
    rows = [{**r, "lastname": r["lastname"] + "u"} for r in contacts(60, bad=[45])]
    rows[10][KEY] = "A/B"  # '/' breaks key addressing: refused before sending
    result = loader.upsert("contact", rows, [KEY])
    assert result.succeeded == 58 and [f.index for f in result.failed] == [10, 45]
    assert result.failed[0].status is None and KEY in result.failed[0].message and "A/B" not in result.failed[0].message
    assert (result.failed[1].status, result.failed[1].code) == (400, MAX_LENGTH_CODE)
    assert env.clients[0].count("contacts") == 30 + 29  # rows 30-59 are new, but for 45; row 10 existed
    assert env.clients[0].retrieve("contacts", {KEY: "S-0005"}, select=["lastname"])["lastname"] == "L5u"


def test_batch_fallback_upsert_by_key_returns_the_record_ids(make_env) -> None:
    # Addressed by key, an upsert answers OData-EntityId in the key's form: the ids come from the representation.
    env = make_env(bulk_unsupported={"contact"})
    loader = BulkLoader(env.clients, chunk_size=10, max_parallel=2)
    created = loader.create("contact", contacts(5))
    result = loader.upsert("contact", contacts(12), [KEY])  # rows 0-4 update, 5-11 create
    assert result.succeeded == 12 and result.failed == []
    assert result.ids[:5] == created.ids
    for i, record_id in enumerate(result.ids):
        assert env.clients[0].retrieve("contacts", {KEY: f"S-{i:04d}"}, select=["contactid"])["contactid"] == record_id


def test_two_application_users_share_the_work(make_env) -> None:
    env = make_env(users=2, limits=Limits(requests=8, time_scale=300))
    result = BulkLoader(env.clients, chunk_size=5, max_parallel=4).create("contact", contacts(200))
    assert result.succeeded == 200 and result.failed == []
    per_user = {user: len(env.recorder.by(user)) for user in (CLIENT_ID, SECOND_ID)}
    assert all(n >= 8 for n in per_user.values()), per_user  # both users carried a real share
    # the loader's own count matches the wire (plus the one support query, sent by the first client)
    assert result.requests_per_client == [per_user[CLIENT_ID] - 1, per_user[SECOND_ID]]
    assert env.clients[1].count("contacts") == 200
