"""Microsoft's documented Web API examples replayed against the emulator (``conformance/*.yaml``, one file per
article, each example with its article's URL and section): the conformance table by area is printed, every failure
named; the test fails when conformance falls below the recorded figure, so fidelity only goes up."""

from __future__ import annotations

from pathlib import Path

import pytest

from senseimig_dagster_tests.support import conformance, environments

CORPUS = Path(__file__).parent / "conformance"
RECORDED_PERCENT = 0.0  # raise it when the emulator gets better; never lower it
MINIMUM_EXAMPLES = 1


def test_documented_examples_replay_against_the_emulator(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    examples = conformance.load_corpus(CORPUS)
    assert len(examples) >= MINIMUM_EXAMPLES
    outcomes = []
    for i, example in enumerate(examples):
        with environments.emulator(tmp_path / f"dv{i}.sqlite", key_delay=0.0, column_delay=0.0) as app:
            outcomes.append(conformance.replay(example, app))
    report = conformance.table(outcomes)
    with capsys.disabled():
        print("\n" + report)
    assert conformance.percent(outcomes) >= RECORDED_PERCENT, report


def test_the_corpus_cites_its_sources() -> None:
    for example in conformance.load_corpus(CORPUS):
        assert example.source.startswith("https://learn.microsoft.com/"), example.title
        assert example.section and example.request.start and example.response.start.startswith("HTTP/1.1 ")
