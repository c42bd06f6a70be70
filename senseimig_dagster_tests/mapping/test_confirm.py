"""``senseimig mapping validate|confirm|show`` and the ``confirm_mapping`` job (the UI path)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import materialize

from senseimig_dagster.assets.mapping import confirm_mapping, mapping_state
from senseimig_dagster.cli import main
from senseimig_dagster.mapping import gate_problems, mapfile
from senseimig_dagster.resources import MappingResource
from senseimig_dagster_tests.support.maps import DEFAULT_TEXT, edited

PROPOSED = ("{target: salutation, transform: direct}", "{target: salutation, transform: direct, status: proposed}")


def test_cli_validate_reports_every_error_with_its_line(map_file: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["mapping", "validate", str(map_file)]) == 0
    text, line = edited("Male: 1, Female: 2", "Male: 1, Female: 4")
    map_file.write_text(text, encoding="utf-8")
    assert main(["mapping", "validate", str(map_file)]) == 1
    assert f"{map_file}:{line}: patient.gender: value 'Female' maps to option 4" in capsys.readouterr().err


def test_cli_confirm_refuses_proposed_fields_and_lists_them(map_file: Path, capsys: pytest.CaptureFixture) -> None:
    text, line = edited(*PROPOSED)
    map_file.write_text(text, encoding="utf-8")
    assert main(["mapping", "confirm", str(map_file), "--by", "Dana"]) == 1
    assert f"{map_file}:{line}: patient.title" in capsys.readouterr().err
    assert map_file.read_text(encoding="utf-8") == text  # nothing written


def test_cli_confirm_refuses_an_invalid_map(map_file: Path, capsys: pytest.CaptureFixture) -> None:
    text, _ = edited("{target: birthdate, transform: date}", "{target: birthdate, transform: direct}")
    map_file.write_text(text, encoding="utf-8")
    assert main(["mapping", "confirm", str(map_file), "--by", "Dana"]) == 1
    assert "use transform: date or datetime" in capsys.readouterr().err
    assert "confirmation" not in map_file.read_text(encoding="utf-8")


def test_cli_confirm_then_show_opens_the_gate(map_file: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["mapping", "show", str(map_file)]) == 2
    assert main(["mapping", "confirm", str(map_file), "--by", "Dana Reviewer"]) == 0
    fmap, _ = mapfile.load(map_file)
    assert fmap and fmap.confirmation and fmap.confirmation.by == "Dana Reviewer"
    assert fmap.confirmation.at.endswith("Z") and fmap.confirmation.hash.startswith("sha256:")
    assert main(["mapping", "show", str(map_file)]) == 0
    assert "gate: open" in capsys.readouterr().out


def test_cli_show_default_prints_the_shipped_map(capsys: pytest.CaptureFixture) -> None:
    assert main(["mapping", "show", "--default"]) == 0
    assert capsys.readouterr().out == DEFAULT_TEXT


def test_confirm_mapping_job_confirms_and_fails_on_proposed_fields(map_file: Path) -> None:
    resources = {"mapping": MappingResource(path=str(map_file))}
    config = {"ops": {"confirm_mapping_op": {"config": {"by": "Dana"}}}}
    text, _ = edited(*PROPOSED)
    map_file.write_text(text, encoding="utf-8")
    failed = confirm_mapping.execute_in_process(run_config=config, resources=resources, raise_on_error=False)
    assert not failed.success and gate_problems(map_file)
    map_file.write_text(DEFAULT_TEXT, encoding="utf-8")
    done = confirm_mapping.execute_in_process(run_config=config, resources=resources)
    assert done.success and gate_problems(map_file) == []


def test_mapping_state_asset_shows_the_gate(map_file: Path) -> None:
    result = materialize([mapping_state], resources={"mapping": MappingResource(path=str(map_file))})
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["gate_open"].value is False and "| patient | contact | upsert |" in metadata["objects"].value
