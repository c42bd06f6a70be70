"""The Dataverse client tests' Entra stand-in over real HTTPS on 127.0.0.1, on a clock msal shares."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from senseimig_dagster.sandbox.tls import TLSFiles
from senseimig_dagster_tests.support.environments import Entra, clocked_entra


@pytest.fixture
def entra(tls_files: TLSFiles, monkeypatch: pytest.MonkeyPatch) -> Iterator[Entra]:
    """A stand-in on its own port, with one clock shared by it and msal's token cache."""
    with clocked_entra(tls_files, monkeypatch) as stand_in:
        yield stand_in
