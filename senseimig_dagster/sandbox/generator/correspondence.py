"""Patient Files (documents of every size, hashed from their content) and communications with the patient."""

from __future__ import annotations

import datetime as dt
import math
import weakref

from senseimig_dagster.sandbox.generator.core import DAY, Ctx, Weighted
from senseimig_dagster.sandbox.generator.model import Chart, Reference, Staff, Visit

# typical sizes (log-uniform between the bounds); kept modest so hashing a large tenant stays quick
# fmt: off
SIZES = {
    "text/html": (6000, 45000), "application/pdf": (25000, 400000), "image/jpeg": (40000, 500000),
    "image/png": (30000, 300000), "application/dicom": (300000, 2500000),
}
EXTENSIONS = {
    "text/html": "html", "application/pdf": "pdf", "image/jpeg": "jpg", "image/png": "png",
    "application/dicom": "dcm",
}
# fmt: on
LARGE_BYTES = (5 * 1024 * 1024 + 1, 12_000_000)  # over Dataverse's default 5 MB attachment limit
XRAY_MIME = Weighted([("image/jpeg", 60), ("image/png", 25), ("application/dicom", 15)])
# fmt: off
XRAY_LABEL = {
    "D0210": "FMX", "D0330": "PANO", "D0274": "BWX", "D0272": "BWX", "D0220": "PA",
}
# fmt: on
# File defects by document number modulo the period: every tenant with ~100 documents carries each.
FILE_DEFECT_PERIOD = 97
FILE_DEFECT_SLOTS = {13: "missing_document", 41: "corrupt_document", 67: "forbidden_file_name",
                     83: "duplicate_file_name"}
_LAST_FILE: weakref.WeakKeyDictionary[Ctx, tuple[str, str]] = weakref.WeakKeyDictionary()
CONSENT_KINDS = frozenset({"Extraction", "Implant", "Endo", "Crown Prep", "Scaling and Root Planing"})
CHANNEL = Weighted([("Text", 60), ("Email", 25), ("Call", 15)])
# fmt: off
INBOUND = (
    ("Billing question", "Asked about balance after insurance; explained EOB."),
    ("Reschedule request", "Wants to move next visit to a later week."),
    ("Insurance question", "New employer plan starting next month; will bring card."),
    ("Toothache", "Sensitivity on lower left; offered emergency slot."),
)
# fmt: on


