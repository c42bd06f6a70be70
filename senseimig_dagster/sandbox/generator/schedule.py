"""Appointments: when a patient is seen, by whom, on the location's grid, and how the visit turned out (an
assumed mix of completed, cancelled, no-show and rescheduled visits).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from senseimig_dagster.sandbox.generator.core import DAY, UTC, Ctx, Weighted
from senseimig_dagster.sandbox.generator.model import Chart, Location, PlanItem, Reference, Staff, Visit

# appointment type -> (nominal minutes, provider role)
# fmt: off
KINDS: dict[str, tuple[int, str]] = {
    "New Patient Exam": (90, "Doctor"), "Recall – Adult Prophy": (60, "Hygienist"),
    "Recall – Child Prophy": (45, "Hygienist"), "Perio Maintenance": (60, "Hygienist"),
    "Emergency": (30, "Doctor"), "Restorative": (60, "Doctor"), "Crown Prep": (90, "Doctor"),
    "Endo": (90, "Doctor"), "Extraction": (45, "Doctor"), "Scaling and Root Planing": (90, "Hygienist"),
    "Implant": (90, "Doctor"), "Denture": (60, "Doctor"), "Night Guard": (30, "Doctor"),
    "Sealants": (30, "Hygienist"),
}
# fmt: on
HYGIENE_KINDS = frozenset(
    {
        "Recall – Adult Prophy",
        "Recall – Child Prophy",
        "Perio Maintenance",
        "Scaling and Root Planing",
        "Sealants",
    }
)
LIFETIME_YEARS = 5.5  # mean time a patient stays with the practice
RECALL_KEPT = 0.85  # share of recall intervals in which the patient books at all
# fmt: off
CANCEL_REASONS = (
    "Patient ill", "Schedule conflict", "Transportation", "Financial", "Weather", "Family emergency",
    "Patient request", "Office closed",
)
APPOINTMENT_NOTES = (
    "Pt requests morning appts", "Premed taken", "Needs updated insurance card", "Nervous pt",
    "Bring x-rays from previous dentist", "Wheelchair access", "Parent to accompany", "Pt prefers Dr. only",
    "Running late, called ahead",
)
# fmt: on
# per-patient multiplier on broken appointments: 20% of patients cause ~70% of them (a reported Pareto skew)
BROKEN_MULTIPLIER = Weighted([(0.35, 80), (3.6, 20)])


@dataclass(order=True, slots=True)
class Request:
    when: dt.datetime
    seq: int
    kind: str = field(compare=False)
    items: list[PlanItem] | None = field(compare=False, default=None)
    attempts: int = field(compare=False, default=0)


def recall_kind(chart: Chart, when: dt.datetime) -> str:
    if chart.perio_disease:
        return "Perio Maintenance"
    return "Recall – Child Prophy" if age_at(chart, when.date()) < 13 else "Recall – Adult Prophy"


def age_at(chart: Chart, day: dt.date) -> int:
    dob = chart.person.dob
    return day.year - dob.year - ((day.month, day.day) < (dob.month, dob.day))


def initial_requests(ctx: Ctx, chart: Chart) -> list[Request]:
    """The new-patient exam, recalls while the patient stays, emergencies, the next recall if still active."""
    rng, as_of = ctx.rng, ctx.as_of
    first = chart.person.joined + rng.randint(2, 21) * DAY
    end = first + rng.expovariate(1 / LIFETIME_YEARS) * 365 * DAY
    requests = [Request(first, 0, "New Patient Exam")]
    interval = 105 if chart.perio_disease else 182
    t = first + interval * rng.uniform(0.9, 1.25) * DAY
    while t < min(end, as_of):
        if rng.random() < RECALL_KEPT:
            requests.append(Request(t, len(requests), "recall"))
        t += interval * rng.uniform(0.9, 1.3) * DAY
    if end > as_of:  # still a patient: the next recall is on the books
        requests.append(Request(max(t, as_of + rng.randint(2, 60) * DAY), len(requests), "recall"))
    years = max(0.0, (min(end, as_of) - first) / (365 * DAY))
    for _ in range(int(years) + 1):
        if rng.random() < 0.08 * min(1.0, years):
            requests.append(Request(rng.between(first, min(end, as_of)), len(requests), "Emergency"))
    return requests


def slot(ctx: Ctx, loc: Location, when: dt.datetime, minutes: int) -> tuple[dt.datetime, dt.date, int]:
    """Snap a wished-for time onto the location's hours and grid: (UTC start, local day, minutes)."""
    rng = ctx.rng
    day = when.astimezone(loc.tz).date()
    if day.weekday() == 6 or (day.weekday() == 5 and rng.random() < 0.9):  # a few practices open Saturdays
        day += (7 - day.weekday()) * DAY
    duration = -(-minutes // loc.grid) * loc.grid
    slots = (17 * 60 - 8 * 60 - duration) // loc.grid + 1
    minute = 8 * 60 + loc.grid * rng.randrange(slots)
    local = dt.datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=loc.tz)
    return local.astimezone(UTC), day, duration


