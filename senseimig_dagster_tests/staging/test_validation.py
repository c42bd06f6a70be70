"""Pandera models of staged tables: each rule fails on a frame built to break it and passes on a good one.

Frames are generated from the rules themselves (so a map or plan change does not break the fixtures), and the
standard tables' limits come from the emulator's copy of Microsoft's metadata (firstname 50, lastname
ApplicationRequired), the way a live environment's ``DataverseMetadata.columns`` would supply them.
"""

from __future__ import annotations

import datetime as dt
import time
from functools import cache

import polars as pl
import pytest

from senseimig_dagster.assets.staging import pandera_check_result, pandera_check_specs
from senseimig_dagster.dataverse.standard_tables import standard_tables
from senseimig_dagster.mapping import default_map_path, load_valid
from senseimig_dagster.mapping.schema_plan import default_plan
from senseimig_dagster.sandbox.dataverse_emulator import Catalog
from senseimig_dagster.staging.quarantine import MASK
from senseimig_dagster.staging.validation import (
    CHECK_NAME,
    ColumnRule,
    column_rules,
    facts_from_attributes,
    schema_for,
    validate_staged,
)

PHI_NAME = "Zelda-Quintessa"  # must never reach a report or metadata


@cache
def fmap():
    return load_valid(default_map_path())


@cache
def plan():
    return default_plan()


@cache
def standard() -> dict[str, dict[str, dict]]:
    catalog = Catalog.load()
    return {t: {c.logical_name: {"kind": c.type, "max_length": c.max_length, "required": c.required, "min": c.min,
                                 "max": c.max} for c in catalog.tables[t].columns.values()} for t in standard_tables()}


PARENT_IDS = {obj: pl.Series([f"{obj}-{i}" for i in range(3)]) for obj in
              ("organization", "location", "provider", "payer", "patient", "appointment", "treatment_plan", "claim")}


def _value(rule: ColumnRule, i: int, n: int) -> pl.Series:
    if rule.name == "_source_id" or rule.unique:
        return pl.Series([f"src-{k}" for k in range(i, i + n)])
    if rule.parent is not None:
        return pl.Series([f"{rule.parent}-{k % 3}" for k in range(n)]) if rule.parent in PARENT_IDS \
            else pl.Series([None] * n, dtype=pl.String)  # a self-reference: empty is valid
    if rule.options:
        first = rule.options[0]
        return pl.Series([bool(first) if rule.kind == "Boolean" else first] * n)
    if rule.kind == "Boolean":
        return pl.Series([True] * n)
    if rule.kind in ("Integer", "Decimal"):
        return pl.Series([1] * n) if rule.kind == "Integer" else pl.Series([12.5] * n)
    if rule.kind in ("DateOnly", "DateTime"):
        return pl.Series([dt.date(2020, 1, 2)] * n)
    return pl.Series(["ok"] * n)


def good_frame(object_name: str, n: int = 4, table: str | None = None) -> pl.DataFrame:
    rules = column_rules(object_name, fmap(), plan(), table=table, standard=standard())
    frame = pl.DataFrame({r.name: _value(r, 0, n) for r in rules})
    if "smig_sourcesystemid" in frame.columns:
        frame = frame.with_columns(pl.col("smig_sourcesystemid").alias("_source_id"))
    return frame


def run(object_name: str, frame: pl.DataFrame, table: str | None = None, parents=None):
    schema = schema_for(object_name, fmap(), plan(), table=table, standard=standard())
    parents = PARENT_IDS if parents is None else parents
    return validate_staged(frame, schema, parents)


def set_row(frame: pl.DataFrame, column: str, row: int, value) -> pl.DataFrame:
    values = frame.get_column(column).to_list()
    values[row] = value
    return frame.with_columns(pl.Series(column, values, dtype=frame.schema[column] if value is not None
                                        or frame.schema[column] != pl.Null else pl.String, strict=False))


# -- generated, never typed by hand --------------------------------------------------------------------------------
def test_rules_come_from_plan_standard_copy_and_map():
    rules = {r.name: r for r in column_rules("patient", fmap(), plan(), standard=standard())}
    assert rules["firstname"].max_length == 50 and rules["lastname"].required
    assert rules["smig_sourcesystemid"].unique and rules["smig_sourcesystemid"].max_length == 100
    assert rules["gendercode"].options and set(rules["gendercode"].options) >= {1, 2}
    assert rules["smig_contacttype"].options[0] == 727000000  # a map constant, typed by the plan
    assert rules["parentcustomerid_account"].parent == "location"
    assert rules["smig_primaryplanname"].source == ("insurance_plan", "plan_name")  # merged via patient_policy
    appointment = {r.name: r for r in column_rules("appointment", fmap(), plan())}
    assert (appointment["smig_durationmin"].minimum, appointment["smig_durationmin"].maximum) == (-2**31, 2**31 - 1)


