"""``dataverse/schema`` against the emulator over HTTPS, with tokens from the Entra stand-in: the full schema plan
created, a second run changes nothing, a half-made schema completed, an over-limit plan refused up front."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import pytest
from dagster import DagsterInstance, materialize

from senseimig_dagster.assets.dataverse_schema import dataverse_schema
from senseimig_dagster.audit.schema_changes import CHANGES_TABLE
from senseimig_dagster.dataverse.metadata import DataverseMetadata
from senseimig_dagster.dataverse.schema_setup import SchemaSetup
from senseimig_dagster.mapping.schema_plan import default_plan
from senseimig_dagster.resources import DataverseResource, StoreResource
from senseimig_dagster.sandbox.dataverse_emulator import DataverseEmulator
from senseimig_dagster.sandbox.entra import EntraStandIn
from senseimig_dagster.sandbox.tls import TLSFiles
from senseimig_dagster_tests.support.environments import sandbox


@dataclass
class Environment:
    resource: DataverseResource
    emulator: DataverseEmulator

    def with_tier(self, tier: str) -> DataverseResource:
        r = self.resource
        return DataverseResource(environment_url=r.environment_url, authority_host=r.authority_host,
                                 tenant_id=r.tenant_id, ca_bundle=r.ca_bundle, dataverse_tier=tier)


@pytest.fixture
def environment(tmp_path: Path, tls_files: TLSFiles) -> Iterator[Environment]:
    # An unseeded emulator; the metadata API's lags short, but the waits are still exercised.
    with sandbox(tmp_path, tls=tls_files, seeded=False, key_delay=0.2, column_delay=0.1) as served:
        yield Environment(served.dataverse(), served.emulator)


def _run(env: Environment, db: Path, instance: DagsterInstance, resource: DataverseResource | None = None):
    return materialize([dataverse_schema], instance=instance, raise_on_error=False,
                       resources={"dataverse": resource or env.resource, "store": StoreResource(database=str(db))})


def _metadata(result) -> dict:
    (mat,) = result.asset_materializations_for_node("dataverse__schema")
    return {k: v.value for k, v in mat.metadata.items()}


def _schema_of(env: Environment) -> dict[str, tuple[set[str], list[str]]]:
    """Columns and key names per planned table, read back through the client."""
    out = {}
    with env.resource.client() as client:
        meta = DataverseMetadata(client)
        for table in env.resource.plan().tables:
            columns = set(meta.columns(table.logical_name))
            keys = [k["SchemaName"] for k in meta.keys(table.logical_name)]
            out[table.logical_name] = (columns, keys)
    return out


def test_creates_the_full_schema_then_a_second_run_changes_nothing(
        environment: Environment, tmp_path: Path) -> None:
    db = tmp_path / "senseimig.duckdb"
    with DagsterInstance.ephemeral() as instance:
        first = _run(environment, db, instance)
        assert first.success
        meta1 = _metadata(first)
        assert meta1["no_op"] is False and meta1["changed"] > 100
        schema = _schema_of(environment)
        for table in environment.resource.plan().tables:
            columns, keys = schema[table.logical_name]
            assert {c.logical_name for c in table.columns} | {lk.logical_name for lk in table.lookups} <= columns
            assert [k.schema_name for k in table.keys] == keys
        with environment.resource.client() as client:
            meta = DataverseMetadata(client)
            for table in environment.resource.plan().tables:
                for key in meta.keys(table.logical_name):
                    assert key["EntityKeyIndexStatus"] == "Active"
            assert meta.columns("contact")["smig_ssnlastfour"]["IsSecured"] is True
            permissions = list(client.query("fieldpermissions", ["attributelogicalname", "canread"],
                                            filter="entityname eq 'contact'"))
            assert [(p["attributelogicalname"], p["canread"]) for p in permissions] == [("smig_ssnlastfour", 4)]
        with duckdb.connect(str(db)) as conn:
            written = conn.execute(f"SELECT count(*) FROM {CHANGES_TABLE}").fetchone()[0]
        assert written == meta1["changed"]

        second = _run(environment, db, instance)
        assert second.success
        meta2 = _metadata(second)
        assert meta2["no_op"] is True and meta2["changed"] == 0
        assert "Nothing to do" in meta2["summary"]
        assert _schema_of(environment) == schema
        with duckdb.connect(str(db)) as conn:
            assert conn.execute(f"SELECT count(*) FROM {CHANGES_TABLE}").fetchone()[0] == written


def test_completes_a_half_made_schema_without_duplicates(environment: Environment, tmp_path: Path) -> None:
    full = environment.resource.plan()
    # A run that died half-way: the first custom tables exist, with only some of their columns and no keys.
    half = replace(full, tables=tuple(
        replace(t, columns=t.columns[: len(t.columns) // 2], lookups=(), keys=()) for t in full.tables[:7]))
    with environment.resource.client() as client:
        SchemaSetup(DataverseMetadata(client), half).run()
    with DagsterInstance.ephemeral() as instance:
        result = _run(environment, tmp_path / "senseimig.duckdb", instance)
    assert result.success
    created = [c for c in _metadata(result)["changes"] if c["kind"] == "table"]
    assert sorted(c["table"] for c in created) == sorted(
        t.logical_name for t in full.custom_tables if t not in half.tables and
        t.logical_name not in {h.logical_name for h in half.tables})
    schema = _schema_of(environment)
    for table in full.tables:
        columns, keys = schema[table.logical_name]
        assert {c.logical_name for c in table.columns} <= columns
        assert keys == [k.schema_name for k in table.keys]  # one key each, never two


def test_refuses_an_over_limit_professional_plan_before_creating_anything(
        environment: Environment, tmp_path: Path) -> None:
    with environment.resource.client() as client:
        meta = DataverseMetadata(client)
        for i in range(8):  # the customer's own custom tables: 8 + our 8 > 15
            meta.create_table(f"smig_Other{i}", f"Other {i}", f"smig_Other{i}Name", 100, "UserOwned", None)
    with DagsterInstance.ephemeral() as instance:
        result = _run(environment, tmp_path / "senseimig.duckdb", instance)
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
        assert "over the professional tier's limit of 15" in failure.message
        for table in default_plan().custom_tables:
            assert table.logical_name in failure.message
        with environment.resource.client() as client:
            meta = DataverseMetadata(client)
            assert all(meta.find_table(t.logical_name) is None for t in default_plan().custom_tables)
            assert meta.find_record("publishers", "uniquename eq 'senseimig'", ["publisherid"]) is None
            assert "smig_sourcesystemid" not in meta.columns("contact")
        # Enterprise has no limit: the same environment takes the plan.
        enterprise = environment.with_tier("enterprise")
        assert _run(environment, tmp_path / "senseimig.duckdb", instance, enterprise).success


def test_extra_application_users_each_get_a_client_with_their_own_token(
        environment: Environment, tmp_path: Path) -> None:
    from senseimig_dagster.resources import ApplicationUser

    r = environment.resource
    validator = environment.emulator.token_validator
    assert validator is not None
    entra: EntraStandIn = validator.__self__  # the stand-in whose token_info the emulator trusts
    entra.add_app("loader-2", "second-secret")
    resource = DataverseResource(environment_url=r.environment_url, authority_host=r.authority_host,
                                 tenant_id=r.tenant_id, ca_bundle=r.ca_bundle,
                                 extra_users=[ApplicationUser(client_id="loader-2", client_secret="second-secret")])
    clients = resource.clients()
    try:
        assert len(clients) == 2
        users = set()
        for client in clients:
            client.count("contacts")  # authenticated: 401 would raise
            users.add(client._http.auth.provider.client_id)  # type: ignore[union-attr]
        assert users == {"sandbox-client", "loader-2"}
    finally:
        for client in clients:
            client.close()
