"""Map files for the tests: the shipped default map, edited by exact text replacement."""

from __future__ import annotations

from pathlib import Path

import pytest

from senseimig_dagster.mapping import default_map_path

DEFAULT_TEXT = Path(default_map_path()).read_text(encoding="utf-8")


def edited(old: str, new: str, text: str = DEFAULT_TEXT) -> tuple[str, int]:
    """``text`` with the single occurrence of ``old`` replaced; also the 1-based line where it was."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new), text[: text.index(old)].count("\n") + 1


@pytest.fixture
def map_file(tmp_path: Path) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(DEFAULT_TEXT, encoding="utf-8")
    return path
