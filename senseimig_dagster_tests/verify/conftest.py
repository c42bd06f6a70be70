"""The verification tests' tenant, loaded into the in-process emulator once per session
(``support/loaded_tenant.py``); each test gets its own copy of the emulator's database."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from senseimig_dagster.dataverse import DataverseClient
from senseimig_dagster.sandbox.dataverse_emulator import DataverseEmulator
from senseimig_dagster_tests.support import environments
from senseimig_dagster_tests.support.loaded_tenant import Loaded, load_tenant


@pytest.fixture(scope="session")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    return load_tenant(tmp_path_factory.mktemp("verify"))


@pytest.fixture
def emulator(loaded: Loaded, tmp_path: Path) -> Iterator[DataverseEmulator]:
    """This test's own copy of the loaded emulator."""
    copy = tmp_path / "dv.sqlite"
    shutil.copy(loaded.database, copy)
    with environments.emulator(copy, journaled=True) as app:
        yield app


@pytest.fixture
def dv(emulator: DataverseEmulator) -> Iterator[DataverseClient]:
    with environments.in_process_client(emulator) as client:
        yield client
