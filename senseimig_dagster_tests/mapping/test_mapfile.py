"""The map file: YAML round trip, content hash and per-entry digests."""

from __future__ import annotations

from pathlib import Path

from senseimig_dagster.mapping import mapfile
from senseimig_dagster.mapping.confirm import confirm, confirmation_for
from senseimig_dagster.mapping.digest import digests, map_hash
from senseimig_dagster_tests.support.maps import DEFAULT_TEXT, edited

GENDER = "values: {Male: 1, Female: 2, Other: null, Unknown: null}"


def _load(text: str, tmp_path: Path):
    path = tmp_path / "m.yaml"
    path.write_text(text, encoding="utf-8")
    fmap, errors = mapfile.load(path)
    assert errors == [] and fmap is not None
    return fmap


def test_parse_gives_the_model_staging_reads(tmp_path: Path) -> None:
    fmap = _load(DEFAULT_TEXT, tmp_path)
    gender = fmap.objects["patient"].fields["gender"]
    assert (gender.transform, gender.targets, dict(gender.values)) == (
        "picklist", ("gendercode",), {"Male": 1, "Female": 2, "Other": None, "Unknown": None})
    assert fmap.objects["location"].fields["is_active"].values == (("true", 0), ("false", 1))  # YAML bools as text
    policy = fmap.objects["patient_policy"]
    assert policy.merge and policy.merge.slots == (("Primary", "primary"), ("Secondary", "secondary"))
    assert fmap.objects["communication"].tables == ("phonecall", "email")
    assert fmap.objects["patient"].constants == (("smig_contacttype", 727000000),)


def test_confirm_changes_only_the_confirmation_lines_and_keeps_comments(map_file: Path) -> None:
    text = DEFAULT_TEXT.replace("      title:", "      # reviewed with the practice manager\n      title:")
    map_file.write_text(text, encoding="utf-8")
    confirm(map_file, "Dana Reviewer")
    first = map_file.read_text(encoding="utf-8")
    assert first.startswith(text) and "# reviewed with the practice manager" in first
    assert "\nconfirmation:\n  by: Dana Reviewer\n" in first
    confirm(map_file, "Sam Second")  # re-confirming replaces the block, it does not add another
    second = map_file.read_text(encoding="utf-8")
    assert second.startswith(text) and second.count("confirmation:") == 1 and "Dana" not in second
    fmap, errors = mapfile.load(map_file)
    assert errors == [] and fmap and fmap.confirmation and fmap.confirmation.by == "Sam Second"
    assert fmap.confirmation.digests == digests(fmap) and fmap.confirmation.hash == map_hash(fmap)


def test_confirmation_in_the_middle_of_the_file_is_replaced_in_place(map_file: Path, tmp_path: Path) -> None:
    fmap = _load(DEFAULT_TEXT, tmp_path)
    text = DEFAULT_TEXT.replace("version: 1\n", "version: 1\nconfirmation: {by: x, at: y, hash: z}\n# keep me\n")
    map_file.write_text(text, encoding="utf-8")
    mapfile.write_confirmation(map_file, confirmation_for(fmap, "Dana"))
    out = map_file.read_text(encoding="utf-8")
    assert "hash: z" not in out and "# keep me\nprefix: smig" in out and out.endswith(DEFAULT_TEXT.split("prefix: smig\n")[1])


def test_hash_is_stable_and_ignores_review_metadata(tmp_path: Path) -> None:
    base = _load(DEFAULT_TEXT, tmp_path)
    assert map_hash(base) == map_hash(_load(DEFAULT_TEXT, tmp_path))
    noted, _ = edited("{target: firstname, transform: direct}\n      last_name:                {",
                      "{target: firstname, transform: direct, confidence: 0.41, reasons: [\"name: first_name\"], "
                      "status: proposed}  # comment\n      last_name:                {")
    reordered, _ = edited(GENDER, "values: {Female: 2, Male: 1, Unknown: null, Other: null}")
    for text in (noted, reordered, DEFAULT_TEXT.replace(":                {", ": {")):
        assert map_hash(_load(text, tmp_path)) == map_hash(base)


def test_hash_and_the_field_digest_change_with_what_is_written(tmp_path: Path) -> None:
    base = _load(DEFAULT_TEXT, tmp_path)
    changes = {
        "patient.nickname": edited("{target: nickname, transform: direct}\n      title",
                                   "{target: description, transform: direct}\n      title")[0],
        "patient.gender": edited(GENDER, "values: {Male: 1, Female: 2, Other: 2, Unknown: null}")[0],
        "patient": edited("constants: {smig_contacttype: 727000000}", "constants: {smig_contacttype: 727000001}")[0],
        "patient.title": edited("{target: salutation, transform: direct}",
                                "{target: salutation, transform: direct, status: rejected}")[0],
    }
    for key, text in changes.items():
        changed = _load(text, tmp_path)
        assert map_hash(changed) != map_hash(base), key
        diff = {k for k, v in digests(changed).items() if digests(base)[k] != v}
        assert diff == {key}
