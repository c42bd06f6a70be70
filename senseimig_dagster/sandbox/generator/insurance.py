"""Coverage rows: the patient's policies (with remaining benefits as of the tenant date), eligibility checks,
and referrals.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from senseimig_dagster.sandbox.generator import correspondence
from senseimig_dagster.sandbox.generator.core import DAY, UTC, Ctx, Weighted
from senseimig_dagster.sandbox.generator.model import Chart, Reference

ELIGIBILITY_RESULT = Weighted([("Active", 93), ("Error", 4), ("Inactive", 3)])
RESPONSE_CODE = {"Active": "1", "Inactive": "6", "Error": "42"}  # X12 271 EB01 / AAA reject reason
ELIGIBILITY_CHANCE = 0.3  # checks run before this share of visits (eVerifications is a paid service)


def eligibility(ctx: Ctx, chart: Chart, before: dt.datetime) -> None:
    """A real-time eligibility check a day or so before a visit; the payer's response is saved as HTML."""
    rng = ctx.rng
    policy = chart.policy(before.date())
    if policy is None or not policy.plan.payer.eligibility_enabled or rng.random() >= ELIGIBILITY_CHANCE:
        return
    checked = max(before - rng.uniform(0.5, 3) * DAY, chart.created)
    if checked > ctx.as_of:
        return
    result = ELIGIBILITY_RESULT.pick(rng)
    plan = policy.plan
    year = policy.benefit_year(checked.date())
    answered = result != "Error"
    ctx.emit(
        "eligibility_check",
        {
            "id": rng.uid(),
            "patient_policy_id": policy.id,
            "patient_id": chart.person.id,
            "payer_id": plan.payer.id,
            "checked_at": checked,
            "result": result,
            "coverage_pct": plan.coverage if result == "Active" else None,
            "annual_max_remaining": plan.annual_max - policy.paid_by_year.get(year, Decimal(0))
            if answered
            else None,
            "deductible_met": policy.deductible_by_year.get(year, Decimal(0)) if answered else None,
            "waiting_period_months": rng.choice((0,) * 8 + (6, 12)) if answered else None,
            "payer_response_code": RESPONSE_CODE[result],
            "document_id": correspondence.eligibility_document(ctx, chart, checked) if answered else None,
        },
        checked,
    )


def emit_policies(ctx: Ctx, chart: Chart) -> None:
    rng, today = ctx.rng, ctx.as_of.date()
    for policy in chart.person.policies:
        plan = policy.plan
        year = policy.benefit_year(today)
        ended = policy.termination is not None
        start = dt.datetime.combine(policy.effective, dt.time(15), UTC)
        ctx.emit(
            "patient_policy",
            {
                "id": policy.id,
                "patient_id": chart.person.id,
                "insurance_plan_id": plan.id,
                # a newer Primary demotes the old one to Secondary (documented Sensei behaviour)
                "coverage_order": "Secondary" if ended else policy.order,
                "policyholder_id": policy.holder_id,
                "relationship_to_policyholder": policy.relationship,
                "subscriber_id": policy.subscriber_id,
                "effective_date": policy.effective,
                "termination_date": policy.termination,
                "status": "Inactive" if ended else "Active",
                "assignment_of_benefits": rng.random() < 0.9,
                "remaining_benefit": None
                if ended
                else max(plan.annual_max - policy.paid_by_year.get(year, Decimal(0)), Decimal(0)),
                "remaining_deductible": None
                if ended
                else max(plan.deductible - policy.deductible_by_year.get(year, Decimal(0)), Decimal(0)),
            },
            max(start, chart.created),
        )


def referrals(ctx: Ctx, ref: Reference, chart: Chart) -> None:
    """Most patients say how they found the practice; a few twice (the newest is the Active Referral)."""
    rng = ctx.rng
    if rng.random() >= 0.65:
        return
    for k in range(1 + (rng.random() < 0.1)):
        at = chart.created if k == 0 else rng.between(chart.created, ctx.as_of)
        ctx.emit(
            "patient_referral",
            {
                "id": rng.uid(),
                "patient_id": chart.person.id,
                "referral_source_id": rng.choice(ref.referral_source_ids),
                "referred_on": at.date(),
            },
            at,
        )