def provider_for(ctx: Ctx, ref: Reference, loc: Location, role: str, when: dt.datetime) -> Staff:
    """Someone with the role working at the location then; a doctor covers hygiene if no hygienist is."""
    for roles in ((role,), ("Doctor",), ("Doctor", "Hygienist", "Assistant")):
        on_staff = ref.staff_at(ref.providers, loc, when, roles)
        if on_staff:
            return ctx.rng.choice(on_staff)
    return next(p for p in ref.providers if p.location is loc)


def booked_at(ctx: Ctx, chart: Chart, start: dt.datetime, first: bool) -> dt.datetime:
    """When the appointment was made: at the previous visit or a call, never before the patient existed."""
    rng = ctx.rng
    if first:
        return chart.created + rng.randint(60, 3600) * dt.timedelta(seconds=1)
    booked = start - rng.randint(86400, 180 * 86400) * dt.timedelta(seconds=1)
    return min(max(booked, chart.created), ctx.as_of - dt.timedelta(hours=1))


def outcome(ctx: Ctx, chart: Chart) -> str:
    u = ctx.rng.random() / chart.broken
    if u < 0.07:
        return "Cancelled"
    if u < 0.12:
        return "NoShow"
    if u < 0.14:
        return "Rescheduled"
    return "Completed"


def emit_appointment(ctx: Ctx, chart: Chart, visit: Visit, status: str, booked: dt.datetime) -> None:
    """The appointment row; ``status`` is Completed, Cancelled, NoShow, Rescheduled or Future."""
    rng, as_of = ctx.rng, ctx.as_of
    start = visit.start
    confirmed = completed = reason = short = None
    updated = None
    if status == "Future":
        status = "Confirmed" if start - as_of < 3 * DAY and rng.random() < 0.7 else "Scheduled"
        if status == "Confirmed":
            confirmed = rng.between(max(booked, start - 3 * DAY), as_of)
    else:
        if status in ("Completed", "NoShow") and rng.random() < 0.8:
            confirmed = max(booked, start - rng.randint(1, 3) * DAY)
        if status == "Completed":
            completed = visit.end
            recent = as_of - visit.end < 2 * DAY
            status = (
                "Complete" if recent or rng.random() < 0.02 else "CheckedOut"
            )  # checked out later, or never
            updated = visit.end + rng.randint(60, 7200) * dt.timedelta(seconds=1)
        elif status in ("Cancelled", "Rescheduled"):
            short = rng.random() < 3 / 7 if status == "Cancelled" else rng.random() < 0.1
            reason = (
                rng.choice(CANCEL_REASONS)
                if status == "Cancelled"
                else rng.choice(("Rescheduled by patient", "Rescheduled by office"))
            )
            updated = start - (rng.randint(1, 23) if short else rng.randint(25, 240)) * dt.timedelta(hours=1)
        else:
            updated = start + rng.randint(15, 180) * dt.timedelta(minutes=1)
    kind = visit.kind
    hygiene = kind in HYGIENE_KINDS
    ctx.emit(
        "appointment",
        {
            "id": visit.id,
            "location_id": visit.location.id,
            "patient_id": chart.person.id,
            "provider_id": visit.provider.id,
            "operatory": f"{'Hyg' if hygiene else 'Op'} {rng.randint(1, 3 if hygiene else 5)}",
            "appointment_type": kind,
            "start_at": start,
            "duration_min": visit.duration,
            "status": status,
            "cdt_codes": [p.code for p in visit.procs],
            "confirmed_at": confirmed,
            "completed_at": completed,
            "cancel_reason": reason,
            "cancelled_short_notice": short,
            "needs_follow_up": rng.random() < (0.5 if status in ("Cancelled", "NoShow") else 0.04),
            "notes": rng.choice(APPOINTMENT_NOTES) if rng.random() < 0.15 else None,
        },
        booked,
        max(updated, booked) if updated else None,
    )