def test_default_limits_agree_with_microsofts_metadata():
    """Without ``standard=``, the shipped limits apply, and they are Microsoft's (the emulator's catalog)."""
    shipped = {r.name: r for r in column_rules("patient", fmap(), plan())}
    catalog = standard()["contact"]
    assert shipped["firstname"].max_length == catalog["firstname"]["max_length"] == 50
    assert shipped["lastname"].required and catalog["lastname"]["required"] == "ApplicationRequired"
    for name, rule in shipped.items():
        if rule.max_length is not None and name in catalog:
            assert rule.max_length == catalog[name]["max_length"], name


def test_facts_from_live_attribute_metadata():
    facts = facts_from_attributes({"LastName": {"AttributeType": "String", "MaxLength": 50,
                                                "RequiredLevel": {"Value": "ApplicationRequired"}}})
    assert facts == {"lastname": {"kind": "String", "max_length": 50, "required": "ApplicationRequired",
                                  "min": None, "max": None}}


def test_routed_object_needs_a_table_and_expands_it():
    with pytest.raises(ValueError, match="routed"):
        column_rules("communication", fmap(), plan())
    names = {r.name for r in column_rules("communication", fmap(), plan(), table="email")}
    assert "regardingobjectid_contact_email" in names and "ownerid_email" in names


def test_merged_and_match_objects_have_no_staged_table():
    for name in ("patient_policy", "user"):
        with pytest.raises(ValueError, match="no staged table"):
            column_rules(name, fmap(), plan())


# -- each rule: passes good, fails bad ----------------------------------------------------------------------------
def test_good_frames_pass():
    for obj in ("patient", "appointment", "ledger_transaction", "location"):
        report = run(obj, good_frame(obj))
        assert report.passed, (obj, report.failure_counts)
    assert run("communication", good_frame("communication", table="email"), table="email").passed


def test_too_long_counts_utf16_units():
    frame = good_frame("patient")
    ok = set_row(frame, "firstname", 0, "😀" * 25)  # 25 characters, 50 UTF-16 units: fits exactly
    assert run("patient", ok).passed
    bad = set_row(frame, "firstname", 0, "😀" * 26)  # 26 characters (a char count would pass), 52 units
    report = run("patient", bad)
    assert report.failure_counts == {"firstname.max_length": 1}
    custom = set_row(good_frame("appointment"), "smig_providername", 2, "x" * 201)  # plan: String 200
    assert run("appointment", custom).failure_counts == {"smig_providername.max_length": 1}


def test_bad_option_value():
    frame = set_row(good_frame("patient"), "gendercode", 1, 99)
    frame = set_row(frame, "smig_contacttype", 3, 727000099)
    assert run("patient", frame).failure_counts == {"gendercode.picklist": 1, "smig_contacttype.picklist": 1}


def test_out_of_range_numbers():
    frame = set_row(good_frame("appointment"), "smig_durationmin", 0, 2**31)
    assert run("appointment", frame).failure_counts == {"smig_durationmin.range": 1}
    ledger = set_row(good_frame("ledger_transaction"), "smig_amount", 1, 1e12)
    assert run("ledger_transaction", ledger).failure_counts == {"smig_amount.range": 1}


def test_duplicate_alternate_key():
    frame = set_row(good_frame("appointment"), "smig_sourcesystemid", 3, "src-0")
    report = run("appointment", frame)
    assert report.failure_counts == {"smig_sourcesystemid.unique": 2}  # both copies named
    assert sorted(report.failures.get_column("_source_id").to_list()) == ["src-0", "src-3"]


def test_null_application_required():
    frame = set_row(good_frame("patient"), "lastname", 2, None)
    assert run("patient", frame).failure_counts == {"lastname.required": 1}
    location = set_row(good_frame("location"), "name", 0, None)
    assert run("location", location).failure_counts == {"name.required": 1}
    # a Recommended column may be empty
    assert run("patient", set_row(good_frame("patient"), "firstname", 2, None)).passed


def test_orphan_lookup():
    frame = set_row(good_frame("appointment"), "smig_PatientId", 1, "patient-404")
    report = run("appointment", frame)
    assert report.failure_counts == {"smig_PatientId.lookup": 1}
    assert report.failures.get_column("_source_id").to_list() == ["src-1"]


def test_self_lookup_resolves_against_own_rows():
    frame = good_frame("ledger_transaction")
    frame = frame.with_columns(pl.Series("smig_CorrectsTransactionId", [None, "src-0", "src-1", "src-9"]))
    assert run("ledger_transaction", frame).failure_counts == {"smig_CorrectsTransactionId.lookup": 1}


