"""Owner resolution against the Dataverse emulator's seed users (enabled, disabled, non-interactive, application)
over the in-process transport, with and without a fallback owner, and the blocking check that names users by id."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from senseimig_dagster.assets.owners import owner_check_result, owner_check_spec
from senseimig_dagster.dataverse.client import DataverseClient
from senseimig_dagster.staging.owners import (
    CHECK_NAME,
    FallbackOwner,
    FallbackOwnerInvalid,
    fetch_systemusers,
    owner_problems,
    resolve_fallback,
    resolve_owners,
    with_owners,
)
from senseimig_dagster_tests.support.constants import SEED_ADMIN as ADMIN
from senseimig_dagster_tests.support.constants import SEED_APP_USER as APP
from senseimig_dagster_tests.support.constants import SEED_DEPARTED as DEPARTED
from senseimig_dagster_tests.support.constants import SEED_HYGIENIST as HYGIENIST
from senseimig_dagster_tests.support.constants import SEED_INTEGRATION as INTEGRATION
from senseimig_dagster_tests.support.constants import SEED_TEAM as TEAM
from senseimig_dagster_tests.support.environments import emulator, in_process_client

# Sensei users: e-mail case differs from Dataverse's; one matched only through the UPN; one unknown; one without.
USERS = pl.DataFrame({
    "id": ["u-admin", "u-hyg", "u-departed", "u-integration", "u-app", "u-stranger", "u-noemail", "u-upn"],
    "email": ["Avery.Admin@SANDBOX.example", " harper.hygienist@sandbox.example ", "dana.departed@sandbox.example",
              "integration@sandbox.example", "sandbox-client@sandbox.example", "who@elsewhere.example", None,
              "h.upn@sandbox.example"],
    "is_active": [True, True, False, True, True, True, True, True],
})


@pytest.fixture
def client(tmp_path: Path) -> Iterator[DataverseClient]:
    with emulator(tmp_path / "dv.sqlite", key_delay=None, column_delay=None) as app, in_process_client(app) as c:
        yield c


@pytest.fixture
def systemusers(client: DataverseClient) -> pl.DataFrame:
    users = fetch_systemusers(client)
    # A user whose e-mail differs from the UPN: only the domainname matches the Sensei user u-upn.
    return pl.concat([users, pl.DataFrame([{"systemuserid": "5eed0000-0000-4000-8000-000000000199",
                                            "internalemailaddress": "someone.else@sandbox.example",
                                            "domainname": "H.UPN@sandbox.example", "isdisabled": False,
                                            "accessmode": 0, "applicationid": None, "fullname": "Upn Only"}],
                                          schema=users.schema)])


def outcomes(resolution) -> dict[str, tuple[str, str | None]]:
    return {u: (o, owner) for u, o, owner in resolution.owners.select("user_id", "outcome", "owner_id").iter_rows()}


def test_fetch_systemusers_reads_the_seed(client: DataverseClient):
    users = fetch_systemusers(client)
    assert set(users.get_column("systemuserid")) >= {ADMIN, HYGIENIST, DEPARTED, INTEGRATION, APP}
    app = users.filter(pl.col("systemuserid") == APP).row(0, named=True)
    assert app["applicationid"] and app["accessmode"] == 4
    assert users.filter(pl.col("systemuserid") == DEPARTED).get_column("isdisabled").to_list() == [True]


def test_classification_without_fallback(systemusers: pl.DataFrame):
    got = outcomes(resolve_owners(USERS, systemusers, None))
    assert got == {
        "u-admin": ("matched", ADMIN), "u-hyg": ("matched", HYGIENIST), "u-departed": ("disabled", None),
        "u-integration": ("non_interactive", None), "u-app": ("application", None),
        "u-stranger": ("missing", None), "u-noemail": ("missing", None),
        "u-upn": ("matched", "5eed0000-0000-4000-8000-000000000199"),
    }


def test_fallback_owns_problem_users_only(systemusers: pl.DataFrame):
    resolution = resolve_owners(USERS, systemusers, "harper.hygienist@SANDBOX.example")
    got = outcomes(resolution)
    assert got["u-admin"] == ("matched", ADMIN)
    assert {u: owner for u, (o, owner) in got.items() if o != "matched"} == dict.fromkeys(
        ["u-departed", "u-integration", "u-app", "u-stranger", "u-noemail"], HYGIENIST)
    assert set(resolution.report.get_column("user_id")) == {"u-departed", "u-integration", "u-app", "u-stranger",
                                                           "u-noemail"}
    assert "email" not in resolution.owners.columns and "fullname" not in resolution.owners.columns


def test_fallback_must_be_an_enabled_interactive_user_or_a_team(client: DataverseClient,
                                                                systemusers: pl.DataFrame):
    assert resolve_fallback(ADMIN.upper(), systemusers) == FallbackOwner(ADMIN, "systemuser")
    for bad, why in ((DEPARTED, "disabled"), ("integration@sandbox.example", "non_interactive"),
                     (APP, "application")):
        with pytest.raises(FallbackOwnerInvalid, match=why):
            resolve_fallback(bad, systemusers)
    with pytest.raises(FallbackOwnerInvalid) as missing:
        resolve_fallback("nobody@sandbox.example", systemusers)
    assert "nobody" not in str(missing.value)  # no e-mail in messages
    assert resolve_fallback(TEAM, systemusers, client) == FallbackOwner(TEAM, "team")
    resolution = resolve_owners(USERS, systemusers, resolve_fallback(TEAM, systemusers, client))
    assert outcomes(resolution)["u-departed"] == ("disabled", TEAM)
    assert resolution.owners.filter(pl.col("user_id") == "u-departed").get_column("owner_type").item() == "team"


def staged_activities() -> pl.DataFrame:
    return pl.DataFrame({"_source_id": [f"c-{i}" for i in range(7)],
                         "_owner_user_id": ["u-admin", "u-departed", "u-departed", "u-app", None, "u-ghost",
                                            "u-hyg"]})


def test_check_fails_without_fallback_and_names_users_by_id(systemusers: pl.DataFrame):
    spec = owner_check_spec(["staging", "communication"])
    assert spec.blocking and spec.name == CHECK_NAME
    resolution = resolve_owners(USERS, systemusers, None)
    problems = owner_problems(staged_activities(), resolution)
    assert problems.rows() == [("u-app", "application", 1), ("u-departed", "disabled", 2),
                               ("u-ghost", "unknown_user", 1)]
    result = owner_check_result(["staging", "communication"], staged_activities(), resolution)
    assert not result.passed and result.severity.value == "ERROR"
    assert "u-departed (disabled)" in result.description and "u-ghost (unknown_user)" in result.description
    assert result.metadata["rows_without_owner"].value == 4
    text = str({k: getattr(v, "value", v) for k, v in result.metadata.items()}) + result.description
    assert "@" not in text and "Departed" not in text  # no e-mails or names in metadata


def test_check_passes_with_fallback_but_still_reports(systemusers: pl.DataFrame):
    resolution = resolve_owners(USERS, systemusers, ADMIN)
    frame = with_owners(staged_activities(), resolution)
    assert frame.get_column("_owner_id").to_list() == [ADMIN, ADMIN, ADMIN, ADMIN, None, ADMIN, HYGIENIST]
    result = owner_check_result("staging/communication", staged_activities(), resolution)
    assert result.passed
    assert "u-departed" in result.metadata["problem_users"].value  # reported before any write
    assert result.metadata["outcome_counts"].value["disabled"] == 1
