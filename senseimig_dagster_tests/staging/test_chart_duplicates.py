from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from senseimig_dagster.staging.chart_duplicates import (
    LOG_SCHEMA,
    chart_truth,
    collapse,
    collapse_chart_duplicates,
    evaluate_chart,
)
from senseimig_dagster.staging.dedup import deduplicate, repoint_children
from senseimig_dagster_tests.support.tenants import read_defects, read_object

T0 = dt.datetime(2024, 3, 5, 15, 0, tzinfo=dt.UTC)
NOTE_SCHEMA = {"id": pl.String, "patient_id": pl.String, "appointment_id": pl.String, "note_type": pl.String,
               "body": pl.String, "signed_at": pl.Datetime("us", "UTC"), "created_at": pl.Datetime("us", "UTC")}
BODY = "Pt presents for adult recall. BP 120/80. No new caries detected. Completed: D0120, D1110. OHI given."


def note(id_: str, body: str = BODY, appointment: str | None = "ap1", signed: int | None = 60, created: int = 0,
         patient: str = "pt1") -> dict:
    return {"id": id_, "patient_id": patient, "appointment_id": appointment, "note_type": "Clinical", "body": body,
            "signed_at": T0 + dt.timedelta(minutes=signed) if signed is not None else None,
            "created_at": T0 + dt.timedelta(minutes=created)}


def notes(*rows: dict) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=NOTE_SCHEMA)


def test_identical_note_keeps_the_earliest_signed_version():
    frame = notes(note("late", BODY + "\n", signed=300, created=1), note("early", BODY, signed=90, created=2),
                  note("other", "Different visit entirely.", appointment="ap2"))
    kept, log = collapse("clinical_note", frame)
    assert sorted(kept["id"]) == ["early", "other"]
    assert log.schema == pl.Schema(LOG_SCHEMA)
    assert log.select("kept_id", "dropped_id", "rule", "reason").rows() == [
        ("early", "late", "identical_note", "chart_duplicate")]
    assert kept.columns == frame.columns


def test_unsigned_copy_loses_to_the_signed_note():
    kept, log = collapse("clinical_note", notes(note("unsigned", signed=None, created=0),
                                                note("signed", signed=30, created=1)))
    assert kept["id"].to_list() == ["signed"]


def test_canned_notes_without_an_appointment_hours_apart_are_kept():
    canned = "Pt called about statement; explained insurance portion."
    kept, log = collapse("clinical_note", notes(note("n1", canned, appointment=None, signed=None, created=0),
                                     note("n2", canned, appointment=None, signed=None, created=5 * 60),
                                     note("n3", canned, appointment=None, signed=None, created=5 * 60 + 1)))
    assert sorted(kept["id"]) == ["n1", "n2"]
    assert log.select("kept_id", "dropped_id").rows() == [("n2", "n3")]


def test_near_identical_notes_collapse_only_within_one_visit():
    edited = BODY.replace("BP 120/80", "BP 120/85")
    kept, log = collapse("clinical_note", notes(note("a", BODY), note("b", edited, created=1),  # same appointment
                                     note("c", BODY.replace("120/80", "135/90"), appointment="ap2")))
    assert sorted(kept["id"]) == ["a", "c"]
    assert log.select("kept_id", "dropped_id", "rule").rows() == [("a", "b", "near_identical_note")]


def test_perio_readings_identical_collapse_conflicting_stay():
    base = {"patient_id": "pt1", "exam_date": dt.date(2024, 3, 5), "tooth": 3, "site": "MB", "probing_depth_mm": 4,
            "recession_mm": 1, "bleeding": True, "suppuration": False, "plaque": False, "mobility": None,
            "furcation": None}
    rows = [dict(base, id="r1", created_at=T0), dict(base, id="r2", created_at=T0 + dt.timedelta(seconds=30)),
            dict(base, id="r3", created_at=T0, probing_depth_mm=5)]
    kept, log = collapse("perio_reading", pl.DataFrame(rows))
    assert sorted(kept["id"]) == ["r1", "r3"]
    assert log.select("kept_id", "dropped_id", "rule").rows() == [("r1", "r2", "identical_reading")]


def test_plan_items_identical_collapse_other_lines_stay():
    base = {"patient_id": "pt1", "treatment_plan_id": "tp1", "sequence": 1, "code": "D2392", "tooth": "30",
            "surfaces": "MO", "fee": "245.00", "service_date": None}
    rows = [dict(base, id="i1", created_at=T0), dict(base, id="i2", created_at=T0 + dt.timedelta(seconds=5)),
            dict(base, id="i3", created_at=T0, sequence=2, surfaces="DO")]
    kept, log = collapse("treatment_plan_item", pl.DataFrame(rows, schema_overrides={"service_date": pl.Date}))
    assert sorted(kept["id"]) == ["i1", "i3"]
    assert log.select("kept_id", "dropped_id").rows() == [("i1", "i2")]


def test_copies_on_a_merged_duplicate_patient_meet_after_repointing():
    frame = notes(note("n1", patient="orig"), note("n2", patient="dup", created=1))
    assert collapse("clinical_note", frame)[1].is_empty()
    merge_map = pl.DataFrame({"duplicate_id": ["dup"], "survivor_id": ["orig"]})
    repointed = repoint_children({"clinical_note": frame}, merge_map)
    result = collapse_chart_duplicates(repointed)
    assert result.counts == {"clinical_note": 1}
    assert result.frames["clinical_note"]["id"].to_list() == ["n1"]


@pytest.fixture(scope="module")
def tenant(generated: Callable[[int, int], Path]) -> Path:
    return generated(300, 23)


def test_generated_tenant_precision_and_recall(tenant: Path):
    objects = ("clinical_note", "perio_reading", "treatment_plan_item")
    frames = {o: read_object(tenant, o) for o in objects}
    merge_map = deduplicate(read_object(tenant, "patient")).merge_map
    result = collapse_chart_duplicates(repoint_children(frames, merge_map))
    truth = chart_truth(read_defects(tenant))
    assert set(truth["object"]) == set(objects)
    e = evaluate_chart(result.log, truth)
    assert e.precision >= 0.98 and e.recall >= 0.95, e
    for o in objects:  # conservation: rows = kept + collapsed
        assert result.frames[o].height + result.counts[o] == frames[o].height
