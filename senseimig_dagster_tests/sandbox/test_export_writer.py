from __future__ import annotations

import csv
import datetime as dt
import io
import random
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from senseimig_dagster.objects import REGISTRY, get
from senseimig_dagster.sandbox.export_writer import BOM, write_export
from senseimig_dagster.sensei import wire
from senseimig_dagster_tests.support.tenants import make_record, make_tenant, write_jsonl

ORG = get("organization")
T0 = dt.datetime(2026, 10, 1, 12, 30, tzinfo=dt.UTC)


def _org(**values) -> dict:
    base = {"id": "o-1", "name": "Bright Smiles", "tax_id": None, "created_at": wire.format_datetime(T0),
            "updated_at": wire.format_datetime(T0), "is_deleted": False}
    return {**base, **values}


def _export_one(tmp_path: Path, endpoint: str, records: list[dict]) -> bytes:
    tenant = tmp_path / "tenant"
    tenant.mkdir(exist_ok=True)
    write_jsonl(tenant / f"{endpoint}.jsonl", records)
    write_export(tenant, tmp_path / "export")
    return (tmp_path / "export" / f"{endpoint}.csv").read_bytes()


def _rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_bom_header_crlf_and_rfc4180_quoting(tmp_path: Path) -> None:
    data = _export_one(tmp_path, "organizations", [
        _org(id="o-1", name='Smith, "Bob"\r\nJr.'),
        _org(id="o-2", name="Zoë Ångström 🦷", tax_id="84-1234567", is_deleted=True),
    ])
    assert data.startswith(BOM.encode())
    assert data == BOM.encode() + (
        "id,name,tax_id,created_at,updated_at,is_deleted\r\n"
        'o-1,"Smith, ""Bob""\r\nJr.",,2026-10-01T12:30:00Z,2026-10-01T12:30:00Z,No\r\n'
        "o-2,Zoë Ångström 🦷,84-1234567,2026-10-01T12:30:00Z,2026-10-01T12:30:00Z,Yes\r\n"
    ).encode()


@pytest.mark.parametrize("value", ["a,b", 'say "x"', "cr\ronly", "lf\nonly", "crlf\r\n", '"'])
def test_fields_needing_quotes_are_quoted(tmp_path: Path, value: str) -> None:
    data = _export_one(tmp_path, "organizations", [_org(name=value)])
    quoted = '"' + value.replace('"', '""') + '"'
    assert f",{quoted},".encode() in data
    assert _rows(data)[1][1] == value


def test_values_in_export_formats(tmp_path: Path) -> None:
    plan = get("insurance_plan")
    record = {f.name: None for f in plan.fields} | {
        "id": "p-1", "annual_maximum": wire.to_json_value("decimal", Decimal("1500")),
        "deductible_individual": "-80.00", "benefit_year_start_month": 1,
        "coverage_pct": {"preventive": 100, "note": "Zoë"}, "cot_claims_required": True,
        "created_at": wire.format_datetime(T0), "updated_at": wire.format_datetime(T0), "is_deleted": False,
    }
    eligibility = get("eligibility_check")
    patient = get("patient")
    prow = {f.name: None for f in patient.fields} | {"id": "x", "date_of_birth": "1984-03-12",
                                                      "sms_opt_out": False, "medical_alerts": ["Penicillin"]}
    tenant = tmp_path / "tenant"
    tenant.mkdir()
    write_jsonl(tenant / "insurance_plans.jsonl", [record])
    write_jsonl(tenant / "patients.jsonl", [prow])
    write_export(tenant, tmp_path / "export")
    header, row = _rows((tmp_path / "export" / "insurance_plans.csv").read_bytes())
    got = dict(zip(header, row, strict=True))
    assert got["annual_maximum"] == "1500.00" and got["deductible_individual"] == "-80.00"
    assert got["benefit_year_start_month"] == "1" and got["cot_claims_required"] == "Yes"
    assert orjson.loads(got["coverage_pct"]) == {"preventive": 100, "note": "Zoë"}
    assert got["created_at"] == "2026-10-01T12:30:00Z" and got["is_deleted"] == "No"
    assert got["plan_name"] == "" and got["employer_name"] == ""  # null is an empty field
    header, row = _rows((tmp_path / "export" / "patients.csv").read_bytes())
    got = dict(zip(header, row, strict=True))
    assert got["date_of_birth"] == "03/12/1984" and got["sms_opt_out"] == "No"
    assert got["medical_alerts"] == '["Penicillin"]'
    assert (tmp_path / "export" / eligibility.export_file).read_bytes() == \
        BOM.encode() + (",".join(eligibility.field_names) + "\r\n").encode()


