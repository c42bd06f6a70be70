from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance

from senseimig_dagster.sandbox.generator import generate
from senseimig_dagster.sandbox.sensei_sim import SenseiSimulator, serve


@pytest.fixture(scope="session")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tenant")
    generate(out, patients=120, seed=11)
    return out


@pytest.fixture()
def sensei_url(tenant: Path) -> Iterator[str]:
    with serve(SenseiSimulator(tenant, rate_limit=None)) as base_url:
        yield base_url


@pytest.fixture()
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as inst:
        yield inst
