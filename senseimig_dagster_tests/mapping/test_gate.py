"""The confirmation gate: problems named per object and field; in Dagster, no HTTP write reaches the emulator
while the map is unconfirmed or changed since confirmation."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetKey, asset, materialize

from senseimig_dagster.assets.gate import enforce_gate, gate_check_for, gate_check_spec
from senseimig_dagster.dataverse.client import DataverseClient
from senseimig_dagster.mapping import check_confirmed, confirm, gate_problems, mapfile
from senseimig_dagster.mapping.gate import GATE_CHECK_NAME
from senseimig_dagster.resources import MappingResource
from senseimig_dagster.sandbox.http_server import ThreadingWSGIServer, run_in_thread
from senseimig_dagster_tests.support.environments import emulator
from senseimig_dagster_tests.support.maps import DEFAULT_TEXT

STAGED = AssetKey(["staging", "gate_test"])


def test_unconfirmed_map_names_the_map_and_every_field_still_proposed(map_file: Path) -> None:
    text = DEFAULT_TEXT.replace("{target: salutation, transform: direct}",
                                "{target: salutation, transform: direct, status: proposed}")
    map_file.write_text(text, encoding="utf-8")
    fmap, _ = mapfile.load(map_file)
    problems = check_confirmed(fmap)
    assert "not confirmed" in str(problems[0]) and problems[0].object is None
    assert [(p.object, p.field, p.problem) for p in problems[1:]] == [("patient", "title", "still proposed")]


def test_changes_after_confirmation_are_named_per_object_and_field(map_file: Path) -> None:
    confirm(map_file, "Dana")
    assert gate_problems(map_file) == []
    text = map_file.read_text(encoding="utf-8")
    text = text.replace("{target: salutation, transform: direct}", "{target: description, transform: direct}")
    text = text.replace("constants: {smig_isinsurancecarrier: true}", "constants: {smig_isinsurancecarrier: false}")
    text = text.replace("{target: nickname, transform: direct}\n      title",  # review notes are not a change
                        "{target: nickname, transform: direct, confidence: 0.5}\n      title")
    map_file.write_text(text.replace("medical_alerts:           {target: description, transform: direct}",
                                     "medical_alerts:           {transform: skip, reason: later}"), encoding="utf-8")
    named = {(p.object, p.field) for p in gate_problems(map_file)}
    assert named == {("patient", "title"), ("patient", "medical_alerts"), ("payer", None)}
    assert all("since confirmed by Dana" in str(p) for p in gate_problems(map_file))


def test_an_invalid_or_missing_map_keeps_the_gate_closed(tmp_path: Path) -> None:
    assert "no field map" in str(gate_problems(tmp_path / "absent.yaml")[0])
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEFAULT_TEXT.replace("Male: 1, Female: 2", "Male: 1, Female: 7"), encoding="utf-8")
    assert "invalid:" in str(gate_problems(bad)[0]) and "gendercode" in str(gate_problems(bad)[0])


def test_the_gate_parses_a_map_once_per_version_and_reads_an_edited_map_again(
        map_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every writer step asks the gate: the parsed answer is kept until the file changes (path, inode, mtime, size)."""
    confirm(map_file, "Dana")
    parses: list[str] = []
    load = mapfile.load
    monkeypatch.setattr(mapfile, "load", lambda path: (parses.append(str(path)), load(path))[1])
    assert gate_problems(map_file) == [] and gate_problems(map_file) == [] and len(parses) == 1
    text = map_file.read_text(encoding="utf-8")
    same_size = text.replace("smig_isinsurancecarrier: true", "smig_isinsurancecarrier: True")
    assert len(same_size) == len(text) and same_size != text
    stat = map_file.stat()
    map_file.write_text(same_size, encoding="utf-8")  # edited in place, same size: only the time tells
    os.utime(map_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert len(parses) == 1 and gate_problems(map_file) == [] and len(parses) == 2  # YAML's True: same map
    map_file.write_text(text.replace("constants: {smig_isinsurancecarrier: true}",
                                     "constants: {smig_isinsurancecarrier: false}"), encoding="utf-8")
    assert {(p.object, p.field) for p in gate_problems(map_file)} == {("payer", None)} and len(parses) == 3
    confirm(map_file, "Dana")  # re-confirmed: the confirmation block rewrites the file, the gate opens
    assert gate_problems(map_file) == [] and len(parses) >= 4


# -- Dagster: a blocking check in front of an HTTP write ----------------------------------------------------------
class _Counting:
    """WSGI wrapper counting the requests that reach the emulator, by method."""

    def __init__(self, app):
        self.app, self.seen = app, []

    def __call__(self, environ, start_response):
        self.seen.append(environ["REQUEST_METHOD"])
        return self.app(environ, start_response)


@pytest.fixture
def emulator_url(tmp_path: Path) -> Iterator[tuple[str, _Counting]]:
    with emulator(tmp_path / "dv.sqlite", seeded=False, key_delay=None, column_delay=None) as app:
        counting = _Counting(app)
        with run_in_thread(ThreadingWSGIServer(("127.0.0.1", 0)), counting, "dv-gate-test") as url:
            yield url, counting


def _write_contact(url: str) -> None:
    with DataverseClient(url, None) as client:
        client.create("contacts", {"lastname": "Gate"})


def _defs(url: str):
    @asset(key=STAGED)
    def staged() -> int:
        return 1

    @asset(key=["dataverse", "gate_test"], deps=[STAGED])
    def written() -> None:
        _write_contact(url)

    return [staged, written, gate_check_for(STAGED)]


@pytest.mark.parametrize("confirmed", [False, True])
def test_blocking_check_stops_the_downstream_write(map_file: Path, emulator_url, confirmed: bool) -> None:
    url, counting = emulator_url
    if confirmed:
        confirm(map_file, "Dana")
    result = materialize(_defs(url), resources={"mapping": MappingResource(path=str(map_file))},
                         raise_on_error=False)
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == GATE_CHECK_NAME and evaluation.passed is confirmed
    written = [e.asset_key for e in result.get_asset_materialization_events()]
    if confirmed:
        assert AssetKey(["dataverse", "gate_test"]) in written and counting.seen.count("POST") == 1
    else:
        assert AssetKey(["dataverse", "gate_test"]) not in written and not result.success
        assert counting.seen == []  # not a single request, not even a read


def test_an_asset_that_writes_itself_checks_first_and_raises_before_writing(map_file: Path, emulator_url) -> None:
    url, counting = emulator_url
    key = AssetKey(["dataverse", "self_gated"])

    @asset(key=key, check_specs=[gate_check_spec(key)])
    def self_gated(mapping: MappingResource):
        yield enforce_gate(mapping.path, key)
        _write_contact(url)
        yield from ()

    result = materialize([self_gated], resources={"mapping": MappingResource(path=str(map_file))},
                         raise_on_error=False)
    assert not result.success and counting.seen == []
    confirm(map_file, "Dana")
    result = materialize([self_gated], resources={"mapping": MappingResource(path=str(map_file))},
                         raise_on_error=False)
    assert counting.seen.count("POST") == 1
