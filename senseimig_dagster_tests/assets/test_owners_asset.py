"""``staging/owners`` against the Dataverse emulator over HTTPS (tokens from the Entra stand-in, the seed's system
users), on a small generated tenant extracted and staged into DuckDB: without a fallback the blocking check fails
naming the Sensei user ids; with an enabled seed user as fallback every owner resolves; a disabled fallback fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance, materialize
from dagster._serdes import serialize_value

from senseimig_dagster.assets.owners import OWNED_OBJECTS, staging_owners
from senseimig_dagster.assets.partitions import range_tags
from senseimig_dagster.assets.raw import raw_assets
from senseimig_dagster.assets.staging import staging_assets
from senseimig_dagster.jobs import stage_job
from senseimig_dagster.resources import DataverseResource
from senseimig_dagster.sandbox.sensei_sim import SenseiSimulator, serve
from senseimig_dagster.staging.owners import CHECK_NAME, OWNER_COLUMN
from senseimig_dagster_tests.support.constants import SEED_ADMIN as ADMIN
from senseimig_dagster_tests.support.constants import SEED_DEPARTED as DEPARTED
from senseimig_dagster_tests.support.constants import SEED_TEAM as TEAM
from senseimig_dagster_tests.support.environments import sandbox
from senseimig_dagster_tests.support.resources import migration_resources
from senseimig_dagster_tests.support.tenants import read_object


@pytest.fixture(scope="module")
def dataverse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DataverseResource]:
    """The seed's system users over HTTPS, no fallback owner (each test sets its own)."""
    with sandbox(tmp_path_factory.mktemp("dv")) as served:
        yield served.dataverse(fallback_owner=None)


@pytest.fixture(scope="module")
def staged_db(tenant: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The small tenant extracted and staged once (raw + staging); each test then runs only staging/owners."""
    database = str(tmp_path_factory.mktemp("owners") / "db.duckdb")
    tags = range_tags()
    with DagsterInstance.ephemeral() as instance, serve(SenseiSimulator(tenant, rate_limit=None)) as sensei_url:
        resources = migration_resources(database, sensei_url=sensei_url)
        assert materialize(raw_assets, resources=resources, instance=instance, tags=tags).success
        assert materialize([staging_assets], resources=resources, instance=instance).success
    return database


def _owners(staged_db: str, dataverse: DataverseResource, fallback: str | None):
    resource = DataverseResource(**{**dataverse.model_dump(), "fallback_owner": fallback})
    with DagsterInstance.ephemeral() as instance:
        result = materialize([staging_owners], resources=migration_resources(staged_db, dataverse=resource),
                             instance=instance, raise_on_error=False)
        text = "\n".join(serialize_value(e) for e in instance.all_logs(result.run_id))
    return result, text


def _table(database: str) -> pl.DataFrame:
    with duckdb.connect(database, read_only=True) as conn:
        return conn.sql("SELECT * FROM staging.owners").pl()


def _staged_owner_ids(database: str) -> set[str]:
    with duckdb.connect(database, read_only=True) as conn:
        return {r[0] for t in OWNED_OBJECTS for r in conn.execute(
            f"SELECT DISTINCT {OWNER_COLUMN} FROM staging.{t} WHERE {OWNER_COLUMN} IS NOT NULL").fetchall()}


def test_declared_upstream_of_nothing_but_raw_users_and_the_staged_owner_tables():
    deps = staging_owners.asset_deps[AssetKey(["staging", "owners"])]
    assert deps == {AssetKey(["raw", "user"]), AssetKey(["staging", "communication"]),
                    AssetKey(["staging", "claim_status_event"])}
    assert staging_owners.check_specs_by_output_name  # the check is declared on the asset...
    (spec,) = staging_owners.check_specs
    assert spec.name == CHECK_NAME and spec.blocking  # ...and blocks whatever depends on staging/owners
    assert AssetKey(["staging", "owners"]) in stage_job.selection.resolve(
        [*raw_assets, staging_assets, staging_owners])


def test_without_a_fallback_the_check_fails_naming_every_unmatched_user(staged_db, dataverse, tenant: Path):
    result, text = _owners(staged_db, dataverse, None)
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == CHECK_NAME and not check.passed
    table = _table(staged_db)
    users = read_object(tenant, "user")
    assert set(table.get_column("user_id")) >= set(users.get_column("id").cast(pl.String))
    # No generated e-mail is a seed user's: every user is missing, and owns nothing.
    assert set(table.get_column("outcome")) <= {"missing", "unknown_user"}
    assert table.get_column("owner_id").null_count() == table.height
    named = _staged_owner_ids(staged_db)
    assert named, "the tenant must stage rows with a Sensei owner for this test to mean anything"
    meta = {k: v.value for k, v in check.metadata.items()}
    assert meta["fallback_owner"] == "none" and meta["rows_without_owner"] > 0
    for user_id in named:
        assert user_id in meta["unresolved_users"]
    assert check.description.startswith(f"{len(named)} Sensei users own")
    emails = {e for e in users.get_column("email").drop_nulls() if "@" in e}
    assert emails and not [e for e in emails if e in text]  # ids and outcomes only, never e-mails


def test_an_enabled_seed_user_as_fallback_owns_every_unmatched_users_records(staged_db, dataverse):
    result, _ = _owners(staged_db, dataverse, "Avery.Admin@sandbox.example")  # by e-mail, case-insensitively
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["fallback_owner"].value == ADMIN
    assert check.metadata["rows_without_owner"].value == 0
    table = _table(staged_db)
    assert table.get_column("owner_id").to_list() == [ADMIN] * table.height
    assert set(table.get_column("owner_type")) == {"systemuser"}
    assert _staged_owner_ids(staged_db) <= set(table.get_column("user_id"))


def test_a_team_guid_is_a_valid_fallback(staged_db, dataverse):
    result, _ = _owners(staged_db, dataverse, TEAM)
    (check,) = result.get_asset_check_evaluations()
    assert check.passed
    assert set(_table(staged_db).get_column("owner_type")) == {"team"}


def test_a_disabled_fallback_fails_the_asset_without_naming_an_email(staged_db, dataverse):
    result, text = _owners(staged_db, dataverse, "dana.departed@sandbox.example")
    assert not result.success
    assert f"fallback owner {DEPARTED} is disabled" in text
    assert "dana.departed" not in text
