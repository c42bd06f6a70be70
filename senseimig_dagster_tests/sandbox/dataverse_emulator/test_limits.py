"""Service protection limits: each test fails if the emulator were more lenient than Dataverse (Microsoft Learn:
"Service protection API limits")."""

from __future__ import annotations

import threading

import pytest

from senseimig_dagster.sandbox.dataverse_emulator.limits import (
    CONCURRENCY_CODE,
    EXECUTION_TIME_CODE,
    REQUESTS_CODE,
    Admission,
    CostModel,
    Limits,
    ServiceProtection,
    Throttled,
)

REQUESTS_MESSAGE = "Number of requests exceeded the limit of 6000 over time window of 300 seconds."
EXECUTION_MESSAGE = (
    "Combined execution time of incoming requests exceeded limit of 1,200,000 milliseconds over time window of "
    "300 seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later."
)
CONCURRENCY_MESSAGE = "Number of concurrent requests exceeded the limit of 52."


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def admitted(outcome: Admission | Throttled) -> Admission:
    assert isinstance(outcome, Admission), outcome
    outcome.release()
    return outcome


def fill(sp: ServiceProtection, n: int, user: str = "u", server: int = 0, records: int = 1) -> None:
    for _ in range(n):
        admitted(sp.admit(user, server, records))


def test_defaults_are_microsofts_numbers() -> None:
    limits = Limits()
    assert (limits.requests, limits.execution_ms, limits.window_s, limits.concurrency) == (
        6000,
        1_200_000,
        300,
        52,
    )
    assert limits.enabled and limits.time_scale == 1
    assert limits.message("requests") == REQUESTS_MESSAGE
    assert limits.message("execution_time") == EXECUTION_MESSAGE
    assert limits.message("concurrency") == CONCURRENCY_MESSAGE


def test_request_limit_trips_at_6001st_with_code_message_and_retry_after(clock: FakeClock) -> None:
    sp = ServiceProtection(Limits(), clock=clock)
    fill(sp, 3000)
    clock.t += 100
    fill(sp, 3000)
    clock.t += 50  # 150 s after the first 3000: they leave the window in 150 s
    refused = sp.admit("u")
    assert isinstance(refused, Throttled)
    assert refused.status == 429 and refused.reason == "requests"
    assert refused.body() == {"error": {"code": REQUESTS_CODE, "message": REQUESTS_MESSAGE}}
    assert refused.headers() == {"Retry-After": "150"} and refused.retry_after == 150
    assert refused.to_error().to_json() == refused.body()
    assert sp.usage("u").requests == 6000  # refused requests are not recorded


def test_window_slides_and_frees_exactly_at_retry_after(clock: FakeClock) -> None:
    sp = ServiceProtection(Limits(), clock=clock)
    fill(sp, 3000)
    clock.t += 100
    fill(sp, 3000)
    clock.t += 50
    refused = sp.admit("u")
    assert isinstance(refused, Throttled)
    clock.t += refused.retry_after
    fill(sp, 3000)  # the first 3000 left the window: exactly 3000 slots free
    assert isinstance(sp.admit("u"), Throttled)
    assert sp.usage("u").requests == 6000


def test_execution_time_limit_applies_after_window_is_already_exceeded(clock: FakeClock) -> None:
    sp = ServiceProtection(Limits(cost=CostModel(per_request_ms=700, per_record_ms=0)), clock=clock)
    fill(sp, 1714)  # 1,199,800 ms: below the limit
    assert sp.usage("u").execution_ms == pytest.approx(1_199_800)
    clock.t += 10
    fill(sp, 1)  # admitted, and overshoots to 1,200,500 ms
    refused = sp.admit("u")
    assert isinstance(refused, Throttled) and refused.reason == "execution_time"
    assert refused.body() == {"error": {"code": EXECUTION_TIME_CODE, "message": EXECUTION_MESSAGE}}
    # dropping the 1714 requests of t0 frees enough; they leave at t0 + 300 = now + 290
    assert refused.retry_after == 290
    clock.t += 290
    assert sp.usage("u").execution_ms == pytest.approx(700)
    fill(sp, 1)


