from __future__ import annotations

from types import SimpleNamespace

import polars as pl
import pytest

from senseimig_dagster.staging import dedup
from senseimig_dagster.staging.matching import linkage, model
from senseimig_dagster.staging.matching.columns import comparison_columns


class RefusingTraining:
    """Splink's training API, refusing EM on one rule as Splink does when a level's m would be exactly 0."""

    def __init__(self, refuse: str) -> None:
        self.refuse = refuse
        self.em_rules: list[str] = []

    def estimate_probability_two_random_records_match(self, rules, recall):
        pass

    def estimate_u_using_random_sampling(self, max_pairs, seed):
        pass

    def estimate_parameters_using_expectation_maximisation(self, rule):
        sql = linkage.rule_sql(rule)
        self.em_rules.append(sql)
        if sql == self.refuse:
            raise ValueError("m values must be > 0: level 'exact' of comparison 'ssn_last_four'\nsecond line")


@pytest.mark.parametrize("refused", [0, 1])
def test_a_training_rule_that_em_refuses_is_recorded_with_its_reason(refused: int):
    refuse = linkage.rule_sql(model.TRAINING_RULES[refused])
    training = RefusingTraining(refuse)
    summary = linkage.train(SimpleNamespace(training=training), 10_000)  # type: ignore[arg-type]
    assert training.em_rules == [linkage.rule_sql(r) for r in model.TRAINING_RULES]  # the others still ran
    rows = {r["rule"]: r for r in summary.iter_rows(named=True)}
    assert rows[refuse]["outcome"] == "skipped"
    assert rows[refuse]["reason"] == "ValueError: m values must be > 0: level 'exact' of comparison 'ssn_last_four'"
    others = [r for rule, r in rows.items() if rule != refuse]
    assert others and all(r["outcome"] == "estimated" and r["reason"] is None for r in others)


def test_a_tenant_scored_on_calibrated_parameters_has_no_training_rows():
    scored = linkage.score(comparison_columns(pl.DataFrame({"id": ["a", "b"], "first_name": ["Ann", "Anne"]})))
    assert not scored.trained and scored.training.is_empty()


def test_the_training_summary_reaches_the_dedup_result(monkeypatch: pytest.MonkeyPatch):
    skipped = pl.DataFrame([("em", 'l."dob" = r."dob"', "skipped", "ValueError: m of 0")],
                           schema=linkage.TRAINING_SCHEMA, orient="row")
    monkeypatch.setattr(linkage, "train", lambda linker, patients: skipped)
    patients = pl.DataFrame({"id": ["a", "b", "c"], "first_name": ["Ann", "Anne", "Bo"],
                             "date_of_birth": ["1980-01-02", "1980-01-02", "1990-05-06"],
                             "updated_at": [None, None, None]})
    result = dedup.deduplicate(patients, prior={})  # no calibrated parameters: trained on the tenant
    assert result.stats["trained_on_tenant"] == 1
    assert result.stats["training_rules_skipped"] == 1
    assert result.training.to_dicts() == skipped.to_dicts()
