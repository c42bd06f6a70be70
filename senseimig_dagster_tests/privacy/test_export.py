"""Files written on request: owner-only whatever the umask or an existing file's mode, and no cell a spreadsheet
would run as a formula."""

from __future__ import annotations

import csv
import os
import stat
from pathlib import Path

import polars as pl

from senseimig_dagster.privacy.export import formula_safe, write_private_csv

ATTACKS = ["=HYPERLINK(\"http://x\",\"y\")", "+1+2", "-2+3", "@SUM(A1)", "\tx", "\rx"]


def test_a_formula_cell_is_written_as_text_and_others_unchanged(tmp_path: Path) -> None:
    frame = pl.DataFrame({"value": [*ATTACKS, "plain", "a=b", None], "n": list(range(9))})
    path = write_private_csv(frame, tmp_path / "out.csv")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["value"] for r in rows] == [f"'{a}" for a in ATTACKS] + ["plain", "a=b", ""]
    assert [r["n"] for r in rows] == [str(i) for i in range(9)]  # numbers are values, not text
    assert [formula_safe(a) for a in ATTACKS] == [f"'{a}" for a in ATTACKS] and formula_safe(5) == 5


def test_the_file_is_owner_only_even_over_an_existing_readable_file(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "out.csv"
    target.parent.mkdir()
    target.write_text("old")
    target.chmod(0o644)
    old = os.umask(0)
    try:
        write_private_csv(pl.DataFrame({"a": ["x"]}), target)
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text().splitlines() == ["a", "x"]
