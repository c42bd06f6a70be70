"""The Sensei REST client against the simulator: over real HTTP on 127.0.0.1 for paging, filters and every failure
mode; in-process (``httpx.WSGITransport``) for the quick unit tests."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from email.utils import format_datetime
from pathlib import Path

import httpx
import orjson
import polars as pl
import pytest

from senseimig_dagster.objects import OBJECTS
from senseimig_dagster.sandbox import documents
from senseimig_dagster.sandbox.sensei_sim import Fault, Faults, RateLimit, SenseiSimulator, serve
from senseimig_dagster.sandbox.sensei_sim.faults import EXTRA_FIELD
from senseimig_dagster.sandbox.sensei_sim.ratelimit import RateLimiter
from senseimig_dagster.sensei.client import SenseiClient, to_batch
from senseimig_dagster.sensei.errors import SenseiAuthError, SenseiPageError
from senseimig_dagster.sensei.records import Batch
from senseimig_dagster.transport.retry import parse_retry_after
from senseimig_dagster_tests.support import tenants

KEY = "k-7f3a-SECRET-do-not-log"
PATIENT, LOCATION, DOCUMENT = OBJECTS["patient"], OBJECTS["location"], OBJECTS["document"]


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[dict]]]:
    out = tmp_path_factory.mktemp("client-tenant")
    return out, tenants.build_sim_tenant(out)


@contextmanager
def server(tenant, **sim_kwargs) -> Iterator[tuple[SenseiSimulator, str]]:
    sim_kwargs.setdefault("rate_limit", None)
    sim = SenseiSimulator(tenant[0], api_keys=(KEY,), **sim_kwargs)
    with serve(sim) as url:
        yield sim, url


def client(url: str, **kwargs) -> SenseiClient:
    kwargs.setdefault("backoff_base", 0.01)
    kwargs.setdefault("backoff_max", 0.05)
    return SenseiClient(url, kwargs.pop("api_key", KEY), **kwargs)


def ids(batches: list[Batch]) -> list[str]:
    """Every id received (landed or rejected), in order of arrival."""
    out: list[str] = []
    for b in batches:
        out += b.frame.get_column("id").to_list() + [r.source_id for r in b.rejects]
    return out


def stored_ids(tenant, name: str = "patient") -> list[str]:
    return sorted(r["id"] for r in tenant[1][name])


# -- over real HTTP -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page_size", [1, 13, 240, 1000])
def test_pages_to_exhaustion_every_row_exactly_once(tenant, page_size):
    with server(tenant) as (_, url), client(url, page_size=page_size) as c:
        batches = list(c.iter_batches(PATIENT, None, None))
        assert c.count(PATIENT) == 240
    assert sorted(ids(batches)) == stored_ids(tenant)
    assert len(batches) == -(-240 // page_size)
    # rows without updated_at cannot be partitioned: they arrive as named rejects, never dropped
    rejects = [r for b in batches for r in b.rejects]
    assert {r.reason for r in rejects} == {"missing_modified_at"}
    assert len(rejects) == sum(r["updated_at"] is None for r in tenant[1]["patient"])
    assert batches[0].frame.schema["date_of_birth"] == pl.Date


def test_extract_reports_the_source_count_and_streams(tenant):
    since = dt.datetime(2025, 1, 1, 20, tzinfo=dt.UTC)
    with server(tenant) as (_, url), client(url, page_size=50) as c:
        extraction = c.extract(PATIENT, since, None)
        received = sum(b.received for b in extraction.batches)
        assert extraction.source == "api" and extraction.object == "patient"
        assert extraction.source_count == received == c.count(PATIENT, since, None)
        assert 0 < received < 240


def test_adjacent_windows_union_to_the_whole(tenant):
    stamps = sorted({r["updated_at"] for r in tenant[1]["patient"] if r["updated_at"]})
    cuts = [dt.datetime.fromisoformat(s) for s in (stamps[5], stamps[6], stamps[25])]
    windows = [(None, cuts[0]), (cuts[0], cuts[1]), (cuts[1], cuts[2]), (cuts[2], None)]
    seen: list[str] = []
    with server(tenant) as (_, url), client(url, page_size=17) as c:
        for since, before in windows:
            batches = list(c.iter_batches(PATIENT, since, before))
            landed = pl.concat([b.frame for b in batches]) if batches else None
            if landed is not None and since is not None:
                assert landed.get_column("updated_at").min() == since  # inclusive start, hit exactly
            if landed is not None and before is not None:
                assert landed.get_column("updated_at").max() < before  # exclusive end
            seen += ids(batches)
        naive = cuts[0].replace(tzinfo=None)  # naive datetimes mean UTC
        assert c.count(PATIENT, naive, None) == c.count(PATIENT, cuts[0], None)
    assert sorted(seen) == stored_ids(tenant)


def test_location_filter(tenant):
    with server(tenant) as (_, url), client(url, page_size=25) as c:
        total = 0
        for loc in (r["id"] for r in tenant[1]["location"]):
            batches = list(c.iter_batches(PATIENT, None, None, location_id=loc))
            landed = pl.concat([b.frame for b in batches])
            assert landed.get_column("primary_location_id").unique().to_list() == [loc]
            total += sum(b.received for b in batches)
        assert total == 240
        with pytest.raises(SenseiPageError, match="document page 1: HTTP 400"):
            list(c.iter_batches(DOCUMENT, None, None, location_id="x"))


def test_bad_or_revoked_key_is_an_auth_error_without_the_key(tenant, caplog):
    caplog.set_level(logging.DEBUG)
    with server(tenant) as (sim, url):
        with client(url, api_key="wrong-" + KEY) as c, pytest.raises(SenseiAuthError) as bad:
            c.count(PATIENT)
        with client(url, page_size=50) as c:
            batches = c.iter_batches(PATIENT, None, None)
            next(batches)
            sim.revoke_key(KEY)
            with pytest.raises(SenseiAuthError) as revoked:
                list(batches)  # the next page may already be prefetched: the refusal comes on the one after
    for err in (bad.value, revoked.value):
        assert err.object_name == "patient" and "401" in str(err) and KEY not in str(err)
    assert revoked.value.where in ("page 2", "page 3")
    assert KEY not in caplog.text


def test_429_honoursparse_retry_after(tenant):
    waits: list[float] = []
    limit = RateLimit(requests_per_second=20, burst=2)
    now = [0.0]  # the limiter's clock moves only when the client waits: throttled however slow the machine is
    with server(tenant, rate_limit=limit) as (sim, url), client(url, page_size=20) as c:
        sim.limiter = RateLimiter(limit, clock=lambda: now[0])

        def wait(seconds: float) -> None:  # record the wait asked for; let that much time pass on the clock
            waits.append(seconds)
            now[0] += seconds

        c._sleep = wait
        batches = list(c.iter_batches(PATIENT, None, None))
    assert sorted(ids(batches)) == stored_ids(tenant)
    assert waits and all(w == 1.0 for w in waits)  # Retry-After: 1, not the (tiny) backoff


def test_an_absurd_retry_after_is_clamped(tenant):
    waits: list[float] = []
    limit = RateLimit(requests_per_second=20, burst=2)
    with server(tenant, rate_limit=limit) as (_, url), client(url, page_size=20, retry_after_max=0.25) as c:
        c._sleep = lambda s: (waits.append(s), time.sleep(0.05))
        list(c.iter_batches(PATIENT, None, None))
    assert waits and all(w == 0.25 for w in waits)


@pytest.mark.parametrize("kind", ["http_500", "malformed_json", "reset"])
def test_transient_failures_mid_paging_recover_without_duplicates_or_losses(tenant, kind, caplog):
    caplog.set_level(logging.DEBUG)
    faults = Faults([Fault("patient", page=3, kind=kind, times=2)])
    with server(tenant, faults=faults) as (_, url), client(url, page_size=20) as c:
        batches = list(c.iter_batches(PATIENT, None, None))
    assert sorted(ids(batches)) == stored_ids(tenant)
    assert faults.fired(faults.rules[0]) == 2
    retries = [r for r in caplog.records if r.name == "senseimig.sensei" and r.levelno == logging.WARNING]
    assert len(retries) == 2 and all("patient page 3" in r.getMessage() for r in retries)
    assert KEY not in caplog.text


def test_timeout_recovers(tenant):
    faults = Faults([Fault("patient", page=2, kind="slow", seconds=0.8)])
    with server(tenant, faults=faults) as (_, url), client(url, page_size=100, timeout=0.3) as c:
        batches = list(c.iter_batches(PATIENT, None, None))
    assert sorted(ids(batches)) == stored_ids(tenant)


def test_persistent_failure_names_object_page_and_cause(tenant):
    faults = Faults([Fault("patient", page=2, kind="malformed_json", times=None)])
    with server(tenant, faults=faults) as (_, url), client(url, page_size=100, max_retries=2) as c:
        batches = c.iter_batches(PATIENT, None, None)
        next(batches)
        with pytest.raises(SenseiPageError) as err:
            next(batches)
    assert err.value.object_name == "patient" and err.value.where == "page 2"
    assert "malformed JSON" in str(err.value) and "3 attempts" in str(err.value)


def test_400_and_404_fail_at_once(tenant):
    sleeps: list[float] = []
    with server(tenant, page_size_max=100) as (_, url), client(url, page_size=101) as c:
        c._sleep = sleeps.append
        with pytest.raises(SenseiPageError, match="patient page 1: HTTP 400 bad_request"):
            c.count(PATIENT) and list(c.iter_batches(PATIENT, None, None))
        with pytest.raises(SenseiPageError, match="HTTP 404"):
            c.count(replace(PATIENT, endpoint="no_such_things"))
    assert sleeps == []


def test_forged_page_token_is_a_400(tenant):
    with server(tenant) as (_, url), httpx.Client(base_url=url, headers={"Csd-Api-Key": KEY}) as http:
        token = http.get("/v1/patients", params={"page_size": 3}).json()["next_page_token"]
        for i in (0, len(token) // 2, len(token) - 1):  # body, MAC, and the spare bits of the last character
            forged = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1:]
            response = http.get("/v1/patients", params={"page_token": forged})
            assert response.status_code == 400 and response.json()["error"]["code"] == "bad_request"


def test_injected_bad_records_become_named_rejects_or_extras(tenant):
    faults = Faults([Fault("patient", 1, "duplicate_record", row=10), Fault("patient", 1, "unknown_field", row=12),
                     Fault("patient", 2, "wrong_type", row=0, field="sms_opt_out")])
    with server(tenant, faults=faults) as (_, url), client(url, page_size=40) as c:
        batches = list(c.iter_batches(PATIENT, None, None))
    rejects = {r.reason: r for b in batches for r in b.rejects}
    assert rejects["duplicate_identical"].source_ref.startswith("page 1 row ")  # an exact copy: collapsed
    wrong = rejects["wrong_type"]
    assert wrong.field == "sms_opt_out" and wrong.source_ref == "page 2 row 1"
    assert orjson.loads(wrong.raw)["sms_opt_out"] == "not-a-bool"
    assert "not-a-bool" not in wrong.message  # messages name field and type, never the value
    extras = pl.concat([b.frame for b in batches]).filter(pl.col("_extra").is_not_null())
    assert extras.height == 1 and EXTRA_FIELD in orjson.loads(extras.item(0, "_extra"))
    # received = landed + rejected; the duplicate is the only extra row
    assert sum(b.received for b in batches) == 241 and sorted(set(ids(batches))) == stored_ids(tenant)


@pytest.mark.parametrize("kind", ["lone_surrogate", "invalid_utf8"])
def test_a_record_that_does_not_parse_is_rejected_and_the_rest_of_its_page_lands(tenant, kind, caplog):
    faults = Faults([Fault("patient", 2, kind, row=5, times=None)])
    with server(tenant, faults=faults) as (_, url), client(url, page_size=40) as c:
        sleeps: list[float] = []
        c._sleep = sleeps.append
        batches = list(c.iter_batches(PATIENT, None, None))
    (reject,) = [r for b in batches for r in b.rejects if r.reason == "invalid_encoding"]
    assert reject.source_ref == "page 2 row 6"
    assert sleeps == [] and faults.fired(faults.rules[0]) == 1  # no retry: the same bytes would come back
    received = ids(batches)
    assert sum(b.received for b in batches) == len(stored_ids(tenant))
    if kind == "lone_surrogate":  # the record's id itself was readable
        assert sorted(received) == stored_ids(tenant)
    else:
        assert received.count(None) == 1 and set(received) - {None} < set(stored_ids(tenant))
    assert "\\ud800" in reject.raw if kind == "lone_surrogate" else "\\xc3(" in reject.raw
    assert "page 2" in caplog.text


def test_document_content_streams_the_bytes(tenant):
    seed = orjson.loads((tenant[0] / "manifest.json").read_bytes())["seed"]
    with server(tenant) as (_, url), client(url) as c:
        for doc in tenant[1]["document"]:
            chunks = list(c.content(DOCUMENT, doc["id"]))
            content = b"".join(chunks)
            assert len(content) == doc["size_bytes"]
            assert content == documents.document_bytes(seed, doc["id"], doc["size_bytes"], doc["mime_type"])
        assert max(len(ch) for ch in c.content(DOCUMENT, tenant[1]["document"][0]["id"])) < 2_500_000  # streamed
        with pytest.raises(SenseiPageError, match="document content of nope: HTTP 404"):
            b"".join(c.content(DOCUMENT, "nope"))


def test_the_key_never_reaches_repr_or_debug_logs(tenant, caplog):
    caplog.set_level(logging.DEBUG)  # httpx / httpcore debug logging included
    faults = Faults([Fault("patient", 1, "http_500")])
    with server(tenant, faults=faults) as (_, url), client(url) as c:
        assert KEY not in repr(c) and KEY not in repr(c._http.auth)
        list(c.iter_batches(PATIENT, None, None))
    assert any(r.name.startswith("httpcore") for r in caplog.records)
    assert KEY not in caplog.text


# -- in-process unit tests ------------------------------------------------------------------------------------------


def test_in_process_transport(tenant):
    sim = SenseiSimulator(tenant[0], api_keys=(KEY,), rate_limit=None)
    with SenseiClient("http://sim", KEY, page_size=100, transport=httpx.WSGITransport(app=sim)) as c:
        assert sorted(ids(list(c.iter_batches(LOCATION, None, None)))) == stored_ids(tenant, "location")
        assert c.count(PATIENT) == 240


def test_to_batch_types_values_keeps_extras_and_rejects_non_objects():
    import random

    rng = random.Random(3)
    good = tenants.sim_row(PATIENT, rng, updated_at=dt.datetime(2025, 5, 6, 15, tzinfo=dt.UTC))
    extra = {**tenants.sim_row(PATIENT, rng), "new_field": {"a": 1}}
    batch = to_batch(PATIENT, 4, [good, "not an object", extra, None])
    assert batch.frame.height == 2
    assert batch.frame.get_column("_source_ref").to_list() == ["page 4 row 1", "page 4 row 3"]
    assert batch.frame.get_column("_extra").to_list() == [None, '{"new_field":{"a":1}}']
    assert batch.frame.item(0, "medical_alerts") is not None and batch.frame.schema["sms_opt_out"] == pl.Boolean
    assert batch.frame.item(0, "updated_at") == dt.datetime(2025, 5, 6, 15, tzinfo=dt.UTC)
    bad = sorted(batch.rejects, key=lambda r: r.source_ref)
    assert [(r.reason, r.source_ref, r.raw) for r in bad] == [("malformed_record", "page 4 row 2", '"not an object"'),
                                                              ("malformed_record", "page 4 row 4", "null")]


def test_error_text_keeps_status_and_code_and_never_logs_the_message(caplog):
    """The API promises nothing about not echoing values in its error message: it stays out of exceptions."""
    phone = "555-0142"

    def reply(request: httpx.Request) -> httpx.Response:
        code = "bad_request" if request.url.path.endswith("/count") else "a code with spaces " + phone
        return httpx.Response(400, json={"error": {"code": code, "message": f"no patient with phone {phone}"}})

    caplog.set_level(logging.DEBUG, logger="senseimig.sensei")
    with SenseiClient("http://sim", KEY, transport=httpx.MockTransport(reply)) as c:
        with pytest.raises(SenseiPageError) as err:
            c.count(PATIENT)
        with pytest.raises(SenseiPageError) as odd:
            list(c.iter_batches(PATIENT))
    assert str(err.value).endswith("patient count: HTTP 400 bad_request") and phone not in str(err.value)
    assert str(odd.value).endswith("patient page 1: HTTP 400") and phone not in str(odd.value)  # a code not a token
    assert not [r for r in caplog.records if phone in r.getMessage()]  # not even at DEBUG


def test_retry_after_parsing():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    assert 25 < parse_retry_after(format_datetime(later, usegmt=True)) <= 30
    assert parse_retry_after(format_datetime(dt.datetime(2000, 1, 1, tzinfo=dt.UTC), usegmt=True)) == 0.0


def test_backoff_is_capped_full_jitter(tenant):
    sleeps: list[float] = []
    faults = Faults([Fault("location", 1, "http_500", times=None)])
    sim = SenseiSimulator(tenant[0], api_keys=(KEY,), rate_limit=None, faults=faults)
    with SenseiClient("http://sim", KEY, max_retries=8, backoff_base=0.01, backoff_max=0.04,
                      transport=httpx.WSGITransport(app=sim)) as c:
        c._sleep = sleeps.append
        with pytest.raises(SenseiPageError, match="location page 1: HTTP 500 internal_error"):
            list(c.iter_batches(LOCATION, None, None))
    assert len(sleeps) == 8 and all(0 <= s <= 0.04 for s in sleeps)


@pytest.mark.slow
def test_a_large_tenant_over_http(tmp_path):
    tenants.build_sim_tenant(tmp_path, patients=60_000)
    with server((tmp_path, None), rate_limit=RateLimit(requests_per_second=100, burst=200)) as (_, url), \
            client(url) as c:
        extraction = c.extract(PATIENT, None, None)
        received = sum(b.received for b in extraction.batches)
    assert received == extraction.source_count == 60_000


@pytest.mark.timeout(60)
def test_stopping_early_does_not_wait_for_a_retrying_prefetch(tenant):
    faults = Faults([Fault("patient", page=2, kind="http_500", times=None)])
    with server(tenant, faults=faults) as (_, url):
        c = SenseiClient(url, KEY, page_size=100, backoff_base=20.0, backoff_max=20.0)
        batches = c.iter_batches(PATIENT, None, None)
        assert next(batches).received == 100  # page 2 is now failing and backing off in the background
        batches.close()  # returns at once
        c.close()  # wakes the retry wait; the prefetch gives up instead of sleeping on
