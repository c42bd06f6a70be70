"""Every kind of bad input is caught with its reason and count; valid oddities pass unchanged; rows add up."""

from __future__ import annotations

from collections import Counter

import polars as pl
import pytest

from senseimig_dagster.staging import quarantine as q
from senseimig_dagster.staging.values.check import Staged, run_checks
from senseimig_dagster_tests.support.bad_inputs import CORPUS, BadInput, checks_for

GENERATOR_DEFECTS_IN_SCOPE = {"long_name", "non_ascii_name", "bad_email", "bad_phone", "orphan_reference",
                              "long_note"}  # the rest (duplicates, free-text providers, chart copies) are dedup's
RESOLVED_ELSEWHERE = {"ambiguous_provider", "unknown_provider",  # tested with staging/providers.py
                      "parent_not_staged"}  # tested with staging/shape.py (needs staged parents)


def stage(case: BadInput) -> Staged:
    frame = case.frame()
    checks, rules = checks_for(case.object, frame)
    return run_checks(frame, case.object, checks, rules, keep_row_index=True)


def test_corpus_has_at_least_30_distinct_kinds_and_the_generators_defects():
    kinds = [c.kind for c in CORPUS]
    assert len(set(kinds)) == len(kinds) >= 30
    assert len([c for c in CORPUS if not c.must_pass]) >= 30
    assert {c.generator for c in CORPUS} >= GENERATOR_DEFECTS_IN_SCOPE
    assert {code for c in CORPUS for code in c.expected} == set(q.REASONS) - RESOLVED_ELSEWHERE  # all exercised


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.kind)
def test_each_kind_is_caught_with_its_reason_and_count(case: BadInput):
    staged = stage(case)
    assert dict(Counter(staged.quarantine.get_column("rule").to_list())) == case.expected
    assert staged.rows_quarantined == case.rows_quarantined
    # conservation: rows in = rows clean + rows quarantined, and each dropped row has a row-level finding
    assert staged.rows_in == staged.clean.height + staged.rows_quarantined
    row_level = staged.quarantine.filter(pl.col("severity") == "row")
    assert row_level.get_column("_row").n_unique() == staged.rows_quarantined
    for name, expected in case.values.items():
        assert staged.clean.get_column(name).to_list() == expected, name


@pytest.mark.parametrize("case", [c for c in CORPUS if c.must_pass], ids=lambda c: c.kind)
def test_valid_oddities_are_not_quarantined(case: BadInput):
    staged = stage(case)
    assert staged.quarantine.is_empty()
    assert staged.clean.height == len(case.rows)


def test_findings_carry_the_raw_value_but_messages_never_do():
    staged = [stage(c) for c in CORPUS if not c.must_pass]
    found = pl.concat([s.quarantine for s in staged])
    assert found.filter(pl.col("message").is_null() | pl.col("source_id").is_null()).is_empty()
    for message, raw, source_id in found.select("message", "raw_value", "source_id").iter_rows():
        if raw and len(raw) >= 3 and raw != source_id:  # ids are not PHI and name the row
            assert raw not in message.replace(source_id, "")
    phone = found.filter(pl.col("rule") == "invalid_phone").get_column("raw_value").to_list()
    assert "call mom" in phone and "000-000-0000" in phone


def test_field_level_findings_keep_the_row_and_empty_the_field():
    case = next(c for c in CORPUS if c.kind == "email_placeholder")
    staged = stage(case)
    (finding,) = staged.quarantine.iter_rows(named=True)
    assert (finding["severity"], finding["raw_value"], finding["field"]) == ("field", "n/a", "email")
    assert "the field was left empty and the row kept" in finding["message"]
    assert staged.clean.height == 2


@pytest.mark.parametrize("obj", sorted({c.object for c in CORPUS}))
def test_one_frame_per_object_adds_up(obj: str):
    """All cases of an object staged together: findings are the sum of the cases', and rows still add up."""
    cases = [c for c in CORPUS if c.object == obj]
    frame = pl.concat([c.frame() for c in cases], how="diagonal_relaxed")
    checks, rules = checks_for(obj, frame)
    staged = run_checks(frame, obj, checks, rules)
    expected = sum((Counter(c.expected) for c in cases), Counter())
    assert Counter(staged.quarantine.get_column("rule").to_list()) == expected
    assert staged.rows_quarantined == sum(c.rows_quarantined for c in cases)
    assert staged.conserved
