"""The read-backs' differences kept in the store: only rows whose values differ, per run and kind, and the
``senseimig export differences`` command that writes them to an owner-only, formula-safe file on request."""

from __future__ import annotations

import argparse
import csv
import stat
from pathlib import Path

import duckdb
import polars as pl

from senseimig_dagster.cli.commands import export_differences
from senseimig_dagster.verify.differences import read_differences, record_differences


def _diff(*rows: tuple) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["object", "source_id", "field", "column", "source_value", "staged_value",
                                      "dataverse_value", "equal"], orient="row")


def test_only_differing_values_are_kept_per_run_and_kind(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "store.duckdb")) as conn:
        kept = record_differences(conn, "verify", "r1", _diff(
            ("patient", "p1", "last_name", "lastname", "Ames", "Ames", "Ames", True),
            ("patient", "p2", "last_name", "lastname", "Bo", "Bo", "Tampered", False)))
        record_differences(conn, "sample", "r2", _diff(("patient", "p3", "email", "emailaddress1", "a", "a", None,
                                                        False)))
        assert kept == 1
        assert read_differences(conn, run_id="r1").select("source_id", "dataverse_value").rows() == [
            ("p2", "Tampered")]
        assert read_differences(conn, kind="sample").get_column("source_id").to_list() == ["p3"]
        assert read_differences(conn).height == 2


def test_nothing_recorded_reads_as_empty(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "store.duckdb")) as conn:
        assert read_differences(conn).is_empty()


def test_the_export_command_writes_an_owner_only_formula_safe_file(tmp_path: Path) -> None:
    database = tmp_path / "store.duckdb"
    with duckdb.connect(str(database)) as conn:
        record_differences(conn, "verify", "r1", _diff(
            ("claim", "c1", "status_change_note", "smig_note", "=cmd|' /C calc'!A0", "x", "y", False)))
    out = tmp_path / "out" / "diff.csv"
    args = argparse.Namespace(duckdb=str(database), run_id="r1", kind=None, object=None, out=str(out))

    assert export_differences(args) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with out.open(newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["source_value"] == "'=cmd|' /C calc'!A0" and row["source_id"] == "c1"
