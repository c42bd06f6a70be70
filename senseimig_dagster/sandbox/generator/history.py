"""One patient's life with the practice, in time order: visits and everything each visit leaves behind."""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
from typing import Any

from senseimig_dagster.sandbox.generator import clinical, codes, correspondence, insurance, plans, schedule
from senseimig_dagster.sandbox.generator.billing import Billing
from senseimig_dagster.sandbox.generator.core import DAY, Ctx
from senseimig_dagster.sandbox.generator.defects import Declared, duplicate_of, patient_defects
from senseimig_dagster.sandbox.generator.model import Chart, Location, Person, PlanItem, Reference, Visit
from senseimig_dagster.sandbox.generator.people import PHONE_FORMAT, patient_row
from senseimig_dagster.sandbox.generator.schedule import KINDS, Request

PERIO_CHARTED = 0.23  # of adults; with children never charted, about 15% of patients
EXTRACTIONS = frozenset({"D7140", "D7210", "D7230"})
CHART_VISITS = frozenset({"New Patient Exam", "Recall – Adult Prophy", "Perio Maintenance"})
MAX_ATTEMPTS = 3  # a visit rebooked this often is finally kept


def _missing_teeth(ctx: Ctx, age: int) -> set[int]:
    rng = ctx.rng
    if age < 18:
        return set()
    missing = {t for t in codes.WISDOM if rng.random() < 0.65}
    if rng.random() < age / 100:
        missing.update(rng.sample(codes.PERMANENT, rng.randint(1, max(1, age // 20))))
    return missing


def new_chart(ctx: Ctx, person: Person) -> Chart:
    rng = ctx.rng
    age = ctx.as_of.year - person.dob.year
    charted = age >= 18 and rng.random() < PERIO_CHARTED
    created = max(person.joined - rng.randint(0, 14 * 86400) * dt.timedelta(seconds=1), ctx.start)
    return Chart(
        person,
        created,
        schedule.BROKEN_MULTIPLIER.pick(rng),
        perio_exams=(1 + (rng.random() < 0.3)) if charted else 0,
        perio_disease=charted and rng.random() < 0.5,
        missing=_missing_teeth(ctx, age),
    )


class History:
    def __init__(self, ctx: Ctx, ref: Reference, chart: Chart) -> None:
        self.ctx, self.ref, self.chart = ctx, ref, chart
        self.queue: list[Request] = []
        self.seq = 0
        self.last_activity = chart.created
        self.declared: Declared = []
        self.row: dict[str, Any] = {}

    def push(
        self, when: dt.datetime, kind: str, items: list[PlanItem] | None = None, attempts: int = 0
    ) -> None:
        self.seq += 1
        heapq.heappush(self.queue, Request(when, self.seq, kind, items, attempts))

    def run(self, requests: list[Request]) -> None:
        """Play the requested visits, and every visit they lead to, in time order."""
        for r in requests:
            self.push(r.when, r.kind, r.items, r.attempts)
        first = True
        while self.queue:
            self._visit(heapq.heappop(self.queue), first)
            first = False

    def _location(self, when: dt.datetime) -> Location:
        rng, home = self.ctx.rng, self.chart.person.location
        if rng.random() < 0.95:
            return home
        return rng.choice([loc for loc in self.ref.locations if loc.opened <= when])

    def _visit(self, request: Request, first: bool) -> None:
        ctx, chart, rng = self.ctx, self.chart, self.ctx.rng
        kind = schedule.recall_kind(chart, request.when) if request.kind == "recall" else request.kind
        minutes, role = KINDS[kind]
        loc = self._location(request.when)
        start, day, duration = schedule.slot(ctx, loc, request.when, minutes)
        provider = schedule.provider_for(ctx, self.ref, loc, role, start)
        procs = (
            [item.proc for item in request.items]
            if request.items
            else clinical.procedures_for(ctx, chart, kind, day, loc)
        )
        visit = Visit(
            rng.uid(),
            kind,
            start,
            day,
            loc,
            provider,
            procs,
            duration,
            start + duration * dt.timedelta(minutes=1),
        )
        booked = schedule.booked_at(ctx, chart, start, first)
        if start > ctx.as_of:
            for item in request.items or ():
                item.status = "Scheduled"
            schedule.emit_appointment(ctx, chart, visit, "Future", booked)
            correspondence.appointment_messages(ctx, self.ref, chart, visit, "Future")
            return
        insurance.eligibility(ctx, chart, start)
        status = schedule.outcome(ctx, chart) if request.attempts < MAX_ATTEMPTS else "Completed"
        schedule.emit_appointment(ctx, chart, visit, status, booked)
        correspondence.appointment_messages(ctx, self.ref, chart, visit, status)
        self.last_activity = max(self.last_activity, min(visit.end, ctx.as_of))
        if status == "Completed":
            self._completed(visit, request.items)
        elif status == "Rescheduled" or request.items:  # planned work is rebooked; a missed recall is not
            self.push(start + rng.randint(2, 28) * DAY, request.kind, request.items, request.attempts + 1)

    def _completed(self, visit: Visit, items: list[PlanItem] | None) -> None:
        ctx, chart, rng = self.ctx, self.chart, self.ctx.rng
        chart.first_visit = min(chart.first_visit or visit.day, visit.day)
        chart.last_visit = max(chart.last_visit or visit.day, visit.day)
        for item in items or ():
            item.status, item.service_date = "Completed", visit.day
        chart.missing.update(int(p.tooth) for p in visit.procs if p.code in EXTRACTIONS and p.tooth.isdigit())
        clinical.visit_note(ctx, chart, visit)
        if chart.perio_exams and visit.kind in CHART_VISITS and rng.random() < 0.6:
            chart.perio_exams -= 1
            clinical.perio_exam(ctx, chart, visit)
        for when, kind, plan_items in plans.maybe_plan(ctx, chart, visit):
            self.push(when, kind, plan_items)
        Billing(ctx, self.ref, chart, visit).run()
        correspondence.visit_documents(ctx, chart, visit)

    def finish(self) -> dict[str, Any]:
        """Rows that summarise the history, then the patient row itself (returned as written)."""
        ctx, chart, ref = self.ctx, self.chart, self.ref
        plans.emit_plans(ctx, chart)
        insurance.emit_policies(ctx, chart)
        insurance.referrals(ctx, ref, chart)
        span_end = min(ctx.as_of, self.last_activity + 120 * DAY)
        clinical.admin_notes(ctx, chart, span_end)
        correspondence.patient_messages(ctx, ref, chart, span_end)
        row = patient_row(ctx, ref, chart.person, chart.first_visit, chart.last_visit)
        self.declared = patient_defects(ctx, row)
        ctx.emit("patient", row, chart.created, self.last_activity)
        return row


def patient(ctx: Ctx, ref: Reference, person: Person) -> History:
    chart = new_chart(ctx, person)
    history = History(ctx, ref, chart)
    history.run(schedule.initial_requests(ctx, chart))
    history.row = history.finish()
    return history


def duplicate(ctx: Ctx, ref: Reference, original: History) -> None:
    """A second record of the same person, right after the original; half have a legacy visit of their own."""
    rng = ctx.rng
    chart = original.chart
    row = duplicate_of(ctx, ref, original.row, original.declared, PHONE_FORMAT)
    created = rng.between(chart.created, ctx.as_of)
    twin = dataclasses.replace(
        chart.person,
        id=row["id"],
        policies=[],
        joined=created,
        location=next(loc for loc in ref.locations if loc.id == row["primary_location_id"]),
    )
    twin_chart = dataclasses.replace(
        chart,
        person=twin,
        created=created,
        plans=[],
        perio_exams=0,
        missing=set(chart.missing),
        first_visit=None,
        last_visit=None,
    )
    history = History(ctx, ref, twin_chart)
    if rng.random() < 0.5:  # one kept visit under the second record
        history.run([Request(created + rng.randint(1, 20) * DAY, 0, "recall", None, MAX_ATTEMPTS)])
        plans.emit_plans(ctx, twin_chart)
    row["first_visit_date"] = twin_chart.first_visit or row["first_visit_date"]
    row["last_visit_date"] = twin_chart.last_visit
    ctx.emit("patient", row, created, history.last_activity)
