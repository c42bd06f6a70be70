"""The cockpit's set-up, without servers: where a demo keeps what (the stand-ins' files beside the migration's folder,
never in it), which tenant it serves, the environment it hands the jobs, and the error when a demo is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from senseimig_dagster.cli import cockpit
from senseimig_dagster.cli.cockpit import DemoFolders
from senseimig_dagster.privacy.encryption import KEY_ENV


def test_the_stand_ins_files_are_beside_the_demo_folder_not_in_it(tmp_path: Path) -> None:
    folders = DemoFolders(tmp_path / "demo")
    folders.reset()

    assert folders.systems == tmp_path / "demo.systems"
    for remote in (folders.tenant, folders.day2, folders.export):
        assert remote.is_relative_to(folders.systems) and not remote.is_relative_to(folders.workdir)
    assert folders.dagster_home.is_relative_to(folders.workdir)


def test_the_cockpit_serves_the_tenant_the_demo_left_current(tmp_path: Path) -> None:
    folders = DemoFolders(tmp_path / "demo")
    folders.reset()
    assert folders.served_tenant() == folders.tenant  # before any delta window

    folders.record_served(folders.day2)

    assert folders.served_tenant() == folders.day2
    assert DemoFolders(tmp_path / "demo").served_tenant() == folders.day2  # read back by a later `senseimig ui`


def test_the_jobs_environment_points_at_the_demo_and_keeps_its_files_in_it(tmp_path: Path) -> None:
    folders = DemoFolders(tmp_path / "demo")
    folders.reset()
    ca = folders.systems / "dataverse.sqlite.tls" / "ca.pem"

    env = cockpit.environment(folders, "https://127.0.0.1:1234", ca)

    assert env["DATAVERSE_URL"] == env["AZURE_AUTHORITY_HOST"] == "https://127.0.0.1:1234"
    for name in ("SENSEIMIG_DUCKDB", "SENSEIMIG_AUDIT_DB", "SENSEIMIG_MAPPING", "DAGSTER_HOME"):
        assert Path(env[name]).resolve().is_relative_to(folders.workdir.resolve()), name
    assert env[KEY_ENV] and (folders.workdir / "store.key").stat().st_mode & 0o777 == 0o600


def test_ui_without_a_demo_names_each_missing_file_and_what_to_run(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    workdir = tmp_path / "nothing-here"

    assert cockpit.run_ui(workdir) == 1

    err = capsys.readouterr().err
    for missing in ("senseimig.duckdb", "store.key", "dataverse.sqlite", "manifest.json"):
        assert missing in err
    assert "make demo" in err
