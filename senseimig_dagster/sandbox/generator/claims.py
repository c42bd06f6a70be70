"""Insurance claims: benefit estimates, an assumed outcome mix (paid, denied, rejected and resubmitted),
each claim's time-ordered status history, and the insurance payments and write-offs they post.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import TYPE_CHECKING

from senseimig_dagster.sandbox.generator import correspondence
from senseimig_dagster.sandbox.generator.core import DAY, Weighted, money
from senseimig_dagster.sandbox.generator.model import Policy, Proc, Staff

if TYPE_CHECKING:
    from senseimig_dagster.sandbox.generator.billing import Billing

INSURANCE_TYPES = Weighted(
    [("Insurance - EFT", 60), ("Insurance - Check", 35), ("Insurance - Credit Card", 5)]
)
CLAIM_OUTCOME = Weighted([("paid", 88), ("denied", 7), ("rejected", 5)])
# fmt: off
DENIALS = (
    "Frequency limitation exceeded", "Missing tooth clause", "Waiting period not met",
    "Not a covered benefit", "Coverage terminated on date of service",
)
REJECTIONS = (
    "Invalid subscriber ID", "Insurer not found (check payer ID)", "Missing rendering provider NPI",
    "Patient date of birth does not match",
)
# fmt: on


def benefit(
    policy: Policy, day: dt.date, procs: list[Proc], allowed: list[Decimal]
) -> tuple[Decimal, Decimal]:
    """What the plan should pay (coverage after deductible, capped by the annual maximum); deductible used."""
    plan, year = policy.plan, policy.benefit_year(day)
    deductible_left = max(plan.deductible - policy.deductible_by_year.get(year, Decimal(0)), Decimal(0))
    used = Decimal(0)
    expected = Decimal(0)
    for p, amount in zip(procs, allowed, strict=True):
        if p.category in ("basic", "major") and deductible_left > used:
            applied = min(deductible_left - used, amount)
            used += applied
            amount -= applied
        expected += money(amount * plan.coverage.get(p.category, 0) / 100)
    left = plan.annual_max - policy.paid_by_year.get(year, Decimal(0))
    return max(min(expected, left), Decimal(0)), used


class ClaimRun:
    """One claim and, if rejected, its resubmission: events, claim rows and the insurance ledger lines."""

    def __init__(
        self,
        billing: Billing,
        policy: Policy,
        procs: list[Proc],
        allowed: list[Decimal],
        expected: Decimal,
        order: str,
    ) -> None:
        self.b, self.ctx, self.policy, self.order = billing, billing.ctx, policy, order
        self.billed = sum((p.fee for p in procs), Decimal(0))
        self.allowed = sum(allowed, Decimal(0))
        self.expected = expected
        self.major = any(p.category == "major" for p in procs)

    def run(self, created: dt.datetime) -> tuple[Decimal, Decimal, dt.datetime] | None:
        """(insurance paid, write-off, when settled) once the claim is final by as_of, else None."""
        ctx = self.ctx
        if created > ctx.as_of:
            return None
        outcome = (
            CLAIM_OUTCOME.pick(ctx.rng)
            if self.order == "Primary"
            else ("paid" if ctx.rng.random() < 0.85 else "denied")
        )
        claim_id = ctx.rng.uid()
        if outcome == "rejected":
            resubmit_at = self._rejected(claim_id, created)
            if resubmit_at is None:
                return None
            return self._claim(
                ctx.rng.uid(), resubmit_at, "paid" if ctx.rng.random() < 0.9 else "denied", claim_id
            )
        return self._claim(claim_id, created, outcome, None)

    def _number(self) -> str:
        return f"C-{self.ctx.next_number('claim'):06d}"

    def _rejected(self, claim_id: str, created: dt.datetime) -> dt.datetime | None:
        rng = self.ctx.rng
        submitted = created + rng.randint(600, 36 * 3600) * dt.timedelta(seconds=1)
        rejected = self.ctx.rng.after(submitted, 1, 3)
        resubmitted = self.ctx.rng.after(rejected, 1, 5)
        number = self._number()
        new_number = f"C-{self.ctx.peek_number('claim'):06d}" if resubmitted <= self.ctx.as_of else None
        events = [
            ("Submitted", submitted, "A1", None, None),
            ("Rejected", rejected, "A7", rng.choice(REJECTIONS), None),
            ("Resubmitted", resubmitted, None, f"Resubmitted as Claim #{new_number}", self._biller(rejected)),
        ]
        self._emit(claim_id, number, created, events, None, Decimal(0), Decimal(0))
        return resubmitted if new_number else None

    def _claim(
        self, claim_id: str, created: dt.datetime, outcome: str, replaces: str | None
    ) -> tuple[Decimal, Decimal, dt.datetime] | None:
        ctx, rng = self.ctx, self.ctx.rng
        number = self._number()
        submitted = created + rng.randint(600, 36 * 3600) * dt.timedelta(seconds=1)
        accepted = ctx.rng.after(submitted, 1, 3)
        settled = (
            submitted + max(2.0, rng.lognormvariate(math.log(14), 0.6)) * DAY
        )  # median 14 days, tail past 60
        events = [("Submitted", submitted, "A1", None, None), ("Accepted", accepted, "A2", None, None)]
        if rng.random() < 0.3:
            events.insert(0, ("Queued", created, None, None, None))
        if rng.random() < 0.1:
            events.append(
                ("PendingReview", ctx.rng.after(accepted, 0, 3), "P2", "Payer reviewing x-rays", None)
            )
        settled = max(settled, max(e[1] for e in events) + DAY)
        paid = write_off = Decimal(0)
        if outcome == "denied":
            events.append(("Denied", settled, "F2", rng.choice(DENIALS), self._biller(settled)))
        else:
            full = rng.random() < 0.7
            paid = (
                self.expected
                if full
                else money(self.expected * Decimal(str(round(rng.uniform(0.4, 0.9), 2))))
            )
            write_off = self.billed - self.allowed if self.order == "Primary" else Decimal(0)
            events.append(("Paid" if full else "PartiallyPaid", settled, "F1", None, self._biller(settled)))
        events.sort(key=lambda e: e[1])
        final = settled <= ctx.as_of
        self._emit(
            claim_id,
            number,
            created,
            events,
            replaces,
            paid if final else Decimal(0),
            write_off if final else Decimal(0),
        )
        if not final:
            return None
        if paid > 0:
            kind = INSURANCE_TYPES.pick(rng)
            reference = f"{'EFT' if kind.endswith('EFT') else 'CHK'} {rng.randint(100000, 999999999)}"
            self.b.post(
                "InsurancePayment", -paid, settled, payment_type=kind, claim_id=claim_id, reference=reference
            )
        if write_off > 0 and outcome != "denied":
            self.b.post(
                "WriteOff", -write_off, settled, claim_id=claim_id, comment="PPO contractual adjustment"
            )
        return paid, write_off if outcome != "denied" else Decimal(0), settled

    def _biller(self, when: dt.datetime) -> str | None:
        staff: list[Staff] = self.b.ref.staff_at(
            self.b.ref.users, self.b.visit.location, when, ("Billing", "OfficeManager", "Admin")
        )
        return self.ctx.rng.choice(staff).id if staff else None

    def _emit(
        self,
        claim_id: str,
        number: str,
        created: dt.datetime,
        events: list[tuple],
        replaces: str | None,
        paid: Decimal,
        write_off: Decimal,
    ) -> None:
        ctx, visit = self.ctx, self.b.visit
        happened = [e for e in events if e[1] <= ctx.as_of]
        last = happened[-1] if happened else ("Queued", created, None, None, None)
        provider = (
            visit.provider
            if visit.provider.npi
            else next(
                (p for p in self.b.ref.providers if p.location is visit.location and p.role == "Doctor"),
                visit.provider,
            )
        )
        submitted = next((e[1] for e in happened if e[0] == "Submitted"), None)
        ctx.emit(
            "claim",
            {
                "id": claim_id,
                "claim_number": number,
                "patient_id": self.b.chart.person.id,
                "patient_policy_id": self.policy.id,
                "provider_id": provider.id,
                "location_id": visit.location.id,
                "claim_type": "Svc",
                "status": last[0],
                "status_change_note": last[3] if last[0] in ("Resubmitted", "Denied", "Rejected") else None,
                "replaces_claim_id": replaces,
                "coverage_order": self.order,
                "billed_amount": self.billed,
                "paid_amount": paid,
                "write_off_amount": write_off,
                "submitted_at": submitted,
                "paid_at": last[1] if last[0] in ("Paid", "PartiallyPaid") else None,
                "preauth_reference": f"PA-{ctx.rng.digits(8)}"
                if self.major and ctx.rng.random() < 0.3
                else None,
                "x12_277_category": last[2],
            },
            created,
            last[1],
        )
        for status, when, category, note, by in happened:
            ctx.emit(
                "claim_status_event",
                {
                    "id": ctx.rng.uid(),
                    "claim_id": claim_id,
                    "status": status,
                    "occurred_at": when,
                    "x12_277_category": category,
                    "note": note,
                    "changed_by": by,
                },
                when,
            )
        correspondence.claim_documents(ctx, self.b.chart, self.b.visit, claim_id, self.major, created)
