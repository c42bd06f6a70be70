"""Map files for the mapping tests: a writable copy of the shipped default map per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from senseimig_dagster_tests.support.maps import DEFAULT_TEXT


@pytest.fixture
def map_file(tmp_path: Path) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(DEFAULT_TEXT, encoding="utf-8")
    return path
