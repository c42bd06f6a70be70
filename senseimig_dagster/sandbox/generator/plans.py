"""Treatment plans: findings at an exam become CDT-coded items; accepted items are booked as later visits."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from senseimig_dagster.sandbox.generator import codes
from senseimig_dagster.sandbox.generator.codes import proc
from senseimig_dagster.sandbox.generator.core import DAY, Ctx, Weighted, money
from senseimig_dagster.sandbox.generator.model import Chart, PlanItem, Proc, TreatmentPlan, Visit
from senseimig_dagster.sandbox.generator.schedule import age_at

# fmt: off
PLAN_CHANCE = {
    "New Patient Exam": 0.45, "Emergency": 0.6, "Recall – Adult Prophy": 0.1, "Recall – Child Prophy": 0.08,
    "Perio Maintenance": 0.08,
}
# fmt: on
DECISION = Weighted([("Accepted", 55), ("Declined", 20), ("Undecided", 25)])
ADULT_FINDINGS = Weighted(
    [
        ("fillings", 45),
        ("crown", 15),
        ("endo", 6),
        ("extraction", 10),
        ("srp", 6),
        ("night_guard", 4),
        ("implant", 3),
        ("denture", 1),
    ]
)
CHILD_FINDINGS = Weighted([("sealants", 40), ("primary_fillings", 35), ("ss_crown", 15), ("pulpotomy", 10)])
SURFACE_COUNT = Weighted([(1, 30), (2, 40), (3, 20), (4, 10)])
# fmt: off
_PRIMARY_POSTERIOR = (
    "A", "B", "I", "J", "K", "L", "S", "T",
)
_VISIT_KIND = (
    ("D27", "Crown Prep"), ("D295", "Crown Prep"), ("D3", "Endo"), ("D7", "Extraction"),
    ("D434", "Scaling and Root Planing"), ("D6", "Implant"), ("D5", "Denture"), ("D9944", "Night Guard"),
    ("D1351", "Sealants"),
)
# fmt: on


def visit_kind(code: str) -> str:
    return next((kind for prefix, kind in _VISIT_KIND if code.startswith(prefix)), "Restorative")


def _present(chart: Chart, teeth: tuple[int, ...] | list[int]) -> list[int]:
    return [t for t in teeth if t not in chart.missing] or list(teeth)


def _findings(ctx: Ctx, chart: Chart, visit: Visit) -> list[Proc]:
    rng, loc = ctx.rng, visit.location
    age = age_at(chart, visit.day)
    if chart.perio_disease and visit.kind == "New Patient Exam":
        return [proc(rng.choice(("D4341", "D4341", "D4342")), loc, q) for q in codes.random_quadrants(rng, 4)]
    out: list[Proc] = []
    for _ in range(1 + (rng.random() < 0.35) + (rng.random() < 0.1)):
        finding = CHILD_FINDINGS.pick(rng) if age < 13 else ADULT_FINDINGS.pick(rng)
        out += _procs_for(ctx, chart, finding, age, loc)
    return out


def _procs_for(ctx: Ctx, chart: Chart, finding: str, age: int, loc) -> list[Proc]:
    rng = ctx.rng
    teeth = _present(chart, codes.PERMANENT)
    if finding == "fillings":
        out = []
        for tooth in map(str, rng.sample(teeth, min(len(teeth), rng.randint(1, 3)))):
            count = SURFACE_COUNT.pick(rng)
            code = codes.restoration_code(tooth, count, amalgam=rng.random() < 0.15)
            out.append(proc(code, loc, tooth, codes.surfaces_for(rng, tooth, codes.CDT[code].surfaces)))
        return out
    if finding in ("crown", "endo"):
        tooth = rng.choice(_present(chart, [t for t in codes.PERMANENT if not codes.is_anterior(str(t))]))
        crown = [proc(rng.choice(("D2740", "D2740", "D2750")), loc, str(tooth))]
        core = [proc("D2950", loc, str(tooth))] if finding == "endo" or rng.random() < 0.5 else []
        endo = [proc(codes.endo_code(tooth), loc, str(tooth))] if finding == "endo" else []
        return endo + core + crown
    if finding == "extraction":
        wisdom = [t for t in codes.WISDOM if t not in chart.missing]
        if wisdom and rng.random() < 0.4:
            return [proc(rng.choice(("D7210", "D7230")), loc, str(rng.choice(wisdom)))]
        return [proc(rng.choice(("D7140", "D7140", "D7210")), loc, str(rng.choice(teeth)))]
    if finding == "srp":
        return [
            proc(rng.choice(("D4341", "D4342")), loc, q)
            for q in codes.random_quadrants(rng, rng.randint(2, 4))
        ]
    if finding == "night_guard":
        return [proc("D9944", loc, rng.choice(("U", "L")))]
    if finding == "implant":
        gaps = [t for t in chart.missing if t not in codes.WISDOM]
        return [proc("D6010", loc, str(rng.choice(gaps) if gaps else rng.choice(teeth)))]
    if finding == "denture":
        return [proc("D5110", loc, "U")]
    if finding == "sealants":
        if age < 6:
            return [proc("D1206", loc)]
        return [proc("D1351", loc, str(t)) for t in sorted(rng.sample((3, 14, 19, 30), rng.randint(2, 4)))]
    tooth = rng.choice(_PRIMARY_POSTERIOR)
    if finding == "primary_fillings":
        count = rng.choice((1, 2, 2, 3))
        code = codes.restoration_code(tooth, count, amalgam=False)
        return [proc(code, loc, tooth, codes.surfaces_for(rng, tooth, codes.CDT[code].surfaces))]
    if finding == "pulpotomy":
        return [proc("D3220", loc, tooth), proc("D2930", loc, tooth)]
    return [proc("D2930", loc, tooth)]


def maybe_plan(ctx: Ctx, chart: Chart, visit: Visit) -> list[tuple[dt.datetime, str, list[PlanItem]]]:
    """Perhaps present a plan at this exam; the visits it books: (wished time, appointment type, items)."""
    rng = ctx.rng
    chance = (
        1.0 if chart.perio_disease and visit.kind == "New Patient Exam" else PLAN_CHANCE.get(visit.kind, 0)
    )
    if rng.random() >= chance:
        return []
    procs = _findings(ctx, chart, visit)
    chunks: list[list[Proc]] = []
    for p in procs:  # consecutive procedures of the same kind share a visit, up to three per visit
        if chunks and visit_kind(chunks[-1][0].code) == visit_kind(p.code) and len(chunks[-1]) < 3:
            chunks[-1].append(p)
        else:
            chunks.append([p])
    items, seq = [], 0
    for n, chunk in enumerate(chunks, 1):
        for p in chunk:
            seq += 1
            items.append(PlanItem(rng.uid(), p, seq, f"Phase {min(n, 3)}"))
    decision = DECISION.pick(rng)
    accepted_at = (
        visit.end + rng.randint(0, 14 * 86400) * dt.timedelta(seconds=1) if decision == "Accepted" else None
    )
    if accepted_at and accepted_at > ctx.as_of:
        decision, accepted_at = "Undecided", None
    plan = TreatmentPlan(
        rng.uid(),
        len(chart.plans) + 1,
        visit,
        items,
        decision,
        accepted_at,
        decision == "Accepted" and rng.random() < 0.7,
    )
    chart.plans.append(plan)
    if decision != "Accepted":
        return []
    booked = chunks if rng.random() >= 0.15 else chunks[:1]  # some patients stop after the first phase
    out, cursor = [], 0
    for n, chunk in enumerate(booked):
        chunk_items = items[cursor : cursor + len(chunk)]
        cursor += len(chunk)
        when = accepted_at + rng.randint(7, 40) * (n + 1) * DAY
        out.append((when, visit_kind(chunk[0].code), chunk_items))
    return out


def emit_plans(ctx: Ctx, chart: Chart) -> None:
    for plan in chart.plans:
        _emit_plan(ctx, chart, plan)


def _plan_status(ctx: Ctx, plan: TreatmentPlan) -> str:
    statuses = {item.status for item in plan.items}
    if plan.decision == "Declined":
        return "Declined"
    if plan.decision == "Undecided":
        return "Pending" if ctx.as_of - plan.visit.end < 60 * DAY else "Unscheduled"
    if statuses == {"Completed"}:
        return "Completed"
    if "Completed" in statuses:
        return "InProgress"
    return "Scheduled" if "Scheduled" in statuses else "Unscheduled"


def _emit_plan(ctx: Ctx, chart: Chart, plan: TreatmentPlan) -> None:
    rng = ctx.rng
    visit = plan.visit
    policy = chart.policy(visit.day)
    for item in plan.items:
        if item.status == "Proposed":
            item.status = {"Declined": "Rejected", "Accepted": "Accepted"}.get(plan.decision, "Proposed")
    status = _plan_status(ctx, plan)
    done = [item.service_date for item in plan.items if item.service_date]
    rows = []
    for item in plan.items:
        pct = policy.plan.coverage.get(item.proc.category, 0) if policy else 0
        est = money(item.proc.fee * pct / 100)
        rows.append(
            {
                "id": item.id,
                "treatment_plan_id": plan.id,
                "patient_id": chart.person.id,
                "phase": item.phase,
                "sequence": item.sequence,
                "code": item.proc.code,
                "tooth": item.proc.tooth,
                "surfaces": item.proc.surfaces,
                "item_status": item.status,
                "fee": item.proc.fee,
                "est_insurance": est,
                "est_patient": item.proc.fee - est,
                "service_date": item.service_date,
            }
        )
    last_change = max(
        [
            visit.end,
            plan.accepted_at or visit.end,
            *(dt.datetime.combine(d, dt.time(23), visit.start.tzinfo) for d in done),
        ]
    )
    ctx.emit(
        "treatment_plan",
        {
            "id": plan.id,
            "patient_id": chart.person.id,
            "provider_id": visit.provider.id,
            "location_id": visit.location.id,
            "name": f"Plan {plan.number} – {visit.day.isoformat()}",
            "status": status,
            "presented_at": visit.end,
            "accepted_at": plan.accepted_at,
            "completed_date": max(done) if status == "Completed" else None,
            "signed": plan.signed,
            "total_fee": sum((r["fee"] for r in rows), Decimal(0)),
            "est_insurance": sum((r["est_insurance"] for r in rows), Decimal(0)),
            "est_patient": sum((r["est_patient"] for r in rows), Decimal(0)),
        },
        visit.end,
        last_change,
    )
    for row in rows:
        ctx.emit("treatment_plan_item", dict(row), visit.end, last_change)
    if rows and ctx.take("dup_plan_item"):  # the same procedure charted twice on the plan
        original = rng.choice(rows)
        copy = dict(original, id=rng.uid())
        ctx.emit(
            "treatment_plan_item", copy, visit.end + rng.randint(1, 90) * dt.timedelta(seconds=1), last_change
        )
        ctx.defect(
            "duplicate_chart_entry",
            "treatment_plan_item",
            copy["id"],
            detail="same plan, code and tooth",
            of=original["id"],
        )
