"""The synthetic Sensei tenant: determinism, manifest, wire types, integrity and declared defects."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from senseimig_dagster.objects import OBJECTS, REGISTRY
from senseimig_dagster.sandbox.documents import document_bytes, iter_document_bytes
from senseimig_dagster.sandbox.generator import (
    DEFAULT_AS_OF,
    Manifest,
    generate,
    npi_check_digit_ok,
    read_manifest,
)
from senseimig_dagster.sandbox.generator.codes import CDT
from senseimig_dagster.sandbox.generator.defects import HARSH_VARIANTS

N = 300
KINDS = (
    "duplicate_patient",
    "free_text_provider",
    "bad_email",
    "bad_phone",
    "orphan_reference",
    "ledger_correction",
    "non_ascii_name",
    "long_name",
    "long_note",
    "inactive_user",
    "invalid_npi",
    "large_document",
    "tiny_document",
    "duplicate_chart_entry",
)
AS_OF = DEFAULT_AS_OF.strftime("%Y-%m-%dT%H:%M:%SZ")
EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+\.[A-Za-z]{2,}$")
MONEY = re.compile(r"^-?\d+\.\d{2}$")
NANP = re.compile(r"^1?[2-9]\d\d[2-9]\d{6}$")  # the digits of a diallable US number
FIVE_MB = 5 * 1024 * 1024


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    out = tmp_path_factory.mktemp("tenant")
    return out, generate(out, N, seed=7)


@pytest.fixture(scope="module")
def rows(tenant: tuple[Path, Manifest]) -> dict[str, list[dict]]:
    out, _ = tenant
    return {obj.name: _load(out / f"{obj.endpoint}.jsonl") for obj in REGISTRY}


@pytest.fixture(scope="module")
def by_id(rows: dict[str, list[dict]]) -> dict[str, dict[str, dict]]:
    return {name: {r["id"]: r for r in table} for name, table in rows.items()}


@pytest.fixture(scope="module")
def defects(tenant: tuple[Path, Manifest]) -> list[dict]:
    return _load(tenant[0] / "defects.jsonl")


def _declared(defects: list[dict], kind: str) -> list[dict]:
    return [d for d in defects if d["kind"] == kind]


# -- determinism and manifest --------------------------------------------------------------------------------
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a, b, c = (generate(tmp_path / name, 80, seed=seed) for name, seed in (("a", 3), ("b", 3), ("c", 4)))
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in files:
        assert _sha(tmp_path / "a" / name) == _sha(tmp_path / "b" / name), name
    assert a == b
    assert c.files["patients.jsonl"] != a.files["patients.jsonl"]
    assert c.files["ledger_transactions.jsonl"] != a.files["ledger_transactions.jsonl"]


def test_same_bytes_in_other_processes(tmp_path: Path) -> None:
    """Nothing depends on string hashing (PYTHONHASHSEED) or on process state."""
    script = (
        "import sys; from pathlib import Path; from senseimig_dagster.sandbox.generator import generate; "
    )
    script += "generate(Path(sys.argv[1]), 60, seed=9)"
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run([sys.executable, "-c", script, str(tmp_path / hash_seed)], check=True, env=env)
    assert (tmp_path / "1" / "manifest.json").read_bytes() == (tmp_path / "2" / "manifest.json").read_bytes()


def test_manifest_matches_files(tenant: tuple[Path, Manifest], rows: dict[str, list[dict]]) -> None:
    out, manifest = tenant
    assert read_manifest(out) == manifest
    assert (manifest.format, manifest.seed, manifest.patients, manifest.as_of) == (1, 7, N, DEFAULT_AS_OF)
    assert list(manifest.counts) == [obj.name for obj in REGISTRY]
    for obj in REGISTRY:
        assert manifest.counts[obj.name] == len(rows[obj.name]), obj.name
    assert manifest.counts["patient"] == N
    assert manifest.total_rows == sum(manifest.counts.values())
    written = {p.name for p in out.iterdir()} - {"manifest.json"}
    assert set(manifest.files) == written == {f"{o.endpoint}.jsonl" for o in REGISTRY} | {"defects.jsonl"}
    for name, digest in manifest.files.items():
        assert _sha(out / name) == digest, name
    located = {o.name for o in REGISTRY if o.location_field}
    assert set(manifest.counts_by_location) == located
    for name in located:
        assert sum(manifest.counts_by_location[name].values()) == manifest.counts[name], name
    location_ids = {r["id"] for r in rows["location"]} | {"null"}
    assert all(set(per) <= location_ids for per in manifest.counts_by_location.values())


def test_tiny_and_empty_tenants(tmp_path: Path) -> None:
    empty = generate(tmp_path / "empty", 0)
    assert empty.counts["patient"] == 0 and empty.counts["location"] == 3
    assert all((tmp_path / "empty" / f"{o.endpoint}.jsonl").exists() for o in REGISTRY)
    for n in (1, 2, 5, 13, 40):  # households and duplicates never overshoot the requested number of patients
        for seed in (1, 2, 3):
            assert generate(tmp_path / f"{n}-{seed}", n, seed=seed).counts["patient"] == n


# -- wire form -----------------------------------------------------------------------------------------------
def _wire_ok(type_: str, value: object) -> bool:
    if value is None:
        return True
    if type_ == "uuid":
        return isinstance(value, str) and str(uuid.UUID(value)) == value
    if type_ in ("str", "text"):
        return isinstance(value, str)
    if type_ == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_ == "decimal":
        return isinstance(value, str) and bool(MONEY.match(value))
    if type_ == "bool":
        return isinstance(value, bool)
    if type_ == "date":
        return isinstance(value, str) and dt.date.fromisoformat(value).isoformat() == value
    if type_ == "datetime":
        return (
            isinstance(value, str)
            and value.endswith("Z")
            and len(value) == 20
            and bool(dt.datetime.fromisoformat(value.replace("Z", "+00:00")))
        )
    return isinstance(value, (list, dict))


def test_every_value_has_its_registry_type_in_wire_form(rows: dict[str, list[dict]]) -> None:
    for obj in REGISTRY:
        for row in rows[obj.name]:
            assert list(row) == list(obj.field_names), obj.name
            for f in obj.fields:
                assert _wire_ok(f.type, row[f.name]), (obj.name, f.name, f.type, row[f.name])
            assert row["id"] and row["created_at"] and row["updated_at"] and row["is_deleted"] is not None


def test_audit_columns(rows: dict[str, list[dict]]) -> None:
    total = late = deleted = 0
    for table in rows.values():
        for row in table:
            created, updated = row["created_at"], row["updated_at"]
            assert created <= updated <= AS_OF
            total += 1
            late += dt.datetime.fromisoformat(updated[:-1]) - dt.datetime.fromisoformat(
                created[:-1]
            ) > dt.timedelta(days=30)
            deleted += row["is_deleted"]
    assert 0.01 < late / total < 0.2
    assert 0.001 < deleted / total < 0.01
    first = min(r["created_at"] for r in rows["appointment"])
    assert first < "2017-06-01"  # about ten years of history


# -- integrity -----------------------------------------------------------------------------------------------
def test_references_resolve_except_declared_orphans(rows, by_id, defects) -> None:
    orphans = {
        (d["object"], d["id"], d["field"]): d["detail"] for d in _declared(defects, "orphan_reference")
    }
    assert orphans
    for obj in REGISTRY:
        for row in rows[obj.name]:
            for f in obj.fields:
                value = row[f.name]
                if f.references is None or value is None:
                    continue
                if (obj.name, row["id"], f.name) in orphans:
                    assert value == orphans[(obj.name, row["id"], f.name)]
                    assert value not in by_id[f.references]
                else:
                    assert value in by_id[f.references], (obj.name, f.name)
    assert {key[0] for key in orphans} <= set(OBJECTS)


def test_free_text_providers(rows, by_id, defects) -> None:
    declared = {d["id"]: d for d in _declared(defects, "free_text_provider")}
    verdicts = Counter(d["detail"] for d in declared.values())
    assert set(verdicts) == {"resolvable", "ambiguous", "unresolvable"}
    for name in ("appointment", "clinical_note", "ledger_transaction"):
        table = rows[name]
        free = [r for r in table if r["provider_name"] is not None]
        assert {r["id"] for r in free} == {i for i, d in declared.items() if d["object"] == name}
        assert all(r["provider_id"] is None for r in free)
        assert 0.02 < len(free) / len(table) < 0.09
        if name != "clinical_note":  # only administrative notes have no provider at all
            assert all(r["provider_id"] or r["provider_name"] for r in table)
    for d in declared.values():
        text = by_id[d["object"]][d["id"]]["provider_name"].lower()
        if d["detail"] != "unresolvable":
            p = by_id["provider"][d["of"]]
            assert any(part.lower() in text for part in (p["last_name"], p["abbreviation"], p["first_name"]))


def test_every_kind_is_declared_on_existing_rows(tenant, by_id, defects) -> None:
    _, manifest = tenant
    assert set(KINDS) <= set(manifest.defect_counts)
    assert manifest.defect_counts == dict(Counter(d["kind"] for d in defects))
    for d in defects:
        assert d["id"] in by_id[d["object"]], d["kind"]
        assert set(d) <= {"kind", "object", "id", "field", "detail", "of"}


def test_duplicate_patients(rows, by_id, defects) -> None:
    order = {r["id"]: i for i, r in enumerate(rows["patient"])}
    dups = _declared(defects, "duplicate_patient")
    assert 0.02 < len(dups) / N < 0.04
    for d in dups:
        dup, original = by_id["patient"][d["id"]], by_id["patient"][d["of"]]
        assert order[d["id"]] > order[d["of"]]
        variants = set(d["detail"].split(","))
        if not variants & {"dob_transposed", "dob_typo", "missing_fields"}:
            assert dup["date_of_birth"] == original["date_of_birth"]
        if "name_swap" in variants:
            assert (dup["first_name"].lower(), dup["last_name"].lower()) != (
                original["first_name"].lower(), original["last_name"].lower())
        assert dup["patient_number"] != original["patient_number"]
        if d["detail"] != "exact":
            keys = (
                "first_name",
                "last_name",
                "email",
                "mobile_phone",
                "home_phone",
                "work_phone",
                "address_line1",
                "primary_location_id",
            )
            assert any(dup[k] != original[k] for k in keys)


def test_harsh_duplicates_and_lookalike_households(rows, by_id, defects) -> None:
    dups = _declared(defects, "duplicate_patient")
    harsh = {v for d in dups for v in d["detail"].split(",")} & set(HARSH_VARIANTS)
    assert len(harsh) >= 3  # several kinds of harsh error even in a small tenant
    for d in dups:
        dup, original = by_id["patient"][d["id"]], by_id["patient"][d["of"]]
        if "dob_transposed" in d["detail"] and dup["date_of_birth"]:
            y, m, day = original["date_of_birth"].split("-")
            assert dup["date_of_birth"] == f"{y}-{day}-{m}"
    lookalikes = _declared(defects, "lookalike_household")
    assert {d["detail"] for d in lookalikes} == {"twins", "parent_child"}
    renamed = {d["id"] for d in defects if d["kind"] in ("long_name", "non_ascii_name")}  # names changed after
    for d in (d for d in lookalikes if not {d["id"], d["of"]} & renamed):
        member, other = by_id["patient"][d["id"]], by_id["patient"][d["of"]]
        assert member["last_name"] == other["last_name"]
        if d["detail"] == "twins":
            assert member["date_of_birth"] == other["date_of_birth"]
            assert member["first_name"] != other["first_name"]
        else:
            assert member["first_name"] == other["first_name"]
            assert member["date_of_birth"] != other["date_of_birth"]


def test_names_and_contacts(rows, by_id, defects) -> None:
    patients = rows["patient"]
    kinds = defaultdict(set)
    for d in defects:
        if d["object"] == "patient" and d["kind"] != "duplicate_patient":
            kinds[d["kind"]].add((d["id"], d["field"]))
    for pid, field in kinds["non_ascii_name"]:
        assert not by_id["patient"][pid][field].isascii()
    for pid, field in kinds["long_name"]:
        assert len(by_id["patient"][pid][field]) > 100
    for p in patients:
        for field in ("first_name", "last_name"):
            assert p[field].isascii() or (p["id"], field) in kinds["non_ascii_name"]
            assert len(p[field]) <= 100 or (p["id"], field) in kinds["long_name"]
        bad_email = (p["id"], "email") in kinds["bad_email"]
        assert p["email"] is None or bool(EMAIL.match(p["email"])) != bad_email
        for field in ("mobile_phone", "home_phone", "work_phone"):
            valid = bool(NANP.match(re.sub(r"\D", "", p[field] or "")))
            assert p[field] is None or valid != ((p["id"], field) in kinds["bad_phone"]), p[field]
    non_ascii = sum(1 for p in patients if not (p["first_name"] + p["last_name"]).isascii())
    assert 0.01 < non_ascii / N < 0.05


def test_npis(rows, defects) -> None:
    assert npi_check_digit_ok("1234567893") and npi_check_digit_ok("1558598797")
    assert not npi_check_digit_ok("1234567890") and not npi_check_digit_ok("3234567893")
    assert not npi_check_digit_ok("123456789") and not npi_check_digit_ok("12345678a3")
    invalid = {(d["object"], d["id"]) for d in _declared(defects, "invalid_npi")}
    assert {obj for obj, _ in invalid} >= {"provider", "referral_source"}
    seen = 0
    for name in ("location", "provider", "referral_source"):
        for row in rows[name]:
            if row["npi"] is not None:
                seen += 1
                assert npi_check_digit_ok(row["npi"]) != ((name, row["id"]) in invalid), (name, row["npi"])
    assert seen > len(invalid)
    doctors = [p for p in rows["provider"] if p["role"] == "Doctor"]
    assert all(p["npi"] and p["taxonomy_code"] for p in doctors)
    npis = [p["npi"] for p in rows["provider"] if p["npi"]]
    assert len(npis) == len(set(npis))
    assert any(p["npi"] is None for p in rows["provider"] if p["role"] == "Hygienist")  # often lack one


def test_users_who_left(rows, defects) -> None:
    inactive = {d["id"] for d in _declared(defects, "inactive_user")}
    assert inactive == {u["id"] for u in rows["user"] if not u["is_active"]}
    assert any(c["user_id"] in inactive for c in rows["communication"])
    emails = [u["email"].lower() for u in rows["user"]]
    assert len(set(emails)) == len(emails) and len({e.split("@")[1] for e in emails}) == 1
    provider_emails = [p["email"] for p in rows["provider"]]
    assert len(set(provider_emails)) == len(provider_emails)
    assert set(provider_emails) <= set(emails)  # every provider logs in; the e-mail ties the two


# -- clinical and billing ------------------------------------------------------------------------------------
def test_ledger_signs_and_corrections(rows, by_id, defects) -> None:
    ledger = rows["ledger_transaction"]
    for r in ledger:
        amount = Decimal(r["amount"])
        if r["txn_type"] in ("Charge", "Refund"):
            assert amount > 0
        elif r["txn_type"] in ("Payment", "InsurancePayment", "WriteOff", "Discount"):
            assert amount < 0
        if r["txn_type"] == "InsurancePayment":
            assert r["claim_id"] and r["payment_type"].startswith("Insurance - ")
    corrections = {d["id"]: d for d in _declared(defects, "ledger_correction")}
    assert corrections
    assert set(corrections) == {r["id"] for r in ledger if r["corrects_transaction_id"]}
    for cid, d in corrections.items():
        row, original = by_id["ledger_transaction"][cid], by_id["ledger_transaction"][d["of"]]
        assert row["corrects_transaction_id"] == d["of"] and row["txn_type"] in ("Correction", "Removal")
        assert row["created_at"] >= original["created_at"]
        if row["txn_type"] == "Removal":
            assert Decimal(row["amount"]) == -Decimal(original["amount"])


def test_claims_and_their_history(rows, by_id) -> None:
    claims = rows["claim"]
    events = defaultdict(list)
    for e in rows["claim_status_event"]:
        events[e["claim_id"]].append(e)
    numbers = {c["claim_number"]: c for c in claims}
    for c in claims:
        history = events[c["id"]]
        assert [e["occurred_at"] for e in history] == sorted(e["occurred_at"] for e in history)
        if history:
            assert c["status"] == history[-1]["status"]
        if c["status"] == "Resubmitted":
            number = c["status_change_note"].removeprefix("Resubmitted as Claim #")
            assert numbers[number]["replaces_claim_id"] == c["id"]
        if c["replaces_claim_id"]:
            assert by_id["claim"][c["replaces_claim_id"]]["status"] == "Resubmitted"
    final = Counter(
        c["status"] for c in claims if c["coverage_order"] == "Primary" and not c["replaces_claim_id"]
    )
    decided = final["Paid"] + final["PartiallyPaid"] + final["Denied"] + final["Resubmitted"]
    assert 0.8 < (final["Paid"] + final["PartiallyPaid"]) / decided < 0.95


def test_appointments(rows, by_id) -> None:
    appointments = rows["appointment"]
    past = Counter(a["status"] for a in appointments if a["status"] not in ("Scheduled", "Confirmed"))
    total = sum(past.values())
    assert 0.78 < (past["CheckedOut"] + past["Complete"]) / total < 0.92
    assert past["Cancelled"] and past["NoShow"] and past["Rescheduled"]
    for a in appointments:
        start = dt.datetime.fromisoformat(a["start_at"][:-1])
        assert start.minute % 5 == 0 and start.second == 0 and a["duration_min"] % 5 == 0
        assert (a["start_at"] > AS_OF) == (a["status"] in ("Scheduled", "Confirmed"))
        assert (a["completed_at"] is not None) == (a["status"] in ("Complete", "CheckedOut"))


_SURFACES = {"posterior": set("MODBL"), "anterior": set("MIDFL")}


def test_treatment_plan_anatomy(rows, defects) -> None:
    for item in rows["treatment_plan_item"]:
        cdt = CDT[item["code"]]
        tooth, surfaces = item["tooth"], item["surfaces"]
        if cdt.needs in ("T", "TS"):
            assert tooth in {str(t) for t in range(1, 33)} | set("ABCDEFGHIJKLMNOPQRST")
        elif cdt.needs == "Q":
            assert tooth in ("UR", "UL", "LL", "LR")
        elif cdt.needs == "A":
            assert tooth in ("U", "L")
        else:
            assert tooth is None
        if cdt.needs == "TS":
            assert surfaces and "".join(s for s in "MOIDBFL" if s in surfaces) == surfaces
            assert len(surfaces) == cdt.surfaces or (cdt.surfaces == 4 and len(surfaces) >= 4)
        else:
            assert surfaces is None
    assert Counter(p["status"] for p in rows["treatment_plan"]).keys() >= {"Completed", "Declined"}


def test_perio_charting(rows) -> None:
    readings = rows["perio_reading"]
    per_tooth = defaultdict(list)
    for r in readings:
        per_tooth[(r["exam_id"], r["tooth"])].append(r)
        assert 1 <= r["probing_depth_mm"] <= 15 and 1 <= r["tooth"] <= 32
        assert (r["mobility"] is not None) == (r["site"] == "B")
    dup = sum(len(v) - 6 for v in per_tooth.values())
    assert all(len(v) in (6, 7) for v in per_tooth.values()) and dup <= 3
    patients = len({r["patient_id"] for r in readings})
    assert 0.08 < patients / N < 0.25


def test_chart_duplicates_and_long_notes(by_id, defects) -> None:
    dups = _declared(defects, "duplicate_chart_entry")
    assert {d["object"] for d in dups} == {"clinical_note", "perio_reading", "treatment_plan_item"}
    # row-level mess (free-text provider, orphans) and audit columns are drawn per row; content is the same
    ignore = {"id", "created_at", "updated_at", "is_deleted", "provider_id", "provider_name", "signed_by"}
    for d in dups:
        copy, original = by_id[d["object"]][d["id"]], by_id[d["object"]][d["of"]]
        for key in copy.keys() - ignore:
            same = copy[key].strip() == original[key].strip() if key == "body" else copy[key] == original[key]
            assert same or (d["object"], key) == ("clinical_note", "appointment_id"), key
    for d in _declared(defects, "long_note"):
        body = by_id["clinical_note"][d["id"]]["body"]
        assert len(body) > 10_000 and "," in body and '"' in body and "\n" in body


def test_documents(rows, by_id, defects) -> None:
    docs = rows["document"]
    large = {d["id"] for d in _declared(defects, "large_document")}
    tiny = {d["id"] for d in _declared(defects, "tiny_document")}
    assert large and tiny
    assert {d["id"] for d in docs if d["size_bytes"] > FIVE_MB} == large
    assert {d["id"] for d in docs if d["size_bytes"] < 1024} == tiny
    assert any(by_id["document"][i]["size_bytes"] == 0 for i in tiny)
    assert 0.003 < len(large) / len(docs) < 0.03
    sample = [d for d in docs if d["id"] in large | tiny] + docs[:40]
    for d in sample:
        sha = hashlib.sha256()
        for chunk in iter_document_bytes(7, d["id"], d["size_bytes"], d["mime_type"]):
            sha.update(chunk)
        assert sha.hexdigest() == d["sha256"], d["category"]
    assert {d["category"] for d in docs} == {
        "Eligibility",
        "ClaimAttachment",
        "Xray",
        "Photo",
        "Consent",
        "Other",
    }
    for check in rows["eligibility_check"]:
        if check["document_id"]:
            assert by_id["document"][check["document_id"]]["category"] == "Eligibility"


@pytest.mark.parametrize(
    "mime,signature,offset",
    [
        ("application/pdf", b"%PDF-1.7", 0),
        ("image/png", b"\x89PNG\r\n\x1a\n", 0),
        ("image/jpeg", b"\xff\xd8\xff", 0),
        ("application/dicom", b"DICM", 128),
        ("text/html", b"<!DOCTYPE html>", 0),
    ],
)
def test_document_bytes(mime: str, signature: bytes, offset: int) -> None:
    for size in (0, 1, 5, 300, 4095, 4096, 4097, 100_003):
        whole = document_bytes(7, "doc-1", size, mime)
        assert len(whole) == size and whole == document_bytes(7, "doc-1", size, mime)
        for chunk_size in (1000, 4096, 1 << 20):
            chunks = list(iter_document_bytes(7, "doc-1", size, mime, chunk_size=chunk_size))
            assert b"".join(chunks) == whole
            assert all(len(c) == chunk_size for c in chunks[:-1])
        if size >= 1000:
            assert whole[offset : offset + len(signature)] == signature
    assert document_bytes(7, "doc-1", 5000, mime) != document_bytes(7, "doc-2", 5000, mime)
    assert document_bytes(7, "doc-1", 5000, mime) != document_bytes(8, "doc-1", 5000, mime)
    if mime == "text/html":
        assert document_bytes(7, "doc-1", 50_000, mime).isascii()


# -- scale ---------------------------------------------------------------------------------------------------
# VmHWM, not ru_maxrss: on Linux a child's ru_maxrss starts from its parent's RSS at fork (a big pytest worker).
_MEASURE = """
import re, sys
from pathlib import Path
from senseimig_dagster.sandbox.generator import generate
m = generate(Path(sys.argv[1]), int(sys.argv[2]))
print(m.total_rows, re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
"""


@pytest.mark.slow
def test_linear_in_patients_and_flat_in_memory(tmp_path: Path) -> None:
    results = []
    for n in (2000, 4000):
        out = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(tmp_path / str(n)), str(n)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        results.append((int(out[0]), int(out[1])))
    (rows_2k, rss_2k), (rows_4k, rss_4k) = results
    assert 1.8 < rows_4k / rows_2k < 2.2
    assert 70 < rows_2k / 2000 < 120
    assert rss_4k < rss_2k * 1.3 and rss_4k < 512 * 1024  # KiB: memory does not grow with the tenant
