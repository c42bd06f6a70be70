"""``generate_day2``: a tenant as it looks after a day of cutover, on top of a generated tenant.

The practice keeps working while the migration runs. Day 2 is the original tenant plus, all stamped with
``updated_at`` in the ``WINDOW`` before ``at`` (so inside the last two modification-day partitions):

* new patients, each with a completed new-patient exam, a scheduled recall and a charge with its payment;
* edits to existing patients: a new mobile phone, a new street address;
* appointments checked out (completed) or cancelled;
* new ledger entries for existing patients (payments) and a correction of an older charge;
* deletions: Sensei soft-deletes (every table carries ``is_deleted``, an assumed schema convention, [INF]) and
  the API serves the deleted row with its new ``updated_at``, so a ``modified_since`` client sees the
  deletion. No public source mentions hard deletes, so none is modelled.

Targets are records no injected defect touches (``defects.jsonl``: neither the row nor what it duplicates), not
already deleted, whose patient is clean too, so each change shows up downstream as exactly one changed record.
``day2_changes.jsonl`` is the ground truth: one line per changed record (object, id, change: created, updated or
deleted; detail; updated_at). Unchanged objects' files are copied byte for byte; ``manifest.json`` is rewritten.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from senseimig_dagster.objects import REGISTRY, get
from senseimig_dagster.sandbox.generator import names
from senseimig_dagster.sandbox.generator.core import CENT, Rng
from senseimig_dagster.sandbox.generator.manifest import (
    DEFECTS_FILE,
    NULL_LOCATION,
    read_manifest,
    write_manifest,
)
from senseimig_dagster.sensei.wire import format_datetime

CHANGES_FILE = "day2_changes.jsonl"
WINDOW = dt.timedelta(hours=20)  # changes happen in [at - WINDOW, at - 1 min]: within today's and yesterday's days
CHANGED = ("patient", "appointment", "ledger_transaction", "communication")
NEW_PATIENTS, PHONE_EDITS, ADDRESS_EDITS, COMPLETED, CANCELLED, PAYMENTS = 3, 3, 2, 3, 2, 3


@dataclass(frozen=True)
class Change:
    object: str
    id: str
    change: str  # created | updated | deleted
    detail: str
    updated_at: str


def _rows(directory: Path, name: str) -> list[dict[str, Any]]:
    path = directory / f"{get(name).endpoint}.jsonl"
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _tainted(directory: Path) -> set[str]:
    """Ids an injected defect names (the row, or the row it duplicates / corrects)."""
    out: set[str] = set()
    for line in (directory / DEFECTS_FILE).read_bytes().splitlines():
        if line.strip():
            defect = orjson.loads(line)
            out |= {defect["id"], *([defect["of"]] if defect.get("of") else [])}
    return out


class _Day2:
    def __init__(self, rows: dict[str, list[dict[str, Any]]], tainted: set[str], at: dt.datetime, seed: int):
        self.rows, self.rng, self.at = rows, Rng(seed), at
        self.changes: list[Change] = []
        self._times = sorted(self.rng.between(at - WINDOW, at - dt.timedelta(minutes=1)) for _ in range(200))
        patients = rows["patient"]
        self.clean_patients = {p["id"]: p for p in patients if p["id"] not in tainted and not p["is_deleted"]}
        self.used: set[str] = set()
        self.tainted = tainted

    # -- helpers ----------------------------------------------------------------------------------------------
    def _when(self) -> dt.datetime:
        return self._times.pop(self.rng.randrange(len(self._times)))

    def _pick(self, pool: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
        pool = [r for r in pool if r["id"] not in self.used]
        chosen = self.rng.sample(pool, min(n, len(pool)))
        if len(chosen) < n:
            raise ValueError(f"the tenant is too small for day 2: {n} clean rows wanted, {len(chosen)} found")
        self.used |= {r["id"] for r in chosen}
        return chosen

    def _clean(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.rows[name] if r["id"] not in self.tainted and not r["is_deleted"]
                and r.get("patient_id") in self.clean_patients]

    def _touch(self, name: str, row: dict[str, Any], change: str, detail: str) -> None:
        when = format_datetime(self._when())
        row["updated_at"] = when
        if change == "created":
            row["created_at"] = when
            self.rows[name].append(row)
        self.changes.append(Change(name, row["id"], change, detail, when))

    def _phone(self, like: str | None) -> str:
        """A new valid NANP mobile number (E.164) in the area code of ``like`` (written in any format)."""
        digits = "".join(ch for ch in like or "" if ch.isdigit())[-10:]
        area = digits[:3] if len(digits) == 10 and digits[0] in "23456789" else "303"
        exchange = f"{self.rng.randint(2, 9)}{self.rng.randint(0, 9)}{self.rng.randint(2, 9)}"  # never N11
        return f"+1{area}{exchange}{self.rng.digits(4)}"

    def _new(self, template: dict[str, Any], **values: Any) -> dict[str, Any]:
        return {**template, "id": self.rng.uid(), "is_deleted": False, **values}

    # -- the changes -------------------------------------------------------------------------------------------
    def patients(self) -> None:
        for p in self._pick(list(self.clean_patients.values()), PHONE_EDITS):
            p["mobile_phone"] = self._phone(p.get("mobile_phone"))
            self._touch("patient", p, "updated", "mobile_phone")
        for p in self._pick(list(self.clean_patients.values()), ADDRESS_EDITS):
            suffix = self.rng.choice(names.SUFFIXES)[1]
            p["address_line1"] = f"{self.rng.randint(100, 9999)} {self.rng.choice(names.STREETS)} {suffix}"
            p["address_line2"] = None
            self._touch("patient", p, "updated", "address")

    def appointments(self) -> None:
        scheduled = sorted((a for a in self._clean("appointment") if a["status"] == "Scheduled"),
                           key=lambda a: (a["start_at"], a["id"]))
        if len(scheduled) < COMPLETED + CANCELLED + 1:
            raise ValueError("the tenant is too small for day 2: not enough scheduled appointments")
        for a in scheduled[:COMPLETED]:  # the earliest: today's visits, checked out
            when = self._when()
            start = min(dt.datetime.fromisoformat(a["start_at"].replace("Z", "+00:00")),
                        when - dt.timedelta(minutes=a["duration_min"] or 30))
            a.update(start_at=format_datetime(start), status="CheckedOut",
                     completed_at=format_datetime(start + dt.timedelta(minutes=a["duration_min"] or 30)))
            self._touch("appointment", a, "updated", "completed")
        for a in scheduled[COMPLETED:COMPLETED + CANCELLED]:
            a.update(status="Cancelled", cancel_reason="Patient request", cancelled_short_notice=True)
            self._touch("appointment", a, "updated", "cancelled")
        booked_twice = scheduled[COMPLETED + CANCELLED]
        booked_twice["is_deleted"] = True  # a visit booked twice by mistake
        self._touch("appointment", booked_twice, "deleted", "is_deleted")
        self.used |= {a["id"] for a in scheduled[:COMPLETED + CANCELLED + 1]}

    def ledger(self) -> None:
        ledger = self._clean("ledger_transaction")
        corrected = {r["corrects_transaction_id"] for r in self.rows["ledger_transaction"]
                     if r.get("corrects_transaction_id")}
        payments = [r for r in ledger if r["txn_type"] == "Payment" and r["id"] not in corrected]
        charges = [r for r in ledger if r["txn_type"] == "Charge" and r["id"] not in corrected]
        template = payments[0]
        for p in self._pick(list(self.clean_patients.values()), PAYMENTS):
            when = self._when()
            self._touch("ledger_transaction", self._payment(template, p, when, "-45.00"), "created", "payment")
        (charge,) = self._pick(charges, 1)
        billed = Decimal(charge["amount"])
        should_be = (billed * Decimal("0.8")).quantize(CENT)  # keyed with the wrong fee: 20% too high
        self._touch("ledger_transaction", self._new(
            charge, txn_type="Correction", amount=str(should_be - billed),
            transaction_date=self.at.date().isoformat(), corrects_transaction_id=charge["id"], claim_id=None,
            reference=None, comment=f"Correct Information: wrong amount, should be {should_be}"),
            "created", "correction")
        (entered_twice,) = self._pick(payments, 1)
        entered_twice["is_deleted"] = True
        self._touch("ledger_transaction", entered_twice, "deleted", "is_deleted")

    def _payment(self, template: dict[str, Any], patient: dict[str, Any], when: dt.datetime,
                 amount: str) -> dict[str, Any]:
        return self._new(template, patient_id=patient["id"], guarantor_id=patient["id"],
                         location_id=patient["primary_location_id"], amount=amount, payment_type="Visa",
                         service_date=when.date().isoformat(), transaction_date=when.date().isoformat(),
                         procedure_code=None, claim_id=None, corrects_transaction_id=None, reference=None,
                         comment=None)

    def communication(self) -> None:
        (logged_by_mistake,) = self._pick(self._clean("communication"), 1)
        logged_by_mistake["is_deleted"] = True
        self._touch("communication", logged_by_mistake, "deleted", "is_deleted")

    def new_patients(self) -> None:
        numbers = [int(p["patient_number"]) for p in self.rows["patient"] if str(p["patient_number"]).isdigit()]
        appt = next(a for a in self._clean("appointment") if a["provider_id"] and not a["provider_name"])
        ledger = self._clean("ledger_transaction")
        charge = next(r for r in ledger if r["txn_type"] == "Charge" and r["provider_id"])
        payment = next(r for r in ledger if r["txn_type"] == "Payment")
        templates = self.rng.sample(list(self.clean_patients.values()), NEW_PATIENTS)
        for n, template in enumerate(templates, start=1):
            gender = self.rng.choice(("Female", "Male"))
            first, last = names.first_name(self.rng, gender), self.rng.choice(names.LAST)
            born = dt.date(1950, 1, 1) + dt.timedelta(days=self.rng.randint(0, 365 * 60))
            street = f"{self.rng.randint(100, 9999)} {self.rng.choice(names.STREETS)} " \
                     f"{self.rng.choice(names.SUFFIXES)[1]}"
            today = self.at.date().isoformat()
            patient = self._new(template, patient_number=str(max(numbers, default=100000) + n), status="Active",
                                first_name=first, last_name=last, nickname=None, title=None,
                                date_of_birth=born.isoformat(), gender=gender,
                                mobile_phone=self._phone(template.get("mobile_phone")), home_phone=None, work_phone=None, preferred_phone="Mobile",
                                email=names.email_for(self.rng, first, last), address_line1=street,
                                address_line2=None, ssn_last_four=None, ortho_treatment_status=None,
                                model_box_number=None, medical_alerts=[], first_visit_date=today,
                                last_visit_date=today)
            self._touch("patient", patient, "created", "new_patient")
            exam_at = self._when() - dt.timedelta(hours=1)
            common = {"patient_id": patient["id"], "location_id": patient["primary_location_id"],
                      "provider_id": appt["provider_id"], "provider_name": None, "notes": None,
                      "cancel_reason": None, "cancelled_short_notice": None}
            self._touch("appointment", self._new(
                appt, **common, appointment_type="New Patient Exam", start_at=format_datetime(exam_at),
                duration_min=60, status="CheckedOut", cdt_codes=["D0150", "D0210"],
                confirmed_at=format_datetime(exam_at - dt.timedelta(hours=2)),
                completed_at=format_datetime(exam_at + dt.timedelta(minutes=60)), needs_follow_up=False),
                "created", "new_patient_exam")
            recall = exam_at + dt.timedelta(days=182)
            self._touch("appointment", self._new(
                appt, **common, appointment_type="Prophy", start_at=format_datetime(recall), duration_min=60,
                status="Scheduled", cdt_codes=["D1110"], confirmed_at=None, completed_at=None,
                needs_follow_up=False), "created", "recall_scheduled")
            self._touch("ledger_transaction", self._new(
                charge, patient_id=patient["id"], guarantor_id=patient["id"],
                location_id=patient["primary_location_id"], provider_id=appt["provider_id"], provider_name=None,
                amount="95.00", service_date=today, transaction_date=today, procedure_code="D0150", claim_id=None,
                corrects_transaction_id=None, reference=None, comment=None), "created", "new_patient_charge")
            self._touch("ledger_transaction", self._payment(payment, patient, exam_at, "-95.00"), "created",
                        "new_patient_payment")


def generate_day2(tenant: Path | str, out: Path | str, at: dt.datetime | None = None, seed: int = 2) -> list[Change]:
    """Write the day-2 tenant of ``tenant`` into ``out`` (with ``day2_changes.jsonl``); returns the changes.
    ``at`` (default: now, UTC) must be more than ``WINDOW`` after the tenant's ``as_of``."""
    tenant, out = Path(tenant), Path(out)
    at = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    manifest = read_manifest(tenant)
    if at - WINDOW <= manifest.as_of:
        raise ValueError(f"day 2 must come after the tenant: at must be later than {manifest.as_of + WINDOW}")
    rows = {name: _rows(tenant, name) for name in CHANGED}
    day2 = _Day2(rows, _tainted(tenant), at, seed)
    day2.patients()
    day2.appointments()
    day2.ledger()
    day2.communication()
    day2.new_patients()
    out.mkdir(parents=True, exist_ok=True)
    for name in (o.name for o in REGISTRY if o.name not in CHANGED):
        shutil.copyfile(tenant / f"{get(name).endpoint}.jsonl", out / f"{get(name).endpoint}.jsonl")
    shutil.copyfile(tenant / DEFECTS_FILE, out / DEFECTS_FILE)
    counts, by_location, files = dict(manifest.counts), dict(manifest.counts_by_location), dict(manifest.files)
    for name, table in rows.items():
        obj = get(name)
        data = b"".join(orjson.dumps(r) + b"\n" for r in table)
        (out / f"{obj.endpoint}.jsonl").write_bytes(data)
        counts[name] = len(table)
        files[f"{obj.endpoint}.jsonl"] = _sha256(data)
        if obj.location_field:
            by_location[name] = dict(sorted(Counter(r.get(obj.location_field) or NULL_LOCATION for r in table).items(),
                                            key=lambda kv: (kv[0] == NULL_LOCATION, kv[0])))
    (out / CHANGES_FILE).write_bytes(b"".join(orjson.dumps(asdict(c)) + b"\n" for c in day2.changes))
    write_manifest(out, replace(manifest, as_of=at, counts=counts, counts_by_location=by_location,
                                total_rows=sum(counts.values()), files=files))
    return day2.changes


def read_changes(directory: Path | str) -> list[Change]:
    return [Change(**orjson.loads(line)) for line in (Path(directory) / CHANGES_FILE).read_bytes().splitlines()
            if line.strip()]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