def test_every_object_gets_a_file_and_rows_are_counted(tmp_path: Path) -> None:
    tenant = make_tenant(tmp_path / "tenant", {"patient": 7, "appointment": 3})
    counts = write_export(tenant, tmp_path / "export")
    assert set(counts) == {o.export_file for o in REGISTRY}
    assert counts["patients.csv"] == 7 and counts["appointments.csv"] == 3 and counts["users.csv"] == 0
    for obj in REGISTRY:
        rows = _rows((tmp_path / "export" / obj.export_file).read_bytes())
        assert rows[0] == list(obj.field_names)
        assert len(rows) - 1 == counts[obj.export_file]
    assert not list((tmp_path / "export").glob("*.tmp"))


def test_missing_jsonl_is_an_empty_object(tmp_path: Path) -> None:
    (tmp_path / "tenant").mkdir()
    counts = write_export(tmp_path / "tenant", tmp_path / "export")
    assert set(counts.values()) == {0}


def test_round_trip_of_nasty_values(tmp_path: Path) -> None:
    """Every exported field reads back (csv module) as exactly ``json_wire_to_csv`` of the API value."""
    tenant = make_tenant(tmp_path / "tenant", {o.name: 15 for o in REGISTRY}, seed=3)
    write_export(tenant, tmp_path / "export")
    for obj in REGISTRY:
        records = [orjson.loads(line) for line in (tenant / f"{obj.endpoint}.jsonl").read_bytes().splitlines()]
        rows = _rows((tmp_path / "export" / obj.export_file).read_bytes())[1:]
        expected = [[wire.json_wire_to_csv(f.type, r[f.name]) for f in obj.fields] for r in records]
        assert rows == expected, obj.name


def test_deterministic_bytes(tmp_path: Path) -> None:
    tenant = make_tenant(tmp_path / "tenant", {"appointment": 30, "patient": 30}, seed=5)
    write_export(tenant, tmp_path / "a")
    write_export(tenant, tmp_path / "b")
    for obj in REGISTRY:
        assert (tmp_path / "a" / obj.export_file).read_bytes() == (tmp_path / "b" / obj.export_file).read_bytes()


def test_unknown_keys_become_extra_columns(tmp_path: Path) -> None:
    data = _export_one(tmp_path, "organizations", [
        _org(id="o-1"), _org(id="o-2", loyalty_tier="Gold, plus"), _org(id="o-3", flags=[1, "x"]),
    ])
    rows = _rows(data)
    assert rows[0] == [*ORG.field_names, "loyalty_tier", "flags"]
    assert rows[1][-2:] == ["", ""] and rows[2][-2:] == ["Gold, plus", ""] and rows[3][-1] == '[1,"x"]'


def test_malformed_wire_values_are_exported_verbatim(tmp_path: Path) -> None:
    """A bad source value stays bad in the export, so both paths reject it (never a truthy 'Yes')."""
    data = _export_one(tmp_path, "organizations", [_org(is_deleted="maybe", created_at="yesterday")])
    row = dict(zip(*_rows(data), strict=True))
    assert row["is_deleted"] == "maybe" and row["created_at"] == "yesterday"
    patient = get("patient")
    rec = make_record(patient, random.Random(1)) | {"date_of_birth": "1984-13-45"}
    row = dict(zip(*_rows(_export_one(tmp_path, "patients", [rec])), strict=True))
    assert row["date_of_birth"] == "1984-13-45"
