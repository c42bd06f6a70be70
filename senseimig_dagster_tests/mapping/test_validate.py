"""Validation: every kind of error names the file, the line and a fix; all errors are collected."""

from __future__ import annotations

from pathlib import Path

import pytest

from senseimig_dagster.mapping import MapInvalid, load_valid, mapfile, validate
from senseimig_dagster.objects import REGISTRY
from senseimig_dagster_tests.support.maps import DEFAULT_TEXT, edited
from senseimig_dagster_tests.support.standard_copy import render


def _errors(text: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "mapping.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MapInvalid) as raised:
        load_valid(path)
    return [str(e) for e in raised.value.errors]


def _one(old: str, new: str, tmp_path: Path, *needles: str) -> str:
    """The error at the edited line; asserts it names the file and line, says what, and carries a fix."""
    text, line = edited(old, new)
    errors = _errors(text, tmp_path)
    at = [e for e in errors if e.startswith(f"{tmp_path / 'mapping.yaml'}:{line}: ")]
    assert at, errors
    hit = [e for e in at if all(n in e for n in needles)]
    assert hit, at
    assert "(fix: " in hit[0]
    return hit[0]


def test_the_default_map_validates_and_covers_every_registry_field() -> None:
    fmap = load_valid(Path(__file__).parents[2] / "senseimig_dagster/mapping/default_map.yaml")
    assert set(fmap.objects) == {o.name for o in REGISTRY}
    for obj in REGISTRY:
        fields = fmap.objects[obj.name].fields
        assert set(fields) == set(obj.field_names), obj.name
        assert all(f.reason for f in fields.values() if f.transform == "skip"), obj.name
    assert fmap.objects["user"].mode == "match"
    assert fmap.objects["patient_policy"].merge and fmap.objects["communication"].route


def test_the_standard_column_copy_matches_the_emulators_catalog() -> None:
    shipped = Path(__file__).parents[2] / "senseimig_dagster/dataverse/standard_tables.json"
    assert shipped.read_text(encoding="utf-8") == render(), \
        "refresh: python -m senseimig_dagster_tests.support.standard_copy"


def test_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    text, line = edited("      nickname:                 {target: nickname, transform: direct}",
                        "      nickname:                 {target: nickname, transform: direct")
    errors = _errors(text, tmp_path)
    assert len(errors) == 1 and "YAML syntax error" in errors[0]
    assert errors[0].startswith(f"{tmp_path / 'mapping.yaml'}:")
    assert line <= int(errors[0].split(":")[1]) <= line + 2  # the parser notices at or just after the line


@pytest.mark.parametrize(("old", "new", "needles"), [
    ("nickname:                 {target: nickname, transform: direct}",
     "nickname:                 {target: nickname, transform: direct, confidnce: 0.9}",
     ("unknown key 'confidnce'", "confidence")),
    ("    constants: {smig_contacttype: 727000000}  # Patient\n",
     "    targte: x\n    constants: {smig_contacttype: 727000000}  # Patient\n", ("unknown key 'targte'",)),
    ("  patient:\n    target: contact\n", "  patients:\n    target: contact\n", ("unknown object 'patients'",)),
    ("      nickname:                 {", "      nick_name:                {", ("unknown field 'nick_name'",)),
    ("  payer:\n    target: account\n", "  payer:\n    target: acount\n", ("unknown target table 'acount'",)),
    ("nickname:                 {target: nickname,", "nickname:                 {target: nick_name,",
     ("column 'nick_name' does not exist on contact",)),
    ("{target: birthdate, transform: date}", "{target: donotphone, transform: date}",
     ("date from a date field into donotphone (Boolean)",)),
    ("{target: smig_operatory, transform: direct}", "{target: smig_durationmin, transform: direct}",
     ("a str field cannot be written to smig_durationmin (Integer)",)),
    ("nickname:                 {target: nickname,", "nickname:                 {target: firstname,",
     ("contact.firstname, already written by patient.first_name",)),
    ("Male: 1, Female: 2, Other: null", "Male: 1, Female: 3, Other: null",
     ("'Female' maps to option 3", "use one of 1, 2")),
    ("{target: gendercode, transform: picklist,", "{target: gendercode, transform: direct,",
     ("choice (Picklist) column", "transform: picklist")),
    ("{target: smig_TreatmentPlanId, transform: lookup", "{target: smig_treatmentplanid, transform: lookup",
     ("no navigation property 'smig_treatmentplanid'", "write smig_TreatmentPlanId")),
    ("{target: smig_TreatmentPlanId, transform: lookup", "{target: smig_PatientId, transform: lookup",
     ("smig_PatientId points at contact but treatment_plan is written to smig_treatmentplan",)),
    ("tax_id:     {transform: skip, reason: \"no tax id column on account in the schema plan\"}",
     "tax_id:     {target: primarycontactid, transform: lookup, lookup: patient}",
     ("lookup to patient, which loads after organization",)),
    ("{target: smig_sourcesystemid, transform: direct}\n      patient_number",
     "{target: smig_sourcesystemid, transform: lookup, lookup: patient}\n      patient_number",
     ("no navigation property 'smig_sourcesystemid'",)),
    ("{target: smig_patientnumber, transform: direct}", "{target: parentcustomerid_account, transform: direct}",
     ("is a lookup, not a value column", "transform: lookup")),
    ("{transform: skip, reason: \"Sensei schedule colour; no meaning in Dynamics\"}", "{transform: skip}",
     ("skipped without a reason",)),
    ("{target: actualstart, transform: datetime, time_zone: utc}", "{target: actualstart, transform: datetime}",
     ("datetime without time_zone", "time_zone: utc")),
    ("constants: {smig_contacttype: 727000000}", "constants: {smig_contacttype: 5}",
     ("constant 5 does not fit smig_contacttype", "727000000")),
    ("{target: \"smig_{slot}subscriberid\", transform: direct}", "{target: \"smig_{slot}subscriber\", transform: direct}",
     ("column 'smig_primarysubscriber' does not exist on contact",)),
    ("{target: \"regardingobjectid_contact_{table}\"", "{target: \"regardingobjectid_contact_phonecall\"",
     ("email has no navigation property 'regardingobjectid_contact_phonecall'",)),
])
def test_each_error_names_file_line_and_fix(tmp_path: Path, old: str, new: str, needles: tuple[str, ...]) -> None:
    _one(old, new, tmp_path, *needles)


def test_a_field_left_out_is_reported_at_its_object(tmp_path: Path) -> None:
    text, _ = edited("      first_visit_date:         {transform: skip, reason: \"derived by Sensei from appointments, which are "
                     "migrated\"}\n", "")
    _, line = edited("  patient:\n", "")
    errors = _errors(text, tmp_path)
    assert [e for e in errors if e.startswith(f"{tmp_path / 'mapping.yaml'}:{line}: patient.first_visit_date is neither")]


def test_self_references_and_shared_tables_are_fine_but_every_error_is_collected(tmp_path: Path) -> None:
    fmap, errors = mapfile.load(Path(__file__).parents[2] / "senseimig_dagster/mapping/default_map.yaml")
    assert fmap and errors == [] and validate(fmap) == []
    assert fmap.objects["claim"].fields["replaces_claim_id"].lookup == "claim"  # self-reference, allowed
    text = DEFAULT_TEXT
    for old, new in [("nickname:                 {target: nickname,", "nickname:                 {target: nick_name,"),
                     ("Male: 1, Female: 2", "Male: 1, Female: 9"),
                     ("{target: smig_operatory, transform: direct}", "{target: smig_operatory, transform: direkt}")]:
        text, _ = edited(old, new, text)
    assert len(_errors(text, tmp_path)) == 3


def test_errors_carry_no_row_values_only_names(tmp_path: Path) -> None:
    message = _one("Male: 1, Female: 2, Other: null", "Male: 1, Female: 3, Other: null", tmp_path, "gendercode")
    assert "patient.gender" in message  # names and option codes; the map holds no patient data to leak
