"""Shared fixtures: each test module builds its own ``emulator`` (the schema it needs); ``client`` talks to it
in-process through httpx's WSGI transport."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

BASE = "http://dv.test/api/data/v9.2"


@pytest.fixture
def client(emulator) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.WSGITransport(app=emulator), base_url=BASE) as c:
        yield c
