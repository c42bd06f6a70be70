"""``documents_accounted``: a document that failed because its source file is broken is accounted for; one that
failed for a system reason (authentication, configuration, a server error) fails the check with reasons and counts."""

from __future__ import annotations

from dagster import AssetKey

from senseimig_dagster.assets.documents import ACCOUNTED, checks
from senseimig_dagster.load.document_writer import DocumentResult

KEY = AssetKey(["dataverse", "document"])


def _accounted(results: list[DocumentResult]):
    return next(c for c in checks(KEY, results, [r.source_id for r in results]) if c.check_name == ACCOUNTED)


def test_faults_of_the_source_file_are_accounted_for() -> None:
    check = _accounted([DocumentResult("d1", "note", verified=True),
                        DocumentResult("d2", "failed", reason="missing_at_source"),
                        DocumentResult("d3", "failed", reason="source_hash_mismatch"),
                        DocumentResult("d4", "failed", reason="zero_byte_file")])
    assert check.passed
    assert check.metadata["source_faults"].value == {"missing_at_source": 1, "source_hash_mismatch": 1,
                                                     "zero_byte_file": 1}


def test_a_system_failure_fails_the_check_with_its_reason_and_count() -> None:
    check = _accounted([DocumentResult("d1", "failed", reason="sharepoint_not_configured"),
                        DocumentResult("d2", "failed", reason="sharepoint_not_configured"),
                        DocumentResult("d3", "failed", reason="http_401", status=401),
                        DocumentResult("d4", "failed", reason="missing_at_source"),
                        DocumentResult("d5", "failed")])
    assert not check.passed
    assert check.description == "4 failed for a system reason (http_401 1, sharepoint_not_configured 2, unknown 1)"
    assert check.metadata["system_failures"].value == {"http_401": 1, "sharepoint_not_configured": 2, "unknown": 1}
    assert check.metadata["system_failed_ids"].value == ["d1", "d2", "d3", "d5"]
