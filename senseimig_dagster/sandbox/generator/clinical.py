"""What happens in the chair: procedures per visit, signed clinical notes, and periodontal charting."""

from __future__ import annotations

import datetime as dt

from senseimig_dagster.sandbox.generator import codes
from senseimig_dagster.sandbox.generator.codes import proc
from senseimig_dagster.sandbox.generator.core import DAY, Ctx
from senseimig_dagster.sandbox.generator.model import Chart, Proc, Visit
from senseimig_dagster.sandbox.generator.schedule import age_at

SITES = ("DB", "B", "MB", "DL", "L", "ML")
# fmt: off
CATEGORY = {
    "New Patient Exam": "Exam", "Emergency": "Emergency", "Perio Maintenance": "Perio",
    "Scaling and Root Planing": "Perio", "Endo": "Endo", "Extraction": "Surgery", "Implant": "Surgery",
}
ANESTHETICS = ("2% lidocaine 1:100k", "4% articaine 1:100k", "3% mepivacaine plain")
FINDINGS = (
    "No new caries detected", "Generalized mild gingivitis", "Recession noted on lower anteriors",
    "Watch: incipient lesion #{t}", "Fractured cusp #{t}", "Heavy calculus lower lingual",
    "Existing restorations intact", "Localized bleeding on probing", "Wear facets consistent with bruxism",
)
ALERT_NOTES = (
    "Premedicate 1 hour prior (amoxicillin 2 g)", "Latex allergy: use nitrile gloves",
    "Pt on warfarin: check INR before extractions", "Hearing impaired: face pt when speaking",
)
ADMIN_NOTES = (
    ("NonClinical", "Billing", "Pt called about statement; explained insurance portion."),
    ("NonClinical", "Scheduling", "Prefers appointments after 3 pm on weekdays."),
    ("NonClinical", "Insurance", "New card on file, scanned front and back."),
    ("Notification", "Medical Alert", None),
)
# fmt: on
_LONG_NOTE_PARAGRAPH = (
    'Pt states "it hurts when I bite down, mostly on the left," and that the pain started 3 weeks ago.\n'
    "Medical history reviewed, including: hypertension (controlled), seasonal allergies, prior endo on #19, "
    'and a note from the referring office reading "please evaluate, thanks, Dr. R."\r\n'
    "Discussed options, risks, benefits, and alternatives; questions answered, consent given.\n\n"
)


def present_teeth(chart: Chart) -> list[int]:
    return [t for t in codes.PERMANENT if t not in chart.missing]


def _tooth(ctx: Ctx, chart: Chart, day: dt.date) -> str:
    age = age_at(chart, day)
    if age < 6 or (age < 12 and ctx.rng.random() < 0.6):
        return ctx.rng.choice(codes.PRIMARY)
    return str(ctx.rng.choice(present_teeth(chart) or list(codes.PERMANENT)))


def procedures_for(ctx: Ctx, chart: Chart, kind: str, day: dt.date, visit_location) -> list[Proc]:
    """The CDT codes a routine visit posts (plan visits post their plan items instead)."""
    rng, loc = ctx.rng, visit_location
    child = age_at(chart, day) < 13
    if kind == "New Patient Exam":
        out = [proc("D0150", loc)]
        out.append(proc("D0210", loc) if rng.random() < 0.5 else proc("D0274", loc))
        if rng.random() < 0.3:
            out.append(proc("D0330", loc))
        out += [proc("D1120", loc), proc("D1206", loc)] if child else [proc("D1110", loc)]
        return out
    if kind == "Recall – Child Prophy":
        out = [proc("D0120", loc), proc("D1120", loc)]
        out += [proc("D1206", loc)] if rng.random() < 0.7 else []
        return out + ([proc("D0272", loc)] if rng.random() < 0.3 else [])
    if kind == "Perio Maintenance":
        out = [proc("D4910", loc)]
        out += [proc("D0120", loc)] if rng.random() < 0.5 else []
        return out + ([proc("D0274", loc)] if rng.random() < 0.25 else [])
    if kind == "Emergency":
        out = [proc("D0140", loc), proc("D0220", loc, _tooth(ctx, chart, day))]
        return out + ([proc("D9110", loc)] if rng.random() < 0.5 else [])
    out = [proc("D0120", loc), proc("D1110", loc)]  # adult recall
    return out + ([proc("D0274", loc)] if rng.random() < 0.4 else [])


def _note_body(ctx: Ctx, visit: Visit) -> str:
    rng = ctx.rng
    codes_text = ", ".join(
        p.code + (f" #{p.tooth}" if p.tooth else "") + (f" {p.surfaces}" if p.surfaces else "")
        for p in visit.procs
    )
    finding = rng.choice(FINDINGS).format(t=rng.randint(2, 31))
    if visit.kind in ("Restorative", "Crown Prep", "Endo", "Extraction", "Implant", "Sealants"):
        return (
            f"Procedures: {codes_text}. Anesthetic: {rng.choice(ANESTHETICS)}"
            f" x{rng.randint(1, 3)}. Pt tolerated well. Post-op instructions given."
        )
    return (
        f"Pt presents for {visit.kind.lower()}. Med hx reviewed, no changes. BP {rng.randint(105, 150)}/"
        f"{rng.randint(65, 95)}. {finding}. Completed: {codes_text}. OHI given."
    )