def document(
    ctx: Ctx, chart: Chart, category: str, at: dt.datetime, mime: str, label: str, claim_id: str | None = None
) -> str:
    """One Patient Files entry; size is typical for the type unless a large or tiny document is due."""
    rng = ctx.rng
    doc_id = rng.uid()
    lo, hi = SIZES[mime]
    size = round(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    if mime != "text/html" and ctx.take("large_document"):
        size = rng.randint(*LARGE_BYTES)
        ctx.defect("large_document", "document", doc_id, field="size_bytes", detail=str(size))
    elif ctx.take("tiny_document"):
        size = rng.randint(1, 1023) if "zero_byte" in ctx.flags else 0  # a failed upload left an empty file
        ctx.flags.add("zero_byte")
        ctx.defect("tiny_document", "document", doc_id, field="size_bytes", detail=str(size))
    file_name = file_defects(ctx, chart.person.id, doc_id, f"{label}.{EXTENSIONS[mime]}")
    ctx.emit(
        "document",
        {
            "id": doc_id,
            "patient_id": chart.person.id,
            "claim_id": claim_id,
            "category": category,
            "file_name": file_name,
            "mime_type": mime,
            "size_bytes": size,
        },
        at,
    )
    return doc_id


def file_defects(ctx: Ctx, patient_id: str, doc_id: str, file_name: str) -> str:
    """Document-file defects on a fixed schedule of document numbers (no draw from ``ctx.rng``, so the rest of
    the tenant is unchanged): content gone at the source, content that no longer matches its sha256, a name
    SharePoint forbids, a name repeated in the patient's files. Returns the file name to record."""
    n = ctx.next_number("document_file")
    slot = n % FILE_DEFECT_PERIOD
    last = _LAST_FILE.get(ctx)
    _LAST_FILE[ctx] = (patient_id, file_name)
    if slot in FILE_DEFECT_SLOTS:
        kind = FILE_DEFECT_SLOTS[slot]
        if kind == "duplicate_file_name":
            ctx.flags.add(kind)  # hosted by the next document of a patient who already has one
        else:
            ctx.defect(kind, "document", doc_id, field="file_name" if kind == "forbidden_file_name" else None)
            if kind == "forbidden_file_name":
                file_name = file_name.replace("_", ": ", 1).replace(".", "?.", 1)
                _LAST_FILE[ctx] = (patient_id, file_name)
    elif "duplicate_file_name" in ctx.flags and last is not None and last[0] == patient_id:
        ctx.flags.discard("duplicate_file_name")
        ctx.defect("duplicate_file_name", "document", doc_id, field="file_name")
        file_name = last[1]
        _LAST_FILE[ctx] = (patient_id, file_name)
    return file_name


def visit_documents(ctx: Ctx, chart: Chart, visit: Visit) -> None:
    rng = ctx.rng
    day = visit.day.isoformat()
    at = visit.end
    images = [XRAY_LABEL[p.code] for p in visit.procs if p.code in XRAY_LABEL]
    if images and rng.random() < 0.5:
        document(ctx, chart, "Xray", at, XRAY_MIME.pick(rng), f"{images[0]}_{day}")
    if visit.kind == "New Patient Exam":
        if rng.random() < 0.3:
            document(
                ctx,
                chart,
                "Other",
                at,
                "application/pdf",
                rng.choice(("new_patient_forms", "medical_history", "hipaa_acknowledgement")),
            )
        if chart.person.policies and rng.random() < 0.35:
            document(ctx, chart, "Other", at, "image/jpeg", "insurance_card_front")
    if visit.kind in CONSENT_KINDS and rng.random() < 0.5:
        document(
            ctx,
            chart,
            "Consent",
            at,
            "application/pdf",
            f"consent_{visit.kind.lower().replace(' ', '_')}_{day}",
        )
    if rng.random() < 0.03:
        document(ctx, chart, "Photo", at, "image/jpeg", f"intraoral_{day}_{rng.randint(1, 9):02d}")


def claim_documents(
    ctx: Ctx, chart: Chart, visit: Visit, claim_id: str, major: bool, at: dt.datetime
) -> None:
    """Major work goes out with x-rays or a narrative attached."""
    rng = ctx.rng
    if major and rng.random() < 0.5:
        mime = "image/jpeg" if rng.random() < 0.7 else "application/pdf"
        document(
            ctx,
            chart,
            "ClaimAttachment",
            at,
            mime,
            f"claim_attachment_{visit.day.isoformat()}",
            claim_id=claim_id,
        )


def eligibility_document(ctx: Ctx, chart: Chart, at: dt.datetime) -> str:
    return document(ctx, chart, "Eligibility", at, "text/html", f"elig_{at.date().isoformat()}")


def _staff(ctx: Ctx, ref: Reference, chart: Chart, when: dt.datetime) -> str | None:
    """Front-desk staff on duty then (who may since have left the practice)."""
    loc = chart.person.location
    on_duty = ref.staff_at(ref.users, loc, when, ("FrontDesk", "OfficeManager"))
    pool: list[Staff] = on_duty or [u for u in ref.users if u.location is loc and u.role == "FrontDesk"]
    return ctx.rng.choice(pool).id if pool else None


def _message(
    ctx: Ctx,
    ref: Reference,
    chart: Chart,
    channel: str,
    direction: str,
    at: dt.datetime,
    subject: str,
    body: str,
    status: str,
) -> None:
    rng = ctx.rng
    ended = at + rng.randint(30, 720) * dt.timedelta(seconds=1) if channel == "Call" else None
    ctx.emit(
        "communication",
        {
            "id": rng.uid(),
            "patient_id": chart.person.id,
            "user_id": _staff(ctx, ref, chart, at),
            "channel": channel,
            "direction": direction,
            "subject": subject,
            "body": body,
            "started_at": at,
            "ended_at": ended,
            "status": status,
        },
        at,
        ended,
    )


def appointment_messages(ctx: Ctx, ref: Reference, chart: Chart, visit: Visit, status: str) -> None:
    """Reminders before a visit, and a call after a no-show."""
    rng, as_of = ctx.rng, ctx.as_of
    sent = visit.start - rng.uniform(1, 3) * DAY
    if rng.random() < 0.45 and chart.created < sent <= as_of:
        channel = CHANNEL.pick(rng)
        local = visit.start.astimezone(visit.location.tz)
        body = (
            f"Reminder: {chart.person.first}, you have an appointment at {visit.location.name} on "
            f"{local:%b %d} at {local:%I:%M %p}. Reply C to confirm."
        )
        state = {"Text": "Delivered", "Email": "Sent", "Call": "LeftVoicemail"}[channel]
        if rng.random() < 0.03:
            state = "Failed"
        _message(ctx, ref, chart, channel, "Outbound", sent, "Appointment reminder", body, state)
    if status == "NoShow" and rng.random() < 0.5:
        at = visit.start + rng.uniform(2, 30) * dt.timedelta(hours=1)
        if at <= as_of:
            _message(
                ctx,
                ref,
                chart,
                "Call",
                "Outbound",
                at,
                "Missed appointment",
                "Called about missed appointment; left voicemail to reschedule.",
                rng.choice(("LeftVoicemail", "NoAnswer", "Completed")),
            )


def patient_messages(ctx: Ctx, ref: Reference, chart: Chart, span_end: dt.datetime) -> None:
    """Calls and e-mails not tied to one visit: billing, insurance, scheduling."""
    rng = ctx.rng
    for _ in range(rng.choice((0, 0, 1, 1, 2))):
        subject, body = rng.choice(INBOUND)
        channel = "Call" if rng.random() < 0.7 else "Email"
        at = rng.between(chart.created, max(chart.created, span_end))
        _message(
            ctx,
            ref,
            chart,
            channel,
            "Inbound",
            at,
            subject,
            body,
            "Completed" if channel == "Call" else "Received",
        )
