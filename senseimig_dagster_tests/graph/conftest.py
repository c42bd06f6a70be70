"""The Graph client's tests: the Entra ID and Graph stand-ins on one port over real HTTPS on 127.0.0.1, behind a
WSGI wrapper that can fail chosen requests (503, or a connection reset before or after the stand-in has handled
the request)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from senseimig_dagster.sandbox.tls import TLSFiles
from senseimig_dagster_tests.support.environments import GraphEnv, graph_stand_in


@pytest.fixture
def graph_env(tls_files: TLSFiles, tmp_path: Path) -> Iterator[GraphEnv]:
    with graph_stand_in(tls_files, tmp_path / "graph.sqlite") as env:
        yield env
