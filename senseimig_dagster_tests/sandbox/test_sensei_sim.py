"""The Sensei Cloud simulator at the HTTP level: routes, paging, filters, errors, rate limits, faults, content."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from senseimig_dagster.objects import OBJECTS
from senseimig_dagster.sandbox import documents
from senseimig_dagster.sandbox.sensei_sim import Fault, Faults, RateLimit, SenseiSimulator, serve
from senseimig_dagster.sandbox.sensei_sim.faults import EXTRA_FIELD
from senseimig_dagster.sandbox.sensei_sim.ratelimit import RateLimiter
from senseimig_dagster_tests.support import tenants

KEY = "sim-test-key"


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[dict]]]:
    out = tmp_path_factory.mktemp("sim-tenant")
    return out, tenants.build_sim_tenant(out)


def api(sim: SenseiSimulator, key: str | None = KEY) -> httpx.Client:
    """In-process client: the WSGI app without a socket."""
    headers = {"Csd-Api-Key": key} if key else {}
    return httpx.Client(transport=httpx.WSGITransport(app=sim), base_url="http://sim", headers=headers)


def sim_for(tenant, **kwargs) -> SenseiSimulator:
    kwargs.setdefault("rate_limit", None)
    return SenseiSimulator(tenant[0], api_keys=(KEY,), **kwargs)


def all_pages(client: httpx.Client, endpoint: str, **params) -> Iterator[dict]:
    token = None
    while True:
        response = client.get(f"/v1/{endpoint}", params={**params, **({"page_token": token} if token else {})})
        assert response.status_code == 200, response.text
        body = response.json()
        yield body
        token = body["next_page_token"]
        if token is None:
            return


def order_key(record: dict) -> tuple[str, str]:
    return record["updated_at"] or "", record["id"]  # nulls first, then (updated_at, id)


def iso(ts: str) -> dt.datetime:
    return dt.datetime.fromisoformat(ts)


@pytest.mark.parametrize("page_size", [1, 7, 240, 5000])
def test_pages_serve_every_record_once_in_keyset_order(tenant, page_size):
    stored = tenant[1]["patient"]
    with api(sim_for(tenant)) as client:
        pages = list(all_pages(client, "patients", page_size=page_size))
    served = [r for p in pages for r in p["data"]]
    assert served == sorted(stored, key=order_key)  # every stored record, verbatim, exactly once
    assert {p["total_count"] for p in pages} == {len(stored)}
    assert {p["object"] for p in pages} == {"patient"}
    assert all(len(p["data"]) == page_size for p in pages[:-1])
    assert any(r["is_deleted"] for r in served)  # soft-deleted rows are served with their flag


def test_default_page_size_and_bounds(tenant):
    with api(sim_for(tenant, page_size_max=100)) as client:
        assert len(client.get("/v1/patients").json()["data"]) == 100  # the default (500) is capped at the max
        assert client.get("/v1/patients", params={"page_size": 101}).status_code == 400
        assert client.get("/v1/patients", params={"page_size": 0}).status_code == 400
        assert client.get("/v1/patients", params={"page_size": "ten"}).json()["error"]["code"] == "bad_request"
    with api(sim_for(tenant)) as client:
        assert len(client.get("/v1/patients").json()["data"]) == 240  # default 500 holds the whole tenant


def test_adjacent_windows_partition_the_object(tenant):
    stored = tenant[1]["patient"]
    stamps = sorted({r["updated_at"] for r in stored if r["updated_at"]})
    cuts = [stamps[10], stamps[11], stamps[20]]  # boundaries that are exact timestamps of rows
    windows = [(None, cuts[0]), (cuts[0], cuts[1]), (cuts[1], cuts[2]), (cuts[2], None)]
    seen: list[str] = []
    first_window: set[str] = set()
    with api(sim_for(tenant)) as client:
        for since, before in windows:
            params = {k: v for k, v in (("modified_since", since), ("modified_before", before)) if v}
            rows = [r for p in all_pages(client, "patients", page_size=9, **params) for r in p["data"]]
            for r in rows:
                if since:
                    assert r["updated_at"] is not None and iso(r["updated_at"]) >= iso(since)  # inclusive
                if before and r["updated_at"] is not None:
                    assert iso(r["updated_at"]) < iso(before)  # exclusive
            if since:
                assert any(r["updated_at"] == since for r in rows)
            assert client.get("/v1/patients/count", params=params).json()["count"] == len(rows)
            seen += [r["id"] for r in rows]
            first_window = first_window or {r["id"] for r in rows}
    assert sorted(seen) == sorted(r["id"] for r in stored)  # union = whole, no overlaps
    nulls = {r["id"] for r in stored if r["updated_at"] is None}
    assert nulls and nulls <= first_window  # no updated_at: only windows without a start serve them


def test_time_filters_accept_offsets_and_reject_garbage(tenant):
    with api(sim_for(tenant)) as client:
        utc = client.get("/v1/patients/count", params={"modified_since": "2025-01-02T00:00:00Z"}).json()["count"]
        shifted = client.get("/v1/patients/count",
                             params={"modified_since": "2025-01-02T02:00:00+02:00"}).json()["count"]
        assert utc == shifted and 0 < utc < 240
        bad = client.get("/v1/patients", params={"modified_since": "yesterday"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"


def test_location_filter(tenant):
    stored = tenant[1]["patient"]
    locations = [r["id"] for r in tenant[1]["location"]]
    with api(sim_for(tenant)) as client:
        for loc in locations:
            rows = [r for p in all_pages(client, "patients", page_size=11, location_id=loc) for r in p["data"]]
            assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in stored if r["primary_location_id"] == loc)
            assert client.get("/v1/patients/count", params={"location_id": loc}).json()["count"] == len(rows)
        assert client.get("/v1/patients", params={"location_id": "nowhere"}).json()["total_count"] == 0
        refused = client.get("/v1/documents", params={"location_id": locations[0]})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "bad_request"


def test_objects_without_a_file_are_empty(tenant):
    with api(sim_for(tenant)) as client:
        body = client.get("/v1/claims").json()
        assert body == {"object": "claim", "data": [], "next_page_token": None, "total_count": 0}
        assert client.get("/v1/claims/count").json() == {"object": "claim", "count": 0}


def test_page_tokens_are_tamper_evident(tenant):
    sim = sim_for(tenant)
    with api(sim) as client:
        token = client.get("/v1/patients", params={"page_size": 5}).json()["next_page_token"]
        assert client.get("/v1/patients", params={"page_size": 5, "page_token": token}).status_code == 200
        body, mac = token.split(".")
        forged = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + mac
        for bad in (forged, token[:-3], "garbage", token + "x"):
            response = client.get("/v1/patients", params={"page_token": bad})
            assert response.status_code == 400 and response.json()["error"]["code"] == "bad_request"
        assert client.get("/v1/locations", params={"page_token": token}).status_code == 400  # other object
        changed = client.get("/v1/patients", params={"page_token": token, "modified_since": "2025-03-01T00:00:00Z"})
        assert changed.status_code == 400  # filters must not change mid-paging
    with api(sim_for(tenant)) as client:  # another instance did not issue it
        assert client.get("/v1/patients", params={"page_token": token}).status_code == 400


def test_auth_and_routing_errors(tenant):
    sim = sim_for(tenant)
    with api(sim, key=None) as client:
        response = client.get("/v1/patients")
        assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
    with api(sim, key="wrong") as client:
        assert client.get("/v1/patients").status_code == 401
    with api(sim) as client:
        assert client.get("/v1/patients/count").status_code == 200
        assert client.get("/v1/nothing").json()["error"]["code"] == "not_found"
        assert client.get("/v2/patients").status_code == 404
        assert client.get("/v1/patients/abc/content").status_code == 404  # patients have no content
        assert client.post("/v1/patients").status_code == 405
        sim.revoke_key(KEY)
        assert client.get("/v1/patients/count").status_code == 401
        sim.add_key(KEY)
        assert client.get("/v1/patients/count").status_code == 200
    assert KEY not in repr(sim)


def test_rate_limit_answers_429_with_retry_after(tenant):
    with api(sim_for(tenant, rate_limit=RateLimit(requests_per_second=0.5, burst=2))) as client:
        assert [client.get("/v1/locations").status_code for _ in range(2)] == [200, 200]
        limited = client.get("/v1/locations")
        assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1


def test_token_bucket_refills_per_key():
    now = [0.0]
    limiter = RateLimiter(RateLimit(requests_per_second=2, burst=2), clock=lambda: now[0])
    assert [limiter.take("a"), limiter.take("a")] == [0, 0]
    assert limiter.take("a") == 1 and limiter.take("b") == 0  # buckets are per key
    now[0] = 0.5
    assert limiter.take("a") == 0 and limiter.take("a") >= 1


def test_document_content_is_streamed_with_type_and_length(tenant):
    seed = orjson.loads((tenant[0] / "manifest.json").read_bytes())["seed"]
    with serve(sim_for(tenant)) as url, httpx.Client(base_url=url, headers={"Csd-Api-Key": KEY}) as client:
        for doc in tenant[1]["document"]:
            with client.stream("GET", f"/v1/documents/{doc['id']}/content") as response:
                assert response.status_code == 200
                assert response.headers["Content-Type"] == doc["mime_type"]
                assert int(response.headers["Content-Length"]) == doc["size_bytes"]
                content = b"".join(response.iter_bytes())
            assert content == documents.document_bytes(seed, doc["id"], doc["size_bytes"], doc["mime_type"])
        missing = client.get("/v1/documents/00000000-0000-0000-0000-000000000000/content")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_transport_faults_fire_then_heal(tenant):
    faults = Faults([Fault("patient", page=2, kind="http_500", times=2),
                     Fault("patient", page=3, kind="malformed_json")])
    with api(sim_for(tenant, faults=faults)) as client:
        first = client.get("/v1/patients", params={"page_size": 10}).json()
        params = {"page_size": 10, "page_token": first["next_page_token"]}
        assert [client.get("/v1/patients", params=params).status_code for _ in range(3)] == [500, 500, 200]
        second = client.get("/v1/patients", params=params).json()
        params["page_token"] = second["next_page_token"]
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(client.get("/v1/patients", params=params).content)
        assert len(client.get("/v1/patients", params=params).json()["data"]) == 10
    assert faults.fired(faults.rules[0]) == 2


def test_data_faults_change_one_record_of_the_page(tenant):
    faults = Faults([Fault("patient", 1, "duplicate_record", times=None, row=2),
                     Fault("patient", 1, "unknown_field", times=None, row=4),
                     Fault("patient", 1, "wrong_type", times=None, row=5)])
    clean = sorted(tenant[1]["patient"], key=order_key)[:10]
    with api(sim_for(tenant, faults=faults)) as client:
        data = client.get("/v1/patients", params={"page_size": 10}).json()["data"]
    assert len(data) == 11 and data[2] == data[3] == clean[2]
    assert data[5][EXTRA_FIELD] and {k: v for k, v in data[5].items() if k != EXTRA_FIELD} == clean[4]
    assert data[6]["date_of_birth"] == "not-a-date"  # the first typed field of patient


def test_reset_and_slow_faults_over_http(tenant):
    faults = Faults([Fault("location", 1, "reset"), Fault("patient", 1, "slow", seconds=0.6)])
    with serve(sim_for(tenant, faults=faults)) as url, \
            httpx.Client(base_url=url, headers={"Csd-Api-Key": KEY}) as client:
        with pytest.raises(httpx.TransportError):
            client.get("/v1/locations")
        assert client.get("/v1/locations").status_code == 200  # healed, on a fresh connection
        with pytest.raises(httpx.TimeoutException):
            client.get("/v1/patients", timeout=0.2)
        assert client.get("/v1/patients").status_code == 200


def test_http_server_keeps_connections_alive(tenant):
    with serve(sim_for(tenant)) as url, httpx.Client(base_url=url, headers={"Csd-Api-Key": KEY}) as client:
        pages = list(all_pages(client, "patients", page_size=20))
        assert sum(len(p["data"]) for p in pages) == 240
        assert len(client._transport._pool.connections) == 1  # one TCP connection for all pages


def test_unreadable_lines_are_skipped_and_blank_lines_ignored(tmp_path):
    patient = OBJECTS["patient"]
    rng = random.Random(1)
    good = [tenants.sim_row(patient, rng) for _ in range(3)]
    lines = [orjson.dumps(good[0]), b"", b"   ", orjson.dumps(good[1]) + b"\r", b'{"id": "broken',
             orjson.dumps(good[2])]
    (tmp_path / "patients.jsonl").write_bytes(b"\n".join(lines))
    with api(SenseiSimulator(tmp_path, api_keys=(KEY,), rate_limit=None)) as client:
        body = client.get("/v1/patients").json()
    assert sorted(r["id"] for r in body["data"]) == sorted(r["id"] for r in good)


@pytest.mark.timeout(30)
def test_serve_stops_with_idle_keep_alive_connections_open(tenant):
    client = httpx.Client(headers={"Csd-Api-Key": KEY})
    with serve(sim_for(tenant)) as url:
        assert client.get(f"{url}/v1/locations/count").json()["count"] == 3
    # the server is gone although the client still holds its connection open
    with pytest.raises(httpx.TransportError):
        client.get(f"{url}/v1/locations/count")
    client.close()