def test_lookup_without_parent_ids_is_refused():
    with pytest.raises(ValueError, match="smig_PatientId -> patient"):
        run("appointment", good_frame("appointment"), parents={})


def test_missing_column():
    report = run("patient", good_frame("patient").drop("lastname"))
    assert not report.passed and report.failure_counts == {"lastname.column_missing": 1}


def test_all_failures_collected_at_once():
    frame = set_row(good_frame("patient"), "lastname", 0, None)
    frame = set_row(frame, "gendercode", 1, 7).drop("nickname")
    assert run("patient", frame).failure_counts == {"lastname.required": 1, "gendercode.picklist": 1,
                                                    "nickname.column_missing": 1}


def test_wrong_type_is_named_without_the_exception_text():
    frame = good_frame("appointment").with_columns(pl.lit(PHI_NAME).alias("smig_durationmin"))
    report = run("appointment", frame)
    assert report.failure_counts == {"smig_durationmin.wrong_type": 1}
    assert PHI_NAME not in str(report.sample.to_dicts())


# -- PHI -----------------------------------------------------------------------------------------------------------
def test_sample_masks_phi_and_shows_ids():
    frame = set_row(good_frame("patient"), "lastname", 1, PHI_NAME * 10)  # too long
    frame = set_row(frame, "firstname", 2, PHI_NAME * 10)
    frame = set_row(frame, "parentcustomerid_account", 3, "location-404")
    report = run("patient", frame)
    assert report.failure_counts == {"lastname.max_length": 1, "firstname.max_length": 1,
                                     "parentcustomerid_account.lookup": 1}
    assert PHI_NAME not in str(report.sample.to_dicts())
    by_rule = {(r["source_id"], r["rule"]): r["raw_value"] for r in report.sample.to_dicts()}
    assert by_rule[("src-1", "max_length")] == MASK and by_rule[("src-2", "max_length")] == MASK
    assert by_rule[("src-3", "lookup")] == "location-404"  # an id, not PHI: shown


def test_dagster_check_is_blocking_with_masked_metadata():
    specs = pandera_check_specs(["staging", "patient"], "patient")
    assert [s.blocking for s in specs] == [True] and specs[0].name == CHECK_NAME
    bad = set_row(good_frame("patient"), "lastname", 0, PHI_NAME * 10)
    result = pandera_check_result(["staging", "patient"], "patient", bad, fmap(), plan(), PARENT_IDS,
                                  standard=standard())
    assert not result.passed and result.severity.value == "ERROR"
    text = str({k: getattr(v, "value", v) for k, v in result.metadata.items()})
    assert "lastname.max_length" in text and "src-0" in text and PHI_NAME not in text
    ok = pandera_check_result(["staging", "patient"], "patient", good_frame("patient"), fmap(), plan(), PARENT_IDS,
                              standard=standard())
    assert ok.passed


def test_routed_frame_is_validated_per_table():
    email = good_frame("communication", 2, table="email").with_columns(pl.lit("email").alias("_table"))
    call = good_frame("communication", 2, table="phonecall").with_columns(
        pl.lit("phonecall").alias("_table"), pl.Series("_source_id", ["src-8", "src-9"]),
        pl.Series("smig_sourcesystemid", ["src-8", "src-9"]))
    frame = pl.concat([email, call], how="diagonal_relaxed")
    assert pandera_check_result("staging/communication", "communication", frame, fmap(), plan(), PARENT_IDS,
                                standard=standard()).passed
    bad = set_row(frame, "regardingobjectid_contact_phonecall", 3, "patient-404")
    result = pandera_check_result("staging/communication", "communication", bad, fmap(), plan(), PARENT_IDS,
                                  standard=standard())
    assert not result.passed and result.metadata["failures"].value == 1


# -- scale ---------------------------------------------------------------------------------------------------------
def test_one_million_rows_validate_vectorised():
    n = 1_000_000
    base = good_frame("appointment", 1)
    frame = base.select(pl.all().repeat_by(n).explode()).with_columns(
        pl.format("src-{}", pl.int_range(n)).alias("smig_sourcesystemid")).with_columns(
        pl.col("smig_sourcesystemid").alias("_source_id"))
    frame = frame.with_columns(pl.when(pl.int_range(n) % 1000 == 0).then(pl.lit("patient-404"))
                               .otherwise(pl.col("smig_PatientId")).alias("smig_PatientId"))
    schema = schema_for("appointment", fmap(), plan())
    start = time.perf_counter()
    report = validate_staged(frame, schema, PARENT_IDS)
    print(f"\nvalidated {n} appointment rows x {frame.width} columns in {time.perf_counter() - start:.2f}s")
    assert report.failure_counts == {"smig_PatientId.lookup": 1000}
