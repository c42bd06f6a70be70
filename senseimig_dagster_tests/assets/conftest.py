"""The asset tests' Sensei simulator, serving the session's small tenant over HTTP on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from senseimig_dagster.sandbox.sensei_sim import SenseiSimulator, serve


@pytest.fixture()
def sensei_url(tenant: Path) -> Iterator[str]:
    with serve(SenseiSimulator(tenant, rate_limit=None)) as base_url:
        yield base_url
