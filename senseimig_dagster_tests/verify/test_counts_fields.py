"""Counts, field read-back and conservation against the emulator loaded with a generated tenant: they pass on a
clean load and fail, naming ids and columns, when Dataverse lost a row or holds another value or parent."""

from __future__ import annotations

import math

import duckdb
import pytest
from dagster import AssetKey

from senseimig_dagster.assets.metadata import markdown_table
from senseimig_dagster.assets.verification import (
    CONSERVATION,
    COUNTS,
    FIELDS,
    VerifyInputs,
    check_results,
    check_specs,
)
from senseimig_dagster.dataverse import DataverseClient
from senseimig_dagster.verify.counts import DataverseIndex, conservation, count_rows, counts_from_markdown
from senseimig_dagster.verify.differences import read_differences, record_differences
from senseimig_dagster.verify.fields import compare_fields, rows_to_compare, sample_size
from senseimig_dagster_tests.support.loaded_tenant import CATALOG, FMAP, Loaded


def _inputs(dv: DataverseClient, loaded: Loaded, **kw) -> VerifyInputs:
    return VerifyInputs(dv, FMAP, CATALOG, loaded.entity_sets, staging_counts=loaded.staging.counts, **kw)


def _results(dv: DataverseClient, loaded: Loaded, name: str, **kw) -> dict:
    inputs = _inputs(dv, loaded, **kw)
    out = check_results(AssetKey(["dataverse", name]), name, loaded.staging.staged[name], inputs)
    return {r.check_name: r for r in out}


def test_every_object_passes_counts_fields_and_conservation_on_a_clean_load(dv: DataverseClient,
                                                                            loaded: Loaded) -> None:
    kept: list[str] = []
    inputs = _inputs(dv, loaded, keep_differences=lambda name, diff: kept.append(name) or 0)
    compared = 0
    for name, frame in loaded.staging.staged.items():
        results = {r.check_name: r for r in check_results(AssetKey(["dataverse", name]), name, frame, inputs)}
        assert {k: r.passed for k, r in results.items()} == {COUNTS: True, FIELDS: True, CONSERVATION: True}, (
            name, {k: r.description for k, r in results.items()})
        assert results[COUNTS].metadata["in_dataverse"].value == frame.height
        assert results[FIELDS].metadata["rows_compared"].value == frame.height  # small objects: every row
        compared += results[FIELDS].metadata["values_compared"].value
    assert compared > 5000
    assert kept == []  # nothing differs: nothing kept, no file written


def test_a_deleted_record_fails_the_count_and_conservation_naming_its_id(dv: DataverseClient, loaded: Loaded) -> None:
    gone = loaded.staging.staged["appointment"].get_column("_source_id").sort()[3]
    dv.delete(loaded.entity_sets["smig_appointment"], {"smig_sourcesystemid": gone})
    results = _results(dv, loaded, "appointment")
    assert not results[COUNTS].passed and gone in results[COUNTS].description
    assert results[COUNTS].metadata["missing"].value == 1
    assert results[COUNTS].metadata["missing_source_ids"].value == gone
    assert not results[CONSERVATION].passed and "1 rows unaccounted for" in results[CONSERVATION].description
    assert not results[FIELDS].passed  # the row reads back empty


def test_a_tampered_field_fails_naming_the_id_and_column(dv: DataverseClient, loaded: Loaded, tmp_path) -> None:
    sid = loaded.staging.staged["patient"].get_column("_source_id").sort()[0]
    dv.update("contacts", {"smig_sourcesystemid": sid}, {"lastname": "Tampered"})
    store = duckdb.connect(str(tmp_path / "store.duckdb"))
    results = _results(dv, loaded, "patient",
                       keep_differences=lambda name, diff: record_differences(store, "verify", "r1", diff))
    assert results[COUNTS].passed and results[CONSERVATION].passed
    assert not results[FIELDS].passed
    assert results[FIELDS].metadata["differences"].value == 1
    assert results[FIELDS].description.endswith(f"{sid}.lastname")
    assert "Tampered" not in str(results[FIELDS].metadata) + results[FIELDS].description  # no values in metadata
    kept = read_differences(store, run_id="r1")  # the values stay in the store: only what differs
    assert kept.select("object", "source_id", "column", "dataverse_value").rows() == [
        ("patient", sid, "lastname", "Tampered")]
    assert results[FIELDS].metadata["differences_kept"].value == 1
    assert not list(tmp_path.glob("*.csv"))  # no file of values beside the store


