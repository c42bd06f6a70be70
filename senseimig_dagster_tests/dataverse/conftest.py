"""Fixtures for the Dataverse client's tests: the sandbox Entra stand-in over real HTTPS on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msal.application
import msal.token_cache
import pytest

from senseimig_dagster.sandbox.entra import EntraStandIn, serve_entra
from senseimig_dagster.sandbox.tls import TLSFiles, make_local_ca

TENANT = "11111111-2222-4333-8444-555555555555"
CLIENT_ID, SECRET = "sandbox-client", "s3cr3t-Value~never-shown"
ENV_URL = "https://org.crm.dynamics.com"


class FakeClock:
    def __init__(self, start: float | None = None):
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class _TimeShim:
    """Stands in for the ``time`` module inside msal: ``time()`` from the fake clock, the rest real."""

    def __init__(self, clock: FakeClock):
        self._clock = clock

    def time(self) -> float:
        return self._clock()

    def __getattr__(self, name: str):
        return getattr(time, name)


@dataclass
class Entra:
    stand_in: EntraStandIn
    url: str  # authority host, https://127.0.0.1:<port>
    tls: TLSFiles
    clock: FakeClock

    @property
    def ca(self) -> str:
        return str(self.tls.ca_cert)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_local_ca(Path(tmp_path_factory.mktemp("tls")))


@pytest.fixture
def entra(tls_files: TLSFiles, monkeypatch: pytest.MonkeyPatch) -> Iterator[Entra]:
    """A stand-in on its own port, with one clock shared by it and msal's token cache."""
    clock = FakeClock()
    monkeypatch.setattr(msal.application, "time", _TimeShim(clock))
    monkeypatch.setattr(msal.token_cache, "time", _TimeShim(clock))
    stand_in = EntraStandIn(apps={CLIENT_ID: SECRET}, tenant=TENANT, clock=clock, seed=7)
    with serve_entra(stand_in, tls=tls_files) as url:
        yield Entra(stand_in, url, tls_files, clock)
