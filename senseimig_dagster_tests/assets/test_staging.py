"""Staging assets end to end: raw from the simulator over HTTP, then the whole tenant staged into DuckDB, with
conservation per object, the generator's defects under their reasons, and no PHI in any Dagster event."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, materialize
from dagster._serdes import serialize_value

from senseimig_dagster.assets.partitions import range_tags
from senseimig_dagster.assets.raw import raw_assets
from senseimig_dagster.assets.staging import CONSERVATION, raw_needs, staging_assets
from senseimig_dagster.mapping import default_map
from senseimig_dagster.mapping.scope import accounted_by
from senseimig_dagster.objects import REGISTRY
from senseimig_dagster.sandbox.sensei_sim import SenseiSimulator, serve
from senseimig_dagster.staging.dedup import dedup_truth, evaluate_dedup
from senseimig_dagster_tests.support.resources import migration_resources
from senseimig_dagster_tests.support.tenants import read_defects, read_object


@pytest.fixture(scope="module")
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture(scope="module")
def staged(tenant: Path, instance: DagsterInstance, tmp_path_factory: pytest.TempPathFactory):
    """One extraction and one staging run shared by the module's tests (each takes seconds)."""
    database = str(tmp_path_factory.mktemp("staging") / "db.duckdb")
    with serve(SenseiSimulator(tenant, rate_limit=None)) as sensei_url:
        yield _run(sensei_url, database, instance), database


def _run(sensei_url: str, database: str, instance: DagsterInstance):
    resources = migration_resources(database, sensei_url=sensei_url)
    tags = range_tags()
    assert materialize(raw_assets, resources=resources, instance=instance, tags=tags).success
    return materialize([staging_assets], resources=resources, instance=instance, raise_on_error=False)


def _table(database: str, name: str) -> pl.DataFrame:
    with duckdb.connect(database, read_only=True) as conn:
        return conn.sql(f"SELECT * FROM staging.{name}").pl()


def test_graph_shows_each_staging_asset_reading_its_raw_tables():
    deps = staging_assets.asset_deps
    assert AssetKey(["raw", "patient_policy"]) in deps[AssetKey(["staging", "patient"])]
    assert AssetKey(["raw", "provider"]) in deps[AssetKey(["staging", "ledger_transaction"])]
    assert AssetKey(["raw", "ledger_transaction"]) not in deps[AssetKey(["staging", "location"])]
    assert raw_needs("location") == {AssetKey(["raw", "location"]), AssetKey(["raw", "organization"])}
    keys = {k.path[-1] for k in staging_assets.keys}
    assert "user" not in keys and "patient_policy" not in keys  # matched / merged: no rows of their own
    assert {"quarantine", "merge_map", "provider_resolution", "patient", "communication"} <= keys


def test_every_object_is_conserved_and_checks_pass(staged):
    result, database = staged
    assert result.success
    conservation = {e.asset_key.path[-1]: e for e in result.get_asset_check_evaluations()
                    if e.check_name == CONSERVATION}
    assert len(conservation) == 17 and all(e.passed for e in conservation.values())
    accounted = {o for name in conservation for o in accounted_by(default_map(), name)}
    assert accounted | {"user"} == {o.name for o in REGISTRY}
    staged_rows = sum(_table(database, name).height for name in conservation)
    assert staged_rows > 9000
    failed = [(e.asset_key.path[-1], e.check_name) for e in result.get_asset_check_evaluations() if not e.passed]
    assert failed == [], failed


def test_generator_defects_are_counted_under_their_reasons(staged, tenant: Path):
    _, database = staged
    findings = _table(database, "quarantine")
    deleted = pl.concat([read_object(tenant, o.name).filter(pl.col("is_deleted").fill_null(False))
                         .select(pl.lit(o.name).alias("object"), pl.col("id").cast(pl.String)) for o in REGISTRY])
    # rows deleted in Sensei are not written, so not checked either
    defects = read_defects(tenant).join(deleted, on=["object", "id"], how="anti")
    expected = {"bad_email": "invalid_email", "bad_phone": "invalid_phone", "long_name": "text_too_long",
                "invalid_npi": "invalid_npi", "orphan_reference": "orphan_reference"}
    for kind, rule in expected.items():
        wanted = defects.filter(pl.col("kind") == kind).select("object", pl.col("id").alias("source_id"))
        found = findings.filter(pl.col("rule") == rule).select("object", "source_id").unique()
        assert wanted.join(found, on=["object", "source_id"], how="anti").is_empty(), kind
        assert found.height == wanted.unique().height, kind  # and nothing else under that reason
    names = defects.filter(pl.col("kind") == "non_ascii_name").get_column("id")
    assert findings.filter(pl.col("source_id").is_in(names.implode()) & (pl.col("object") == "patient")).is_empty()
    unresolvable = defects.filter((pl.col("kind") == "free_text_provider") & (pl.col("detail") == "unresolvable"))
    unknown = findings.filter(pl.col("rule") == "unknown_provider")
    assert unknown.height == unresolvable.height
    merged = _table(database, "merge_map")
    found = evaluate_dedup(merged, dedup_truth(defects))
    assert found.true_positives and found.precision == 1.0  # harsh duplicates: some stay apart (benchmarks/dedup.py)
    assert {"match_probability", "evidence"} <= set(merged.columns)


def _phi_values(tenant: Path) -> set[str]:
    patients = read_object(tenant, "patient")
    values: set[str] = set()
    for column in ("first_name", "last_name", "email", "mobile_phone", "home_phone", "date_of_birth",
                   "address_line1"):
        values |= {str(v) for v in patients.get_column(column).drop_nulls() if len(str(v)) >= 5}
    return values


def test_no_phi_in_any_dagster_event_or_metadata(staged, tenant: Path, instance):
    result, _ = staged
    events = instance.all_logs(result.run_id)
    text = "\n".join(serialize_value(e) for e in events)
    assert any(e.dagster_event and e.dagster_event.event_type == DagsterEventType.ASSET_MATERIALIZATION
               for e in events)
    assert "conservation" in text
    leaked = sorted(v for v in _phi_values(tenant) if v in text)
    assert leaked == []