def test_a_tampered_lookup_fails_naming_the_id_and_lookup(dv: DataverseClient, loaded: Loaded) -> None:
    appointments = loaded.staging.staged["appointment"].sort("_source_id")
    row = appointments.row(0, named=True)
    other = next(p for p in loaded.staging.staged["patient"].get_column("_source_id").sort()
                 if p != row["smig_PatientId"])
    dv.update(loaded.entity_sets["smig_appointment"], {"smig_sourcesystemid": row["_source_id"]},
              {"smig_PatientId@odata.bind": f"/contacts(smig_sourcesystemid='{other}')"})
    index = DataverseIndex(dv, loaded.entity_sets)
    result = compare_fields(dv, "appointment", appointments, FMAP, CATALOG, loaded.entity_sets, index)
    assert result.differences.rows() == [(row["_source_id"], "smig_PatientId")]


def test_sample_size_gives_99pct_confidence_of_under_01pct_defects() -> None:
    n = sample_size()
    assert n == 4603 == math.ceil(math.log(0.01) / math.log(0.999))
    assert 0.999 ** n <= 0.01 < 0.999 ** (n - 1)  # the smallest n whose clean sample rules 0.1% out at 99%
    assert sample_size(0.95, 0.01) == 299
    with pytest.raises(ValueError):
        sample_size(1.0, 0.001)


def test_large_objects_are_sampled_reproducibly() -> None:
    ids = [f"id-{i:05d}" for i in range(6000)]
    assert rows_to_compare(ids[:5000]) == sorted(ids[:5000])  # at the limit: every row
    first = rows_to_compare(ids, seed=3)
    assert len(first) == 4603 and first == rows_to_compare(list(reversed(ids)), seed=3)
    assert first != rows_to_compare(ids, seed=4)


def test_a_sampled_read_back_compares_only_the_sample(dv: DataverseClient, loaded: Loaded) -> None:
    frame = loaded.staging.staged["perio_reading"]
    index = DataverseIndex(dv, loaded.entity_sets)
    result = compare_fields(dv, "perio_reading", frame, FMAP, CATALOG, loaded.entity_sets, index,
                            full_limit=100, n=40, seed=1)
    assert frame.height > 100 and result.sampled and result.compared_rows == 40 and result.passed
    assert result.diff.get_column("source_id").n_unique() == 40


def test_conservation_counts_come_back_from_the_staging_metadata(loaded: Loaded) -> None:
    counts = loaded.staging.counts
    parsed = counts_from_markdown(markdown_table(counts))
    assert parsed.equals(counts.drop("conserved"))


def test_conservation_without_staging_counts_fails_saying_so(dv: DataverseClient, loaded: Loaded) -> None:
    inputs = VerifyInputs(dv, FMAP, CATALOG, loaded.entity_sets)
    results = {r.check_name: r for r in check_results(AssetKey(["dataverse", "payer"]), "payer",
                                                       loaded.staging.staged["payer"], inputs)}
    assert not results[CONSERVATION].passed and "no staging conservation counts" in results[CONSERVATION].description
    counted = count_rows("payer", loaded.staging.staged["payer"], ("account",), DataverseIndex(dv, loaded.entity_sets))
    assert conservation(loaded.staging.counts, counted).passed


def test_the_checks_are_blocking() -> None:
    specs = check_specs(AssetKey(["dataverse", "patient"]), "patient")
    assert [(s.name, s.blocking) for s in specs] == [(COUNTS, True), (FIELDS, True), (CONSERVATION, True)]
