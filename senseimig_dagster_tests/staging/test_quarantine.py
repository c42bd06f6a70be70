"""The quarantine model: reasons with severities, rows from masks, and metadata that never shows PHI."""

from __future__ import annotations

import polars as pl
import pytest

from senseimig_dagster.staging import quarantine as q


def test_every_reason_has_a_severity_and_a_template_without_values():
    assert len(q.REASONS) >= 20
    for r in q.REASONS.values():
        assert r.severity in q.SEVERITY_RANK
        assert r.message_template.startswith("{object} {source_id}: ")
    assert (q.reason("invalid_phone").severity, q.reason("required_missing").severity,
            q.reason("control_characters").severity) == ("field", "row", "warning")
    with pytest.raises(KeyError, match="unknown quarantine reason"):
        q.reason("looks_wrong")


def test_from_mask_builds_one_row_per_true_mask_with_the_raw_value():
    frame = pl.DataFrame({"id": ["p1", "p2", "p3"], "mobile_phone": ["303", None, "N/A"]})
    rows = q.from_mask(frame, "patient", "mobile_phone", "invalid_phone", pl.Series([True, None, True]))
    assert rows.schema == pl.Schema(q.QUARANTINE_SCHEMA)
    assert rows.select("source_id", "rule", "severity", "raw_value").rows() == [
        ("p1", "invalid_phone", "field", "303"), ("p3", "invalid_phone", "field", "N/A")]
    assert rows.get_column("message")[0] == ("patient p1: mobile_phone is not a dialable phone number; the field "
                                             "was left empty and the row kept")


def test_a_severity_override_changes_the_outcome_in_the_message():
    frame = pl.DataFrame({"id": ["t1"], "patient_id": ["gone"]})
    (row,) = q.from_mask(frame, "ledger_transaction", "patient_id", "orphan_reference", pl.Series([True]),
                         detail="patient", severity="row").iter_rows(named=True)
    assert row["severity"] == "row"
    assert row["message"] == ("ledger_transaction t1: patient_id points at a patient that is not in the extract; "
                              "the row was quarantined and will not be loaded until fixed")


def _findings() -> pl.DataFrame:
    rows = [("patient", "p1", "last_name", "required_missing", "row", "m", "Smith"),
            ("patient", "p2", "email", "invalid_email", "field", "m", "ann lee@gmail.com"),
            ("treatment_plan_item", "i1", "tooth", "invalid_tooth", "row", "m", "33"),
            ("appointment", "a1", "cancel_reason", "text_too_long", "row", "m", "x" * 80),
            ("mystery", "z1", "whatever", "text_too_long", "row", "m", "secret"),
            ("ledger_transaction", "t1", "service_date", "date_out_of_range", "field", "m", "2099-12-31"),
            ("ledger_transaction", "t2", "amount", "invalid_amount", "row", "m", "12.345"),
            ("patient", "p3", "patient_number", "duplicate_source_id", "row", "m", "100245")]
    return pl.DataFrame(rows, schema=q.QUARANTINE_SCHEMA, orient="row")


def test_masked_sample_masks_phi_free_text_and_unknown_fields_but_shows_codes():
    sample = q.masked_sample(_findings(), extra_phi={"appointment": {"cancel_reason"}})
    shown = dict(zip(sample.get_column("source_id"), sample.get_column("raw_value"), strict=True))
    assert shown == {"p1": q.MASK, "p2": q.MASK, "i1": "33", "a1": q.MASK, "z1": q.MASK, "t1": q.MASK,
                     "t2": "12.345", "p3": q.MASK}  # dates and record numbers identify people too
    assert sample.columns == list(q.QUARANTINE_SCHEMA)


def test_masked_sample_cuts_visible_values_and_limits_rows_per_rule():
    rows = [("treatment_plan_item", f"i{n}", "code", "invalid_cdt_code", "row", "m", "D" + "9" * 60)
            for n in range(30)]
    sample = q.masked_sample(pl.DataFrame(rows, schema=q.QUARANTINE_SCHEMA, orient="row"), n=5)
    assert sample.height == 5
    assert sample.get_column("raw_value").str.len_chars().max() == 40


def test_reason_counts_have_no_ids_or_values():
    counts = q.reason_counts(_findings())
    assert counts.columns == ["object", "rule", "severity", "rows"]
    assert counts.filter(pl.col("object") == "patient").height == 3


def test_quarantined_ids_are_only_row_level_findings():
    assert sorted(q.quarantined_ids(_findings()).to_list()) == ["a1", "i1", "p1", "p3", "t2", "z1"]
