"""Each test module builds its own ``emulator`` (the schema it needs); ``client`` talks to it in process through
httpx's WSGI transport."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from senseimig_dagster_tests.support.web_api import web_api_client


@pytest.fixture
def client(emulator) -> Iterator[httpx.Client]:
    with web_api_client(emulator) as c:
        yield c