def test_execution_time_trips_exactly_at_threshold(clock: FakeClock) -> None:
    sp = ServiceProtection(Limits(cost=CostModel(per_request_ms=1000, per_record_ms=0)), clock=clock)
    fill(sp, 1200)
    refused = sp.admit("u")
    assert (
        isinstance(refused, Throttled) and refused.code == EXECUTION_TIME_CODE and refused.retry_after == 300
    )


def test_concurrency_fails_at_once_and_release_frees(clock: FakeClock) -> None:
    sp = ServiceProtection(Limits(), clock=clock)
    held = [sp.admit("u") for _ in range(52)]
    assert all(isinstance(a, Admission) for a in held)
    refused = sp.admit("u")
    assert isinstance(refused, Throttled) and refused.reason == "concurrency"
    assert refused.body() == {"error": {"code": CONCURRENCY_CODE, "message": CONCURRENCY_MESSAGE}}
    assert refused.retry_after == 1
    assert sp.usage("u").in_flight == 52 and sp.usage("u").requests == 52
    held[0].release()
    held[0].release()  # idempotent
    assert sp.usage("u").in_flight == 51
    again = sp.admit("u")
    assert isinstance(again, Admission)
    with again:
        assert isinstance(sp.admit("u"), Throttled)
    assert sp.usage("u").in_flight == 51


def test_batch_counts_as_one_request_but_records_add_execution_time(clock: FakeClock) -> None:
    sp = ServiceProtection(Limits(), clock=clock)  # default cost: 50 ms + 10 ms/record
    batch = admitted(sp.admit("u", records=1000))
    assert batch.execution_ms == 50 + 10 * 1000
    assert sp.usage("u").requests == 1
    fill(sp, 5999)
    assert sp.usage("u").execution_ms == pytest.approx(10_050 + 5999 * 60)
    refused = sp.admit("u", records=1000)
    assert isinstance(refused, Throttled) and refused.reason == "requests"


def test_big_batches_hit_execution_time_before_request_count(clock: FakeClock) -> None:
    sp = ServiceProtection(Limits(), clock=clock)
    admitted_batches = 0
    while isinstance(outcome := sp.admit("u", records=100), Admission):
        outcome.release()
        admitted_batches += 1
    assert outcome.reason == "execution_time"
    assert admitted_batches == 1143  # ceil(1,200,000 / 1050): the last one overshoots


def test_time_scale_compresses_window_and_execution_together(clock: FakeClock) -> None:
    sp = ServiceProtection(Limits(time_scale=100), clock=clock)
    fill(sp, 6000)
    refused = sp.admit("u")
    assert isinstance(refused, Throttled)
    assert refused.retry_after_s == pytest.approx(3.0) and refused.retry_after == 3
    assert refused.message == REQUESTS_MESSAGE  # messages keep the nominal numbers
    clock.t += 3
    fill(sp, 6000)
    # execution time: 1200 requests of a nominal second each still fill the window, now in 3 s of wall time
    scaled = ServiceProtection(
        Limits(time_scale=100, cost=CostModel(per_request_ms=1000, per_record_ms=0)), clock=clock
    )
    first = scaled.admit("u")
    assert isinstance(first, Admission) and first.modelled_seconds == pytest.approx(0.01)
    first.release()
    fill(scaled, 1199)
    refused = scaled.admit("u")
    assert isinstance(refused, Throttled) and refused.reason == "execution_time"
    assert refused.retry_after_s == pytest.approx(3.0)


def test_disabled_never_throttles(clock: FakeClock) -> None:
    sp = ServiceProtection(Limits(enabled=False, cost=CostModel(per_request_ms=10_000)), clock=clock)
    held = [sp.admit("u", records=1000) for _ in range(200)]  # 200 in flight, far past 52
    fill(sp, 20_000)
    assert all(isinstance(a, Admission) for a in held)
    assert sp.usage("u").requests == 0


def test_limits_are_per_user(clock: FakeClock) -> None:
    sp = ServiceProtection(Limits(), clock=clock)
    fill(sp, 6000, user="a")
    assert isinstance(sp.admit("a"), Throttled)
    fill(sp, 6000, user="b")


def test_without_cookie_requests_spread_and_each_server_counts_separately(clock: FakeClock) -> None:
    sp = ServiceProtection(Limits(), clock=clock, servers=4)
    servers = [sp.route(None)[0] for _ in range(8)]
    assert sorted(servers) == [0, 0, 1, 1, 2, 2, 3, 3]
    admitted_total = 0
    while True:
        server, _ = sp.route(None)
        outcome = sp.admit("u", server)
        if isinstance(outcome, Throttled):
            break
        outcome.release()
        admitted_total += 1
    assert admitted_total == 4 * 6000


