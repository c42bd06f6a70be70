"""Corrections: read from YAML or CSV, applied to the newest raw rows with the extraction's parser, every one with
an outcome, values only in the audit part."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from senseimig_dagster.staging.corrections import CorrectionsError, apply_corrections, load_corrections

LEDGER = pl.DataFrame({"id": ["t1", "t2"], "patient_id": ["p-typo", "p2"],
                       "amount": pl.Series([Decimal("12.345"), Decimal("5.00")], dtype=pl.Decimal(18, 6)),
                       "txn_type": ["Charge", "Charge"]})
YAML_TEXT = """corrections:
  - {object: ledger_transaction, record_id: t1, field: patient_id, value: p1, by: Jane Doe, why: typo}
  - {object: ledger_transaction, record_id: t1, field: amount, value: "$12.35", by: Jane Doe, why: receipt 1182}
  - {object: ledger_transaction, record_id: t2, field: amount, value: "5.00", by: Jane Doe, why: checked}
  - {object: ledger_transaction, record_id: t9, field: amount, value: "1.00", by: Jane Doe, why: gone}
  - {object: ledger_transaction, record_id: t2, field: amount, value: "five", by: Jane Doe, why: oops}
"""


def test_yaml_corrections_are_applied_with_an_outcome_each(tmp_path: Path) -> None:
    path = tmp_path / "corrections.yaml"
    path.write_text(YAML_TEXT)
    applied = apply_corrections({"ledger_transaction": LEDGER}, load_corrections(path))
    frame = applied.raw["ledger_transaction"]
    assert frame.row(0) == ("t1", "p1", Decimal("12.35"), "Charge") and frame.row(1) == LEDGER.row(1)
    assert frame.schema == LEDGER.schema
    assert applied.outcomes.get_column("outcome").to_list() == [
        "applied", "applied", "already_in_source", "record_not_found", "invalid_value"]
    assert "before" not in applied.outcomes.columns and "value" not in applied.outcomes.columns
    assert applied.values.get_column("before").to_list()[:2] == ["p-typo", "12.345000"]
    assert applied.applied_ids() == {"ledger_transaction": {"t1"}}
    assert applied.per_object() == {"ledger_transaction": {"already_in_source": 1, "applied": 2,
                                                           "invalid_value": 1, "record_not_found": 1}}
    assert LEDGER.get_column("patient_id").to_list() == ["p-typo", "p2"]  # the received frame is untouched


def test_csv_corrections_and_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "corrections.csv"
    path.write_text("object,record_id,field,value,by,why\nledger_transaction,t1,txn_type,Refund,J. Doe,wrong type\n"
                    "ledger_transaction,t2,patient_id,,J. Doe,unknown patient\n")
    applied = apply_corrections({"ledger_transaction": LEDGER}, load_corrections(path))
    assert applied.raw["ledger_transaction"].get_column("txn_type").to_list() == ["Refund", "Charge"]
    assert applied.raw["ledger_transaction"].get_column("patient_id").to_list() == ["p-typo", None]
    assert load_corrections(tmp_path / "absent.yaml") == []


@pytest.mark.parametrize(("text", "problem"), [
    ("corrections:\n  - {object: ledger_transaction, record_id: t1, field: amount, value: 1}\n", "by, why missing"),
    ("corrections:\n  - {object: nothing, record_id: t1, field: a, value: 1, by: x, why: y}\n", "unknown object"),
    ("corrections:\n  - {object: ledger_transaction, record_id: t1, field: nope, value: 1, by: x, why: y}\n",
     "no such field"),
    ("corrections:\n  - {object: ledger_transaction, record_id: t1, field: id, value: t2, by: x, why: y}\n",
     "cannot be corrected"),
    ("- just a list\n", "top-level 'corrections:'"),
])
def test_a_bad_corrections_file_names_the_entry_never_the_value(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "corrections.yaml"
    path.write_text(text)
    with pytest.raises(CorrectionsError, match=problem) as info:
        load_corrections(path)
    assert "t2" not in str(info.value)
