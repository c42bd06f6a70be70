"""Field map files for the tests: the shipped default map's text, edited by exact text replacement, and a confirmed
copy of it (the writers' gate open)."""

from __future__ import annotations

import shutil
from pathlib import Path

from senseimig_dagster.mapping import confirm, default_map_path
from senseimig_dagster_tests.support.constants import REVIEWER

DEFAULT_TEXT = Path(default_map_path()).read_text(encoding="utf-8")


def edited(old: str, new: str, text: str = DEFAULT_TEXT) -> tuple[str, int]:
    """``text`` with the single occurrence of ``old`` replaced; also the 1-based line where it was."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new), text[: text.index(old)].count("\n") + 1


def default_map_copy(path: Path) -> Path:
    """The shipped map at ``path``, unconfirmed (the writers' gate closed)."""
    shutil.copy(default_map_path(), path)
    return path


def confirmed_map(path: Path) -> Path:
    """The shipped map at ``path``, confirmed (the writers' gate open)."""
    default_map_copy(path)
    confirm(path, REVIEWER)
    return path
