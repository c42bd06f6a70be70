"""The shared caster: typed rows out, every unusable row a named reject, nothing lost."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl
import pytest

from senseimig_dagster import objects
from senseimig_dagster.sensei.records import EXTRA, RAW, SOURCE_REF, cast_batch

LEDGER = objects.get("ledger_transaction")


def text_frame(rows: list[dict]) -> pl.DataFrame:
    columns = sorted({k for r in rows for k in r})
    frame = pl.DataFrame(rows, schema={c: pl.String for c in columns})
    return frame.with_columns(pl.lit(None, pl.String).alias(EXTRA),
                              pl.Series(SOURCE_REF, [f"page 1 row {i}" for i in range(len(rows))]),
                              pl.Series(RAW, [str(r) for r in rows]))


def row(id_: str, **values: str) -> dict:
    return {"id": id_, "updated_at": "2026-10-05T10:00:00Z", **values}


def test_json_flavor_types_every_field():
    batch = cast_batch(LEDGER, text_frame([row("t1", amount="-80.00", service_date="2026-10-01",
                                                 created_at="2026-10-01T09:30:00.250Z")]), "json")
    (landed,) = batch.frame.iter_rows(named=True)
    assert landed["amount"] == Decimal("-80.00")
    assert landed["service_date"] == dt.date(2026, 10, 1)
    assert landed["created_at"] == dt.datetime(2026, 10, 1, 9, 30, 0, 250000, tzinfo=dt.UTC)
    assert batch.rejects == []


def test_csv_flavor_reads_us_dates_and_yes_no():
    obj = objects.get("clinical_note")
    batch = cast_batch(obj, text_frame([row("n1", is_alert="Yes", archived="No", signed_at="")]), "csv")
    (landed,) = batch.frame.iter_rows(named=True)
    assert (landed["is_alert"], landed["archived"], landed["signed_at"]) == (True, False, None)
    dates = cast_batch(LEDGER, text_frame([row("t1", service_date="10/31/2026")]), "csv")
    assert dates.frame["service_date"].to_list() == [dt.date(2026, 10, 31)]


@pytest.mark.parametrize(("values", "reason", "field"), [
    ({"amount": "twelve"}, "wrong_type", "amount"),
    ({"amount": "1234567890123.00"}, "wrong_type", "amount"),  # overflows decimal(18,6)
    ({"amount": "12.3456789"}, "wrong_type", "amount"),  # more decimals than can be held exactly
    ({"amount": "1,23"}, "wrong_type", "amount"),  # a decimal comma or a thousands separator: ambiguous
    ({"amount": "1e3"}, "wrong_type", "amount"),
    ({"service_date": "2026-02-30"}, "wrong_type", "service_date"),
    ({"updated_at": None}, "missing_modified_at", "updated_at"),
])
def test_unusable_rows_become_named_rejects(values, reason, field):
    batch = cast_batch(LEDGER, text_frame([row("good"), row("bad", **values)]), "json")
    assert batch.frame["id"].to_list() == ["good"]
    (reject,) = batch.rejects
    assert (reject.source_id, reject.reason, reject.field, reject.source_ref) == ("bad", reason, field, "page 1 row 1")
    assert "twelve" not in reject.message  # values never reach messages (PHI)
    assert batch.received == 2


def test_missing_id_is_rejected_with_its_raw_row():
    batch = cast_batch(LEDGER, text_frame([{"id": None, "updated_at": "2026-10-05T10:00:00Z"}]), "json")
    (reject,) = batch.rejects
    assert reject.reason == "missing_primary_key" and reject.source_id is None and reject.raw


def test_duplicate_id_keeps_latest_version_and_rejects_the_other():
    older = row("t1", amount="1.00") | {"updated_at": "2026-10-05T10:00:00Z"}
    newer = row("t1", amount="2.00") | {"updated_at": "2026-10-06T10:00:00Z"}
    batch = cast_batch(LEDGER, text_frame([newer, older]), "json")
    assert batch.frame["amount"].to_list() == [Decimal("2.00")]
    assert [r.reason for r in batch.rejects] == ["duplicate_primary_key"]
    assert batch.rejects[0].source_ref == "page 1 row 1"


def test_json_fields_are_canonical_and_invalid_json_is_rejected():
    obj = objects.get("provider")
    batch = cast_batch(obj, text_frame([row("p1", state_licenses='[{"state": "CO",  "number": "1"}]'),
                                        row("p2", state_licenses="{not json"),
                                        row("p3", state_licenses='"a bare JSON string"'),
                                        row("p4", state_licenses="12")]), "json")
    assert batch.frame["state_licenses"].to_list() == ['[{"state":"CO","number":"1"}]']
    assert [(r.source_id, r.reason) for r in batch.rejects] == [("p2", "wrong_type"), ("p3", "wrong_type"),
                                                                ("p4", "wrong_type")]
    assert all("a bare JSON string" not in r.message for r in batch.rejects)


def test_row_order_is_kept():
    rows = [row(f"t{i}") for i in (3, 1, 2)]
    assert cast_batch(LEDGER, text_frame(rows), "json").frame["id"].to_list() == ["t3", "t1", "t2"]


@pytest.mark.parametrize(("text", "exact", "variant"), [
    ("12.34", "12.34", None),
    ("12.345", "12.345", "more_than_two_decimals"),  # exact, never rounded: staging holds it back
    ("12.3400", "12.34", None),
    ("12", "12", None),
    ("$1,234.56", "1234.56", "currency_symbol+thousands_separator"),
    ("(12.00)", "-12.00", "accounting_negative"),
    ("($1,000.10)", "-1000.10", "accounting_negative+currency_symbol+thousands_separator"),
    ("+5.00", "5.00", "leading_plus"),
    (" -80.00 ", "-80.00", None),
])
def test_money_is_read_exactly_and_each_rendering_is_counted(text, exact, variant):
    batch = cast_batch(LEDGER, text_frame([row("t1", amount=text)]), "json")
    assert batch.rejects == []
    assert batch.frame["amount"].to_list() == [Decimal(exact)]
    assert batch.variants == ({f"amount: {variant}": 1} if variant else {})


@pytest.mark.parametrize(("field", "text", "value", "variant"), [
    ("is_alert", "TRUE", True, "other_rendering"),
    ("is_alert", "yes", True, "other_rendering"),
    ("is_alert", "0", False, "other_rendering"),
    ("signed_at", "2026-10-01T12:30:00+02:00", dt.datetime(2026, 10, 1, 10, 30, tzinfo=dt.UTC), "utc_offset"),
    ("signed_at", "2026-10-01 12:30:00", dt.datetime(2026, 10, 1, 12, 30, tzinfo=dt.UTC),
     "space_separator+no_time_zone"),
    ("signed_at", "1790857800", dt.datetime(2026, 10, 1, 12, 30, tzinfo=dt.UTC), "epoch_seconds"),
    ("signed_at", "1790857800000", dt.datetime(2026, 10, 1, 12, 30, tzinfo=dt.UTC), "epoch_milliseconds"),
    ("service_date", "10/01/2026", dt.date(2026, 10, 1), "us_date"),
])
def test_common_renderings_are_read_and_counted(field, text, value, variant):
    obj = LEDGER if field == "service_date" else objects.get("clinical_note")
    batch = cast_batch(obj, text_frame([row("n1", **{field: text})]), "json")
    assert batch.rejects == []
    assert batch.frame[field].to_list() == [value]
    assert batch.variants == {f"{field}: {variant}": 1}
