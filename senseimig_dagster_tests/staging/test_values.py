"""The value cleaners one by one: exact cleaned values and reasons, and the distinct-value trick."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl
import pytest

from senseimig_dagster.staging.values import map_distinct
from senseimig_dagster.staging.values import phones as phone_module
from senseimig_dagster.staging.values.check import Check, RowRule, run_checks
from senseimig_dagster.staging.values.dates import clean_date, local_to_utc, years_after
from senseimig_dagster.staging.values.dental import cdt_category, clean_surfaces, clean_tooth
from senseimig_dagster.staging.values.emails import clean_email
from senseimig_dagster.staging.values.identifiers import clean_npi, clean_picklist
from senseimig_dagster.staging.values.money import clean_money
from senseimig_dagster.staging.values.phones import clean_phone, parse_phone
from senseimig_dagster.staging.values.refs import duplicate_ids, orphans
from senseimig_dagster.staging.values.text import clean_text, dataverse_length


def run(values: list, expr_of, dtype: pl.DataType | None = None) -> list[tuple]:
    frame = pl.DataFrame({"x": pl.Series(values, dtype=dtype)})
    return frame.lazy().select(expr_of(pl.col("x")).alias("r")).collect().unnest("r").rows()


def test_text_is_nfc_trimmed_collapsed_and_measured_in_utf16():
    decomposed = "Jose\u0301   Lee\t"
    assert run([decomposed], clean_text) == [("José Lee", None)]
    assert run(["a\nb"], lambda e: clean_text(e, multiline=True)) == [("a\nb", None)]
    assert run(["😀" * 25], lambda e: clean_text(e, max_length=50)) == [("😀" * 25, None)]
    assert run(["😀" * 25 + "a"], lambda e: clean_text(e, max_length=50)) == [("😀" * 25 + "a", "text_too_long")]
    assert pl.select(dataverse_length(pl.lit("a😀é"))).item() == 4


def test_text_reports_the_most_severe_problem_first():
    assert run(["\x00 \x07"], lambda e: clean_text(e, required=True)) == [(None, "required_missing")]
    assert run(["\x00" + "x" * 5], lambda e: clean_text(e, max_length=3)) == [("xxxxx", "text_too_long")]


def test_phones_become_e164_and_keep_extensions():
    assert parse_phone("303.555.0111 x 7") == ("+13035550111 x7", None)
    assert parse_phone("+44 20 7946 0958") == ("+442079460958", None)
    assert parse_phone("1-800-FLOWERS") == (None, "invalid_phone")  # letters are free text, never translated
    assert parse_phone("   ") == (None, None)
    assert run(["(303) 555-0111", None], clean_phone) == [("+13035550111", None), (None, None)]


def test_phones_are_parsed_once_per_distinct_value(monkeypatch: pytest.MonkeyPatch):
    calls: list[str] = []
    real = phone_module.parse_phone
    monkeypatch.setattr(phone_module, "parse_phone", lambda text, region: calls.append(text) or real(text, region))
    values = ["303-555-0111", "call mom", None] * 1000
    result = run(values, clean_phone)
    assert sorted(calls) == ["303-555-0111", "call mom"]
    assert result[:3] == [("+13035550111", None), (None, "invalid_phone"), (None, None)]


def test_map_distinct_keeps_row_order_on_a_large_column():
    values = [str(i % 97) for i in range(20_000)]
    out = run(values, lambda e: map_distinct(e, lambda t: (int(t) * 2, None), pl.Int64()))
    assert [v for v, _ in out[:5]] == [0, 2, 4, 6, 8] and out[-1][0] == int(values[-1]) * 2


def test_emails_lowercase_the_domain_only():
    assert run(["  Ann.Lee@GMAIL.COM ", "ann@bücher.de", "a@b.test"], clean_email) == [
        ("Ann.Lee@gmail.com", None), ("ann@bücher.de", None), (None, "invalid_email")]


def test_dates_accept_iso_and_us_text_and_date_columns_in_range():
    low, high = dt.date(1900, 1, 1), dt.date(2028, 11, 25)
    assert run(["1899-12-31", "1900-01-01", "11/25/2028", "2028-11-26"], lambda e: clean_date(e, low, high)) == [
        (None, "date_out_of_range"), (dt.date(1900, 1, 1), None), (dt.date(2028, 11, 25), None),
        (None, "date_out_of_range")]
    assert run([dt.date(1850, 1, 1)], lambda e: clean_date(e, low, high), pl.Date) == [(None, "date_out_of_range")]
    assert years_after(dt.date(2028, 2, 29), 2) == dt.date(2030, 2, 28)


def test_local_times_convert_per_zone_with_dst_rules():
    frame = pl.DataFrame({
        "t": [dt.datetime(2026, 7, 1, 9, 0), dt.datetime(2026, 7, 1, 9, 0), dt.datetime(2026, 11, 1, 1, 30),
              dt.datetime(2026, 3, 8, 2, 30), None],
        "zone": ["America/Denver", "America/Phoenix", "America/New_York", "America/Denver", "America/Denver"]})
    out = frame.lazy().select(local_to_utc(pl.col("t"), pl.col("zone")).alias("r")).collect().unnest("r").rows()
    utc = dt.UTC
    assert out == [(dt.datetime(2026, 7, 1, 15, 0, tzinfo=utc), None),  # MDT -6
                   (dt.datetime(2026, 7, 1, 16, 0, tzinfo=utc), None),  # Arizona keeps MST -7
                   (dt.datetime(2026, 11, 1, 5, 30, tzinfo=utc), None),  # repeated hour: earliest (EDT)
                   (dt.datetime(2026, 3, 8, 9, 30, tzinfo=utc), "nonexistent_local_time"),  # gap: +1 h
                   (None, None)]


def test_aware_datetimes_pass_through_as_utc():
    aware = pl.Series([dt.datetime(2026, 7, 1, 15, 0)]).dt.replace_time_zone("UTC")
    out = pl.DataFrame({"t": aware}).lazy().select(local_to_utc(pl.col("t"), "America/Denver").alias("r"))
    assert out.collect().unnest("r").rows() == [(dt.datetime(2026, 7, 1, 15, 0, tzinfo=dt.UTC), None)]


def test_money_parses_text_and_decimals_without_rounding():
    assert run(["$1,250.00", "(80.00)", " 7 ", "0.105"], clean_money) == [
        (Decimal("1250.00"), None), (Decimal("-80.00"), None), (Decimal("7.00"), None), (None, "amount_precision")]
    decimals = pl.Series([Decimal("12.5")], dtype=pl.Decimal(38, 10))
    assert run(decimals.to_list(), clean_money, pl.Decimal(38, 10)) == [(Decimal("12.50"), None)]
    # the raw layer's exact decimals: more than 2 decimals is held back, never rounded
    exact = [Decimal("12.345"), Decimal("12.340000"), Decimal("-3")]
    assert run(exact, clean_money, pl.Decimal(18, 6)) == [(None, "amount_precision"), (Decimal("12.34"), None),
                                                          (Decimal("-3.00"), None)]
    assert run(["1,23", "12.3456789", "abc"], clean_money) == [(None, "invalid_amount")] * 3
    assert run(["12345678901.00"], clean_money) == [(None, "invalid_amount")]  # over decimal(12,2)
    assert run(["-0.01"], lambda e: clean_money(e, "debit")) == [(Decimal("-0.01"), "negative_charge")]
    assert run(["0.00"], lambda e: clean_money(e, "credit")) == [(Decimal("0.00"), None)]


def test_teeth_surfaces_and_cdt_categories():
    assert run(["5", "05", " k ", "UR", "32", "T", "U"], clean_tooth) == [
        ("5", None), ("5", None), ("K", None), ("UR", "invalid_tooth"), ("32", None), ("T", None),
        ("U", "invalid_tooth")]
    assert run(["UR", "U"], lambda e: clean_tooth(e, allow_areas=True)) == [("UR", None), ("U", None)]
    frame = pl.DataFrame({"s": ["LDOBM", "FLI", "DOB", "OF", "BL"], "t": ["3", "8", "8", "19", "J"]})
    out = frame.lazy().select(clean_surfaces(pl.col("s"), pl.col("t")).alias("r")).collect().unnest("r").rows()
    assert out == [("MODBL", None), ("IFL", None), (None, "invalid_surface"), ("OF", None), ("BL", None)]
    assert pl.select(cdt_category(pl.lit("D6010")).alias("a"), cdt_category(pl.lit("D62X0")).alias("b")).row(0) == \
        ("Implant services", None)


def test_npi_check_digit_and_picklists():
    assert run(["1234-567-893", "2234567893", "123456789", ""], clean_npi) == [
        ("1234567893", None), (None, "invalid_npi"), (None, "invalid_npi"), (None, None)]
    assert run([" FEMALE ", "Other", None], lambda e: clean_picklist(e, {"Male": 1, "Female": 2})) == [
        (2, None), (None, "unmapped_picklist_value"), (None, None)]


def test_orphans_and_duplicate_ids():
    child = pl.DataFrame({"id": ["a", "b", "a", "c", None], "patient_id": ["p1", "p9", None, "p1", "p1"],
                          "updated_at": [3, 1, 2, 1, 1]})
    assert orphans(child, pl.Series(["p1", "p2"]), "patient_id").to_list() == [False, True, False, False, False]
    assert duplicate_ids(child).to_list() == [False, False, True, False, False]  # the later "a" (row 0) stays
    assert duplicate_ids(child.drop("updated_at")).to_list() == [True, False, False, False, False]


def test_run_checks_warns_nulls_or_quarantines_by_severity():
    frame = pl.DataFrame({"id": ["p1", "p2", "p3"], "last_name": ["Lee", "", "O\x00Neil"],
                          "email": ["x@gmail.com", "n/a", "bad@"], "primary_location_id": ["l1", "l1", "l9"]})
    checks = [Check("last_name", clean_text(pl.col("last_name"), required=True)),
              Check("email", clean_email(pl.col("email")))]
    rule = RowRule("primary_location_id", "orphan_reference", orphans(frame, pl.Series(["l1"]), "primary_location_id"),
                   detail="location")
    staged = run_checks(frame, "patient", checks, [rule])
    assert staged.clean.rows() == [("p1", "Lee", "x@gmail.com", "l1"), ("p3", "ONeil", None, None)]
    assert staged.quarantine.select("source_id", "rule", "severity").rows() == [
        ("p2", "required_missing", "row"), ("p2", "invalid_email", "field"),
        ("p3", "control_characters", "warning"), ("p3", "invalid_email", "field"),
        ("p3", "orphan_reference", "field")]
    assert (staged.rows_in, staged.rows_quarantined, staged.conserved) == (3, 1, True)
