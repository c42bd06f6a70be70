"""Shared fixtures: each test module builds its own ``emulator`` (the schema it needs); ``client`` talks to it
in-process through httpx's WSGI transport."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from senseimig_dagster.sandbox.dataverse_emulator import Catalog, DataverseEmulator, RecordStore
from senseimig_dagster.sandbox.dataverse_emulator.seed import apply_seed, load_seed

BASE = "http://dv.test/api/data/v9.2"


@pytest.fixture
def client(emulator) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.WSGITransport(app=emulator), base_url=BASE) as c:
        yield c


def seeded_emulator(tmp_path: Path) -> Iterator[DataverseEmulator]:
    """An emulator over a fresh store holding the default seed (organization, users, team)."""
    catalog = Catalog.load()
    store = RecordStore(tmp_path / "dv.sqlite", catalog)
    apply_seed(store, load_seed())
    yield DataverseEmulator(catalog, store)
    store.close()