def test_affinity_cookie_sticks_to_one_server(clock: FakeClock) -> None:
    sp = ServiceProtection(Limits(), clock=clock, servers=4)
    server, cookie = sp.route(None)
    assert {sp.route(cookie) for _ in range(20)} == {(server, cookie)}
    assert sp.route("not-a-known-cookie")[1] != "not-a-known-cookie"  # unknown cookie: spread, new cookie
    admitted_total = 0
    while isinstance(outcome := sp.admit("u", sp.route(cookie)[0]), Admission):
        outcome.release()
        admitted_total += 1
    assert admitted_total == 6000
    assert outcome.server == server


def test_persistent_client_gets_longer_waits_and_patient_client_does_not(clock: FakeClock) -> None:
    sp = ServiceProtection(Limits(), clock=clock)
    fill(sp, 6000)
    clock.t += 200
    first = sp.admit("u")
    assert isinstance(first, Throttled) and first.retry_after == 100
    clock.t += 50  # pushes after half the wait: 50 s left, doubled
    second = sp.admit("u")
    assert isinstance(second, Throttled) and second.retry_after == 100 and second.code == REQUESTS_CODE
    third = sp.admit("u")  # immediately again: doubled again
    assert isinstance(third, Throttled) and third.retry_after == 200
    for _ in range(10):
        last = sp.admit("u")
    assert isinstance(last, Throttled) and last.retry_after == 300  # capped at one window
    assert sp.usage("u").pushes == 12
    clock.t += 300
    fill(sp, 1)
    assert sp.usage("u").pushes == 0
    # a patient client: the window is free again after exactly Retry-After, with no penalty
    patient = ServiceProtection(Limits(), clock=clock)
    fill(patient, 6000, user="p")
    clock.t += 10
    refused = patient.admit("p")
    assert isinstance(refused, Throttled) and refused.retry_after == 290
    clock.t += refused.retry_after
    fill(patient, 6000, user="p")


def test_push_on_tiny_wait_still_grows_by_a_second(clock: FakeClock) -> None:
    sp = ServiceProtection(Limits(), clock=clock)
    fill(sp, 6000)
    clock.t += 299.5
    refused = sp.admit("u")
    assert (
        isinstance(refused, Throttled)
        and refused.retry_after == 1
        and refused.retry_after_s == pytest.approx(0.5)
    )
    pushed = sp.admit("u")
    assert (
        isinstance(pushed, Throttled)
        and pushed.retry_after_s == pytest.approx(1.5)
        and pushed.retry_after == 2
    )


def test_dop_hint_default_and_override() -> None:
    assert ServiceProtection(Limits(), servers=1).dop_hint() == 4
    assert ServiceProtection(Limits(), servers=3).dop_hint() == 12
    assert ServiceProtection(Limits(dop_hint=7), servers=3).dop_hint() == 7


def test_memory_is_bounded_by_the_request_limit(clock: FakeClock) -> None:
    sp = ServiceProtection(Limits(requests=100, cost=CostModel(0, 0)), clock=clock)
    for _ in range(50):
        for _ in range(150):
            outcome = sp.admit("u")
            if isinstance(outcome, Admission):
                outcome.release()
        clock.t += 301
        assert sp.usage("u").requests <= 100
    assert sp.usage("u").requests == 0


def test_thread_safe_admission_counts_exactly(clock: FakeClock) -> None:
    sp = ServiceProtection(Limits(), clock=clock)
    results: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = []
        for _ in range(1000):
            outcome = sp.admit("u")
            if isinstance(outcome, Admission):
                outcome.release()
            mine.append(isinstance(outcome, Admission))
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 6000 and sp.usage("u").in_flight == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"time_scale": 0}, {"time_scale": float("inf")}, {"requests": 0}, {"concurrency": 0}, {"dop_hint": 0}],
)
def test_invalid_limits_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Limits(**kwargs)  # type: ignore[arg-type]


def test_server_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError):
        ServiceProtection(Limits(), servers=2).admit("u", 2)
