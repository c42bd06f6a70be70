"""The one retry policy the Sensei, Dataverse and Graph clients share."""

from __future__ import annotations

import datetime as dt
from email.utils import format_datetime

from senseimig_dagster.transport.retry import RetryPolicy, parse_retry_after

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


def test_retry_after_is_seconds_or_an_http_date() -> None:
    assert parse_retry_after("3") == 3.0 and parse_retry_after("0.5") == 0.5
    assert parse_retry_after(format_datetime(NOW + dt.timedelta(seconds=30), usegmt=True), now=NOW) == 30.0
    assert parse_retry_after(format_datetime(NOW - dt.timedelta(days=1), usegmt=True), now=NOW) == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("") is None
    assert parse_retry_after("soon") is None and parse_retry_after("-1") is None


def test_a_service_wait_is_obeyed_exactly_or_clamped() -> None:
    assert RetryPolicy().wait(0, 42.0) == 42.0
    assert RetryPolicy(retry_after_max=5.0).wait(3, 42.0) == 5.0


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_max=4.0)
    for attempt, cap in ((0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (9, 4.0)):
        waits = [policy.wait(attempt) for _ in range(200)]
        assert all(0 <= w <= cap for w in waits) and max(waits) > cap / 2  # spread over [0, cap]


def test_the_last_allowed_attempt_gives_up() -> None:
    policy = RetryPolicy(max_retries=2)
    assert [policy.gives_up_after(a) for a in range(4)] == [False, False, True, True]
