from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from senseimig_dagster.staging.providers import (
    apply_resolution,
    evaluate_providers,
    free_text_rows,
    parse_name,
    provider_truth,
    resolve_providers,
)
from senseimig_dagster.staging.quarantine import QUARANTINE_SCHEMA
from senseimig_dagster_tests.support.tenants import read_defects, read_object

PROVIDERS = pl.DataFrame(
    [
        ("p1", "John", "Smith", "Doctor", "1234567893", "DDS1", "loc1"),
        ("p2", "Jane", "Smith", "Doctor", "1558598797", "DDS2", "loc1"),
        ("p3", "Anthony", "Guzman", "Hygienist", None, "HYG1", "loc1"),
        ("p4", "Anthony", "Fernandez", "Hygienist", None, "HYG2", "loc2"),
        ("p5", "Charles", "Walker", "Hygienist", None, "HYG3", "loc2"),
        ("p6", "Charles", "Mendoza", "Assistant", None, "DA1", "loc2"),
        ("p7", "Ronald", "St. John", "Assistant", None, "DA2", "loc2"),
        ("p8", "Maria", "O'Brien", "Doctor", None, "DDS3", "loc2"),
    ],
    schema=["id", "first_name", "last_name", "role", "npi", "abbreviation", "default_location_id"],
    orient="row",
)


def decide(text: str, location: str | None = None, fallback: str | None = None) -> dict:
    rows = pl.DataFrame({"object": ["appointment"], "id": ["a1"], "provider_name": [text], "location_id": [location]})
    return resolve_providers(rows, PROVIDERS, fallback).row(0, named=True)


def test_parse_name_handles_last_first_titles_and_role_hints():
    assert parse_name("smith, john").words == ("john", "smith")
    assert parse_name("J SMITH DDS") == parse_name("J SMITH DDS")
    assert (parse_name("J SMITH DDS").words, parse_name("J SMITH DDS").role) == (("j", "smith"), "Doctor")
    assert (parse_name("Samuel (hyg)").words, parse_name("Samuel (hyg)").role) == (("samuel",), "Hygienist")
    assert parse_name("Dr. O'Brien").words == ("obrien",)


@pytest.mark.parametrize(("text", "expected", "method"), [
    ("John Smith", "p1", "full_name"),
    ("smith, jane", "p2", "full_name"),
    ("DDS2", "p2", "abbreviation"),
    ("1558598797", "p2", "npi"),
    ("R ST. JOHN DA", "p7", "initial_last"),
    ("Dr. O'Brien", "p8", "single_name"),
    ("Jonh Smith", "p1", "fuzzy"),  # a typo
    ("Charles (hyg)", "p5", "single_name+role"),  # the assistant Charles is not a hygienist
])
def test_resolved(text: str, expected: str, method: str):
    d = decide(text)
    assert (d["outcome"], d["provider_id"], d["method"], d["action"]) == ("resolved", expected, method, "resolved")


def test_ambiguous_initials_list_their_candidates():
    d = decide("J SMITH DDS", location="loc1")  # John and Jane Smith, both doctors at loc1
    assert (d["outcome"], d["provider_id"], d["reason"], d["action"]) == (
        "ambiguous", None, "ambiguous_provider", "quarantine")
    assert d["candidates"] == ["p1", "p2"]
    assert decide("Dr. Smith")["candidates"] == ["p1", "p2"]


def test_the_row_location_narrows_a_first_name():
    assert decide("Anthony (hyg)")["outcome"] == "ambiguous"
    d = decide("Anthony (hyg)", location="loc2")
    assert (d["outcome"], d["provider_id"], d["method"]) == ("resolved", "p4", "single_name+role+location")


@pytest.mark.parametrize("text", ["TEMP PROVIDER", "Dr. ???", "Dr. Locum", "Hygiene Dept", ""])
def test_unknown(text: str):
    d = decide(text)
    assert (d["outcome"], d["provider_id"], d["reason"]) == ("unknown", None, "unknown_provider")


def test_fallback_provider_takes_ambiguous_and_unknown_rows():
    assert (decide("TEMP PROVIDER", fallback="p9")["provider_id"], decide("TEMP PROVIDER", fallback="p9")["action"]
            ) == ("p9", "fallback")
    d = decide("Dr. Smith", fallback="p9")
    assert (d["outcome"], d["provider_id"], d["action"], d["reason"]) == (
        "ambiguous", "p9", "fallback", "ambiguous_provider")


def test_apply_resolution_fills_ids_and_quarantines_the_rest():
    notes = pl.DataFrame({
        "id": ["n1", "n2", "n3", "n4"],
        "provider_id": [None, None, None, "p3"],
        "provider_name": ["DDS1", "Dr. Smith", "TEMP PROVIDER", None],
        "signed_at": ["2024-01-01T10:00:00Z", "2024-01-01T10:00:00Z", None, None],
        "signed_by": [None, None, None, None],
    }, schema_overrides={"signed_by": pl.String})
    decisions = resolve_providers(free_text_rows({"clinical_note": notes}), PROVIDERS)
    staged, quarantine = apply_resolution("clinical_note", notes, decisions)
    assert staged.select("id", "provider_id", "signed_by").rows() == [("n1", "p1", "p1"), ("n4", "p3", None)]
    assert quarantine.schema == pl.Schema(QUARANTINE_SCHEMA)
    assert sorted(quarantine.select("source_id", "rule", "severity").rows()) == [
        ("n2", "ambiguous_provider", "row"), ("n3", "unknown_provider", "row")]
    assert "p1, p2" in quarantine.filter(pl.col("source_id") == "n2")["message"].item()
    assert staged.height + quarantine.height == notes.height  # conservation


@pytest.fixture(scope="module")
def tenant(generated: Callable[[int, int], Path]) -> Path:
    return generated(300, 22)


def test_generated_tenant_precision_and_recall(tenant: Path):
    frames = {o: read_object(tenant, o) for o in ("appointment", "clinical_note", "ledger_transaction")}
    decisions = resolve_providers(free_text_rows(frames), read_object(tenant, "provider"))
    truth = provider_truth(read_defects(tenant))
    assert decisions.height == truth.height > 100
    e = evaluate_providers(decisions, truth)
    assert e.precision >= 0.98 and e.recall >= 0.95, e
    assert e.unresolvable_resolved == 0
    unknown = truth.filter(pl.col("verdict") == "unresolvable").join(decisions, on=["object", "id"])
    assert set(unknown["outcome"]) == {"unknown"}
