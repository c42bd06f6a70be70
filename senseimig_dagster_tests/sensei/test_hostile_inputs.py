"""The hostile-input suite (``support/hostile_inputs.py``): for each kind, every record of the file or page is
landed or rejected with a named reason, exactly once, and nothing else of the file or page is lost."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import pytest

from senseimig_dagster.sensei.client import SenseiClient
from senseimig_dagster.sensei.exports import export_count, read_export
from senseimig_dagster.sensei.records import Batch
from senseimig_dagster_tests.support.hostile_inputs import CASES, LANDED, LEDGER, Hostile


def _csv_batches(case: Hostile, tmp_path: Path) -> list[Batch]:
    (tmp_path / LEDGER.export_file).write_bytes(case.body)
    batches = list(read_export(LEDGER, tmp_path, None, None, encoding=case.encoding))
    assert export_count(LEDGER, tmp_path, encoding=case.encoding) == len(case.expected)
    return batches


def _api_batches(case: Hostile) -> list[Batch]:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=case.body, headers={"Content-Type": "application/json"})

    client = SenseiClient("http://sensei.test", "key", transport=httpx.MockTransport(answer), max_retries=0)
    with client:
        return list(client.iter_batches(LEDGER))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.kind)
def test_every_record_goes_where_it_should(case: Hostile, tmp_path: Path) -> None:
    batches = _csv_batches(case, tmp_path) if case.path == "csv" else _api_batches(case)
    landed = [i for b in batches for i in b.frame.get_column("id").to_list()]
    rejects = [r for b in batches for r in b.rejects]
    got = Counter([(i, LANDED) for i in landed]
                  + [(r.source_id if r.source_id is not None else r.source_ref, r.reason) for r in rejects])
    assert got == Counter(case.expected)
    for record_id, values in case.values.items():
        row = next(b.frame.filter(b.frame["id"] == record_id).row(0, named=True) for b in batches
                   if record_id in b.frame.get_column("id").to_list())
        assert {k: row[k] for k in values} == values
    for r in rejects:  # messages name places, fields and causes, never a value
        assert "MARK" not in r.message and "Caf" not in r.message and "paid" not in r.message


def test_the_suite_covers_at_least_sixty_kinds_in_every_category() -> None:
    kinds = [c.kind for c in CASES]
    assert len(set(kinds)) == len(kinds) >= 60
    assert {c.category for c in CASES} == {"encodings", "csv structure", "json structure", "types", "dates",
                                           "numbers and money", "ids and references"}
    assert {c.path for c in CASES} == {"csv", "json"}
