"""Money on the ledger: charges, patient payments, discounts, refunds and corrections (claims in ``claims``).

Signs (an assumed convention): debits (charges, refunds, corrections that add) are positive, credits negative.
The ledger is append-only: a correction is an extra entry pointing at the one it corrects, never an edit.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from senseimig_dagster.sandbox.generator.claims import ClaimRun, benefit
from senseimig_dagster.sandbox.generator.core import DAY, Ctx, Weighted, money
from senseimig_dagster.sandbox.generator.model import Chart, Location, Policy, Proc, Reference, Visit

CARD_TYPES = Weighted(
    [
        ("Visa", 30),
        ("Mastercard", 20),
        ("Debit Card", 12),
        ("Cash", 8),
        ("Check", 10),
        ("ACH", 5),
        ("CareCredit", 5),
        ("American Express", 6),
        ("Discover", 4),
    ]
)
CORRECTION_RATE = 0.01
HOUR = dt.timedelta(hours=1)


def _day(loc: Location, at: dt.datetime) -> dt.date:
    return at.astimezone(loc.tz).date()


class Billing:
    """Posts one completed visit: charges, its claims, insurance and patient payments."""

    def __init__(self, ctx: Ctx, ref: Reference, chart: Chart, visit: Visit) -> None:
        self.ctx, self.ref, self.chart, self.visit = ctx, ref, chart, visit

    # -- ledger ----------------------------------------------------------------------------------------------
    def post(self, txn_type: str, amount: Decimal, at: dt.datetime, **extra: Any) -> None:
        ctx, visit = self.ctx, self.visit
        row = {
            "id": ctx.rng.uid(),
            "patient_id": self.chart.person.id,
            "guarantor_id": self.chart.person.guarantor_id,
            "location_id": visit.location.id,
            "provider_id": visit.provider.id,
            "txn_type": txn_type,
            "amount": money(amount),
            "service_date": visit.day,
            "transaction_date": _day(visit.location, at),
            **extra,
        }
        original = dict(row)  # before the emit hooks touch it
        ctx.emit("ledger_transaction", row, at)
        if ctx.rng.random() < CORRECTION_RATE and at + HOUR < ctx.as_of:
            self._correct(original, ctx.rng.between(at + HOUR, min(at + 45 * DAY, ctx.as_of)))

    def _correct(self, original: dict[str, Any], at: dt.datetime) -> None:
        """Sensei's "Remove Entry" or "Correct Information": an extra entry that reverses or adjusts."""
        rng = self.ctx.rng
        amount = original["amount"]
        if rng.random() < 0.4:
            txn_type, delta, comment = "Removal", -amount, "Remove Entry: posted in error"
        else:
            corrected = money(amount * Decimal(rng.choice(("0.5", "0.9", "1.1", "2", "0.1"))))
            txn_type, delta = "Correction", corrected - amount
            comment = f"Correct Information: wrong amount, should be {corrected}"
        row = dict(
            original,
            id=rng.uid(),
            txn_type=txn_type,
            amount=delta,
            corrects_transaction_id=original["id"],
            transaction_date=_day(self.visit.location, at),
            comment=comment,
        )
        self.ctx.emit("ledger_transaction", row, at)
        self.ctx.defect(
            "ledger_correction",
            "ledger_transaction",
            row["id"],
            field="corrects_transaction_id",
            detail=txn_type,
            of=original["id"],
        )

    # -- the visit -------------------------------------------------------------------------------------------
    def run(self) -> None:
        visit, rng = self.visit, self.ctx.rng
        charged = [p for p in visit.procs if p.fee > 0]
        for p in charged:
            self.post("Charge", p.fee, visit.end, procedure_code=p.code)
        total = sum((p.fee for p in charged), Decimal(0))
        policy = self.chart.policy(visit.day)
        claimable = [p for p in charged if p.category not in ("none", "ortho")]
        if policy and claimable:
            self._insured(policy, claimable, total)
        elif total > 0:
            due = total
            if rng.random() < 0.12:
                discount = money(total * Decimal("0.05"))
                self.post("Discount", -discount, visit.end, comment="Cash discount 5%")
                due -= discount
            self._patient_pays(due, visit.end, at_visit=0.75)

    def _patient_pays(self, due: Decimal, since: dt.datetime, at_visit: float) -> None:
        rng, ctx = self.ctx.rng, self.ctx
        if due <= 0:
            return
        if rng.random() < at_visit:
            at = since + rng.randint(60, 1800) * dt.timedelta(seconds=1)
        elif rng.random() < 0.6:
            at = rng.after(since, 10, 60)  # paid from the statement
        else:
            return  # still owing (A/R)
        if at <= ctx.as_of:
            kind = CARD_TYPES.pick(rng)
            reference = f"CHK {rng.randint(1000, 99999)}" if kind == "Check" else None
            self.post("Payment", -due, at, payment_type=kind, reference=reference)

    def _insured(self, policy: Policy, procs: list[Proc], total: Decimal) -> None:
        ctx, rng, visit = self.ctx, self.ctx.rng, self.visit
        allowed = [money(p.fee * Decimal(policy.plan.allowed_factor)) for p in procs]
        expected, deductible = benefit(policy, visit.day, procs, allowed)
        patient_estimate = max(sum(allowed, Decimal(0)) - expected, Decimal(0))
        paid_at_visit = Decimal(0)
        if patient_estimate > 0 and rng.random() < 0.6:
            paid_at_visit = patient_estimate
            self.post(
                "Payment",
                -patient_estimate,
                visit.end + rng.randint(60, 1800) * dt.timedelta(seconds=1),
                payment_type=CARD_TYPES.pick(rng),
                comment="Estimated patient portion",
            )
        created = visit.end + rng.randint(0, 3 * 3600) * dt.timedelta(seconds=1)
        result = ClaimRun(self, policy, procs, allowed, expected, "Primary").run(created)
        if result is None:
            return
        paid, write_off, settled = result
        year = policy.benefit_year(visit.day)
        policy.paid_by_year[year] = policy.paid_by_year.get(year, Decimal(0)) + paid
        if paid:
            policy.deductible_by_year[year] = policy.deductible_by_year.get(year, Decimal(0)) + deductible
        secondary = self.chart.policy(visit.day, "Secondary")
        owed = total - write_off - paid
        if secondary and paid and owed > 0:
            pct = Decimal(max(secondary.plan.coverage.get(p.category, 0) for p in procs)) / 100
            result2 = ClaimRun(self, secondary, procs, allowed, money(owed * pct), "Secondary").run(
                rng.after(settled, 1, 7)
            )
            if result2:
                owed -= result2[0]
                settled = result2[2]
        owed -= paid_at_visit
        if owed > 0:
            self._patient_pays(owed, settled, at_visit=0.0)
        elif owed < 0 and rng.random() < 0.7 and settled + 3 * DAY < ctx.as_of:
            self.post(
                "Refund",
                -owed,
                min(rng.after(settled, 3, 30), ctx.as_of),
                payment_type="Check",
                comment="Overpayment refund",
            )
