"""Service protection wired into the emulator's WSGI app (Microsoft Learn: "Service protection API limits"), per
application user as Dataverse counts them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from senseimig_dagster.sandbox.dataverse_emulator import Catalog
from senseimig_dagster.sandbox.dataverse_emulator.app import DataverseEmulator
from senseimig_dagster.sandbox.dataverse_emulator.limits import (
    AFFINITY_COOKIE,
    CONCURRENCY_CODE,
    REQUESTS_CODE,
    CostModel,
    Limits,
    ServiceProtection,
)
from senseimig_dagster.sandbox.dataverse_emulator.store import RecordStore
from senseimig_dagster.sandbox.entra import EntraStandIn
from senseimig_dagster_tests.support.constants import EMULATOR_BASE as BASE


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_app(tmp_path: Path, clock: FakeClock, *, enabled: bool = True, servers: int = 2,
             token_validator=None) -> DataverseEmulator:
    catalog = Catalog.load()
    protection = ServiceProtection(Limits(requests=5, enabled=enabled), clock=clock, servers=servers)
    return DataverseEmulator(catalog, RecordStore(tmp_path / "dv.sqlite", catalog), protection=protection,
                             token_validator=token_validator)


@pytest.fixture
def app(tmp_path: Path, clock: FakeClock) -> Iterator[DataverseEmulator]:
    emulator = make_app(tmp_path, clock)
    yield emulator
    emulator.store.close()


def client_for(app: DataverseEmulator, **kwargs) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE, **kwargs)


def test_sixth_request_on_the_same_server_is_429_with_retry_after_and_documented_body(
        app: DataverseEmulator, clock: FakeClock) -> None:
    with client_for(app) as c:  # httpx keeps the affinity cookie: every request pins to one server
        for _ in range(5):
            r = c.get("/contacts")
            assert r.status_code == 200, r.text
            clock.now += 1
        r = c.get("/contacts")
    assert r.status_code == 429
    assert r.headers["retry-after"] == "295"  # asked at t=5; the first request (t=0) leaves the window at t=300
    assert r.headers["content-type"] == "application/json; odata.metadata=minimal"
    assert r.json() == {"error": {"code": REQUESTS_CODE, "message":
                                  "Number of requests exceeded the limit of 5 over time window of 300 seconds."}}
    assert r.headers["x-ms-dop-hint"] == "8"  # 4 per server × 2 servers


def test_affinity_cookie_is_set_once_and_another_server_still_admits(app: DataverseEmulator) -> None:
    with client_for(app) as c:
        first = c.get("/contacts")
        assert first.status_code == 200
        cookie = first.cookies[AFFINITY_COOKIE]
        assert "set-cookie" not in c.get("/contacts").headers  # cookie sent back: nothing new to set
        for _ in range(3):
            assert c.get("/contacts").status_code == 200
        assert c.get("/contacts").status_code == 429
    other = next(v for v in app.protection._cookies if v != cookie)  # the other simulated server
    with client_for(app, cookies={AFFINITY_COOKIE: other}) as c:
        r = c.get("/contacts")
    assert r.status_code == 200 and "set-cookie" not in r.headers


def test_without_the_cookie_requests_spread_over_servers(app: DataverseEmulator) -> None:
    def cookieless() -> httpx.Response:
        with client_for(app) as c:  # a fresh client each time: no cookie kept
            return c.get("/contacts")

    for _ in range(10):  # 2 servers × 5: a cookieless client gets twice the per-server limit
        r = cookieless()
        assert r.status_code == 200 and r.headers["set-cookie"].startswith(f"{AFFINITY_COOKIE}=")
    assert cookieless().status_code == 429


def test_every_response_carries_the_dop_hint(app: DataverseEmulator) -> None:
    with client_for(app) as c:
        responses = [c.post("/contacts", json={"lastname": "Ng"}), c.get("/nosuchset"),
                     c.post("/contacts", json={"nosuchcolumn": 1})]
    assert [r.status_code for r in responses] == [204, 404, 400]
    assert all(r.headers["x-ms-dop-hint"] == "8" for r in responses)


def test_limits_are_per_user_the_token_client_id(tmp_path: Path, clock: FakeClock) -> None:
    entra = EntraStandIn(apps={"app-a": "sa", "app-b": "sb"})
    app = make_app(tmp_path, clock, servers=1, token_validator=entra.token_info)
    app.tenant = entra.tenant

    def token(client_id: str, secret: str) -> str:
        with httpx.Client(transport=httpx.WSGITransport(app=entra)) as login:
            r = login.post(f"http://login.test/{entra.tenant}/oauth2/v2.0/token",
                           data={"grant_type": "client_credentials", "client_id": client_id,
                                 "client_secret": secret, "scope": "http://dv.test/.default"})
        return r.json()["access_token"]

    a, b = token("app-a", "sa"), token("app-b", "sb")
    with client_for(app) as c:
        unauthorized = c.get("/contacts")
        assert unauthorized.status_code == 401 and "x-ms-dop-hint" in unauthorized.headers
        for _ in range(5):
            assert c.get("/contacts", headers={"Authorization": f"Bearer {a}"}).status_code == 200
        assert c.get("/contacts", headers={"Authorization": f"Bearer {a}"}).status_code == 429
        assert c.get("/contacts", headers={"Authorization": f"Bearer {b}"}).status_code == 200
    assert app.protection.usage("app-a").requests == 5 and app.protection.usage("app-b").requests == 1
    app.store.close()


def test_concurrency_slot_is_released_even_when_the_handler_raises(
        app: DataverseEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(environ: dict) -> None:
        assert app.protection.usage("anonymous", 0).in_flight == 1  # admitted while handling
        raise RuntimeError("handler crashed")

    monkeypatch.setattr(app, "_handle", boom)
    with client_for(app, cookies={AFFINITY_COOKIE: app.protection._cookies[0]}) as c, \
            pytest.raises(RuntimeError, match="handler crashed"):
        c.get("/contacts")
    assert app.protection.usage("anonymous", 0).in_flight == 0


def test_in_flight_is_zero_after_ordinary_requests_and_errors(app: DataverseEmulator) -> None:
    with client_for(app, cookies={AFFINITY_COOKIE: app.protection._cookies[1]}) as c:
        c.get("/contacts")
        c.get("/nosuchset")
    usage = app.protection.usage("anonymous", 1)
    assert usage.requests == 2 and usage.in_flight == 0


def test_limits_off_never_throttles(tmp_path: Path, clock: FakeClock) -> None:
    app = make_app(tmp_path, clock, enabled=False)
    with client_for(app) as c:
        statuses = {c.get("/contacts").status_code for _ in range(50)}
        assert statuses == {200}
        assert "x-ms-dop-hint" in c.get("/contacts").headers
    app.store.close()


def test_without_protection_no_protection_headers(tmp_path: Path) -> None:
    catalog = Catalog.load()
    app = DataverseEmulator(catalog, RecordStore(tmp_path / "dv.sqlite", catalog))
    with client_for(app) as c:
        r = c.get("/contacts")
    assert r.status_code == 200 and "x-ms-dop-hint" not in r.headers and "set-cookie" not in r.headers
    app.store.close()


def held_app(tmp_path: Path, *, hold: bool, hold_s: float) -> DataverseEmulator:
    """One server, 3 concurrent requests, every request modelled at ``hold_s`` seconds."""
    catalog = Catalog.load()
    limits = Limits(concurrency=3, hold=hold, cost=CostModel(per_request_ms=hold_s * 1000, per_record_ms=0))
    return DataverseEmulator(catalog, RecordStore(tmp_path / "dv.sqlite", catalog),
                             protection=ServiceProtection(limits))


def concurrent_gets(app: DataverseEmulator, n: int) -> list[tuple[int, str, float]]:
    """``n`` requests released together: (status, error code or "", seconds taken) each."""
    barrier, results = threading.Barrier(n), []

    def one() -> None:
        with client_for(app) as c:
            barrier.wait()
            started = time.monotonic()
            r = c.get("/contacts/$count")
            code = r.json()["error"]["code"] if r.status_code == 429 else ""
            results.append((r.status_code, code, time.monotonic() - started))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return sorted(results)


def test_held_requests_keep_their_slot_so_extra_concurrent_ones_fail_at_once(tmp_path: Path) -> None:
    # Must-have 10 "over 52 concurrent fails at once" (here 3): admitted requests last their modelled 1.5 s, the
    # fourth and fifth sent meanwhile get the concurrency 429 without waiting. Answering at machine speed (no hold)
    # would admit them all, or answer the admitted ones in milliseconds.
    app = held_app(tmp_path, hold=True, hold_s=1.5)
    results = concurrent_gets(app, 5)
    assert [(s, c) for s, c, _ in results] == [(200, "")] * 3 + [(429, CONCURRENCY_CODE)] * 2
    assert all(took >= 1.4 for s, _, took in results if s == 200)
    assert all(took < 1.0 for s, _, took in results if s == 429)
    assert app.protection.usage("anonymous").in_flight == 0
    app.store.close()


def test_without_hold_requests_answer_at_machine_speed(tmp_path: Path) -> None:
    app = held_app(tmp_path, hold=False, hold_s=5.0)
    started = time.monotonic()
    with client_for(app) as c:
        assert c.get("/contacts/$count").status_code == 200
    assert time.monotonic() - started < 2.0 and app.protection.usage("anonymous").execution_ms == 5000
    app.store.close()


class _Built(Exception):
    pass


@pytest.mark.parametrize("limits_enabled, hold_execution, held", [(True, None, True), (False, None, False),
                                                                   (True, False, False)])
def test_server_holds_requests_by_default_when_limits_are_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             limits_enabled: bool, hold_execution: bool | None,
                                                             held: bool) -> None:
    from senseimig_dagster.sandbox.dataverse_emulator import server

    seen: list[Limits] = []

    def build(db: Path, *, limits: Limits, **kwargs: object) -> DataverseEmulator:
        seen.append(limits)
        raise _Built

    monkeypatch.setattr(server, "build_emulator", build)
    with pytest.raises(_Built):
        server.run_dataverse_server(tmp_path / "dv.sqlite", limits_enabled=limits_enabled,
                                    hold_execution=hold_execution)
    assert seen[0].hold is held
