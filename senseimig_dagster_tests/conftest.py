"""Fixtures shared across the test directories: generated tenants (each made once per session), the local CA the
HTTPS stand-ins serve with, an ephemeral Dagster instance. Helpers live in ``support/``; test modules import from
there and from the product, never from each other or from a conftest."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance

from senseimig_dagster.sandbox.generator import generate
from senseimig_dagster.sandbox.tls import TLSFiles, make_local_ca
from senseimig_dagster_tests.support.environments import Entra, clocked_entra


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int, int], Path]:
    """``generated(patients, seed)``: the generator's tenant of that size and seed, made once per session."""
    made: dict[tuple[int, int], Path] = {}

    def tenant(patients: int, seed: int) -> Path:
        if (patients, seed) not in made:
            out = tmp_path_factory.mktemp(f"tenant-{patients}-{seed}")
            generate(out, patients=patients, seed=seed)
            made[patients, seed] = out
        return made[patients, seed]

    return tenant


@pytest.fixture(scope="session")
def tenant(generated: Callable[[int, int], Path]) -> Path:
    """The small tenant most tests run on: 120 patients, seed 11."""
    return generated(120, 11)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A local CA and a certificate for 127.0.0.1, shared by the HTTPS stand-ins of a session."""
    return make_local_ca(Path(tmp_path_factory.mktemp("tls")))


@pytest.fixture()
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture
def entra(tls_files: TLSFiles, monkeypatch: pytest.MonkeyPatch) -> Iterator[Entra]:
    """An Entra ID stand-in over real HTTPS on its own port, with one clock shared by it and msal's token cache."""
    with clocked_entra(tls_files, monkeypatch) as stand_in:
        yield stand_in