def visit_note(ctx: Ctx, chart: Chart, visit: Visit) -> None:
    """One signed clinical note per completed visit (signed with the provider's PIN, usually the same day)."""
    rng = ctx.rng
    note_id = rng.uid()
    body = _note_body(ctx, visit)
    if ctx.take("long_note"):
        body = body + "\n\n" + _LONG_NOTE_PARAGRAPH * (10_500 // len(_LONG_NOTE_PARAGRAPH) + 1)
        ctx.defect("long_note", "clinical_note", note_id, field="body", detail=str(len(body)))
    signed = visit.end + rng.randint(300, 6 * 3600) * dt.timedelta(seconds=1)
    if rng.random() < 0.05:
        signed += rng.randint(1, 4) * DAY  # caught up on charting later in the week
    unsigned = signed > ctx.as_of or rng.random() < 0.01
    row = {
        "id": note_id,
        "patient_id": chart.person.id,
        "appointment_id": visit.id,
        "provider_id": visit.provider.id,
        "note_type": "Clinical",
        "category": CATEGORY.get(visit.kind, "Hygiene" if "Recall" in visit.kind else "Restorative"),
        "body": body,
        "is_alert": False,
        "signed_at": None if unsigned else signed,
        "signed_by": None if unsigned else visit.provider.id,
        "archived": False,
    }
    snapshot = dict(row)  # before the emit hooks touch it
    ctx.emit("clinical_note", row, visit.end, None if unsigned else signed)
    if ctx.take("dup_note"):  # the same note saved twice (a double click, or a re-import)
        copy = dict(snapshot, id=rng.uid(), body=row["body"] + rng.choice(("", " ", "\n")))
        ctx.emit("clinical_note", copy, visit.end + rng.randint(0, 120) * dt.timedelta(seconds=1))
        ctx.defect("duplicate_chart_entry", "clinical_note", copy["id"], detail="same visit note", of=note_id)


def admin_notes(ctx: Ctx, chart: Chart, span_end: dt.datetime) -> None:
    """Occasional non-clinical notes and medical-alert notifications, not tied to a visit."""
    rng = ctx.rng
    for _ in range(rng.choice((0, 0, 0, 1, 1, 2))):
        note_type, category, body = rng.choice(ADMIN_NOTES)
        alert = note_type == "Notification"
        at = rng.between(chart.created, max(chart.created, span_end))
        ctx.emit(
            "clinical_note",
            {
                "id": rng.uid(),
                "patient_id": chart.person.id,
                "note_type": note_type,
                "category": category,
                "body": rng.choice(ALERT_NOTES) if alert else body,
                "is_alert": alert,
                "archived": rng.random() < 0.2,
            },
            at,
        )


def perio_exam(ctx: Ctx, chart: Chart, visit: Visit) -> None:
    """Six sites per present tooth; mobility and furcation once per tooth, on site B."""
    rng = ctx.rng
    exam_id = rng.uid()
    disease = chart.perio_disease
    base = {
        "exam_id": exam_id,
        "patient_id": chart.person.id,
        "provider_id": visit.provider.id,
        "exam_date": visit.day,
    }
    duplicate = ctx.take("dup_perio")
    rows = []
    for tooth in present_teeth(chart):
        molar = tooth in codes.MULTI_ROOTED
        for site in SITES:
            pocket = disease and rng.random() < (0.35 if molar else 0.12)
            depth = rng.randint(4, 7) if pocket else rng.choice((1, 2, 2, 3, 3, 3))
            row = dict(
                base,
                id=rng.uid(),
                tooth=tooth,
                site=site,
                probing_depth_mm=depth,
                recession_mm=rng.choice((0, 0, 0, 1, 1, 2, 3, -1)),
                bleeding=rng.random() < (0.6 if pocket else 0.1),
                suppuration=pocket and rng.random() < 0.05,
                plaque=rng.random() < 0.25,
            )
            if site == "B":
                row["mobility"] = (
                    rng.choice((0,) * 17 + (1, 2, 3)) if not disease else rng.choice((0, 0, 1, 2))
                )
                row["furcation"] = (rng.choice((0, 0, 0, 1, 2, 3)) if disease else 0) if molar else None
            rows.append(row)
    created = visit.end + rng.randint(0, 900) * dt.timedelta(seconds=1)
    for row in rows:
        ctx.emit("perio_reading", row, created)
    if duplicate and rows:
        original = rng.choice(rows)
        copy = {k: v for k, v in original.items() if k not in ("created_at", "updated_at", "is_deleted")}
        copy["id"] = rng.uid()
        ctx.emit("perio_reading", copy, created + rng.randint(1, 60) * dt.timedelta(seconds=1))
        ctx.defect(
            "duplicate_chart_entry",
            "perio_reading",
            copy["id"],
            detail="same exam, tooth and site",
            of=original["id"],
        )
