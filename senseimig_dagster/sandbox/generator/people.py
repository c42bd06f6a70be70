"""Patients: households (so guarantors and policyholders are real patients), demographics, insurance,
duplicates.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from senseimig_dagster.sandbox.generator import names
from senseimig_dagster.sandbox.generator.core import DAY, Ctx, Weighted
from senseimig_dagster.sandbox.generator.model import Location, Person, Plan, Policy, Reference

FAMILY_SIZE = Weighted([(1, 50), (2, 20), (3, 12), (4, 12), (5, 6)])
PHONE_FORMAT = Weighted([(t, w) for t, w in names.PHONE_FORMATS])
TITLES = {
    "Male": Weighted([(None, 55), ("Mr.", 43), ("Dr.", 2)]),
    "Female": Weighted([(None, 50), ("Ms.", 20), ("Mrs.", 26), ("Dr.", 2), ("Miss", 2)]),
}
# fmt: off
ALERTS = (
    "Penicillin allergy", "Latex allergy", "Premedication required", "Type 2 diabetes", "Hypertension",
    "Anticoagulant therapy", "Heart murmur", "Codeine allergy", "Bisphosphonate therapy", "Asthma",
    "Artificial joint (hip)", "Anxious patient",
)
ORTHO = (
    "Active Tx", "Retention", "Observation", "Completed", "Debond Scheduled",
)
# fmt: on
INSURED_FAMILIES = 0.7
# Households whose members look alike (a son named after his father; twins with similar first names): what a
# matcher must keep apart. Drawn from an RNG of their own (seeded by the household), so other rows stay as they were.
LOOKALIKE_SHARE = 0.3
LOOKALIKE_NAMES = (  # (first name, gender) of each twin
    (("Mary", "Female"), ("Maria", "Female")), (("Michael", "Male"), ("Mitchell", "Male")),
    (("Daniel", "Male"), ("Danielle", "Female")), (("Alexander", "Male"), ("Alexandra", "Female")),
    (("Christian", "Male"), ("Christina", "Female")), (("Jordan", "Male"), ("Jordyn", "Female")),
    (("Ethan", "Male"), ("Evan", "Male")), (("Olivia", "Female"), ("Oliver", "Male")),
    (("Isaac", "Male"), ("Isaiah", "Male")), (("Julian", "Male"), ("Julia", "Female")),
    (("Gabriel", "Male"), ("Gabriella", "Female")), (("Aiden", "Male"), ("Aaron", "Male")),
)


def _adult_age(ctx: Ctx) -> int:
    return min(92, max(22, round(ctx.rng.gauss(47, 16))))


def _dob(ctx: Ctx, age: int) -> dt.date:
    return ctx.as_of.date() - dt.timedelta(days=age * 365 + ctx.rng.randint(0, 364))


def _joined_at(ctx: Ctx) -> dt.datetime:
    # practices grow: more patients joined recently (density rises linearly over the ten years)
    span = ctx.as_of - 10 * DAY - ctx.start
    return ctx.start + span * (ctx.rng.random() ** 0.7)


def family(ctx: Ctx, ref: Reference, slots_left: int) -> list[Person]:
    """A household of 1–5 patients sharing address, home phone, location and (usually) insurance."""
    rng = ctx.rng
    size = min(FAMILY_SIZE.pick(rng), slots_left)
    joined = _joined_at(ctx)
    location = rng.choice([loc for loc in ref.locations if loc.opened <= joined])
    head_age = _adult_age(ctx)
    last = rng.choice(names.LAST)
    head_gender = rng.choice(("Male", "Female"))
    head = _person(ctx, location, joined, last, head_gender, head_age, None)
    members = [head]
    if size >= 2:
        spouse_gender = "Female" if head_gender == "Male" else "Male"
        spouse_last = last if rng.random() < 0.85 else rng.choice(names.LAST)
        members.append(
            _person(
                ctx,
                location,
                joined,
                spouse_last,
                spouse_gender,
                max(22, head_age + rng.randint(-6, 6)),
                head.id,
            )
        )
    for _ in range(size - len(members)):
        age = rng.randint(2, 17) if head_age < 58 else rng.randint(18, 30)
        members.append(_person(ctx, location, joined, last, rng.choice(("Male", "Female")), age, head.id))
    _household(ctx, members)
    _lookalikes(ctx, members)
    _insure(ctx, ref, members)
    return members


def _person(
    ctx: Ctx, location: Location, joined: dt.datetime, last: str, gender: str, age: int, guarantor: str | None
) -> Person:
    rng = ctx.rng
    pid = rng.uid()
    dob = _dob(ctx, age)
    if age < 18:  # children come for their first visit at about three
        first_visit_age = dt.datetime.combine(dob, dt.time(12), dt.UTC) + 3 * 365 * DAY
        joined = min(max(joined, first_visit_age), ctx.as_of - 10 * DAY)
    return Person(
        pid,
        names.first_name(rng, gender),
        last,
        gender,
        dob,
        location,
        joined,
        guarantor if guarantor and age < 18 else pid,
        age < 18,
    )


def _household(ctx: Ctx, members: list[Person]) -> None:
    """Demographics; the address, home phone and sometimes the e-mail are the household's."""
    rng = ctx.rng
    loc = members[0].location
    street, suffix = rng.choice(names.STREETS), rng.choice(names.SUFFIXES)
    address = {
        "address_line1": f"{rng.randint(100, 19999)} {street} {rng.choice(suffix[:1] * 3 + suffix[1:] * 7)}",
        "address_line2": rng.choice(("Apt ", "Unit ", "#")) + str(rng.randint(1, 420))
        if rng.random() < 0.15
        else None,
        "city": rng.choice((loc.city, loc.city, *loc.suburbs)),
        "state": loc.state,
        "postal_code": loc.zip3 + rng.digits(2) + (f"-{rng.digits(4)}" if rng.random() < 0.1 else ""),
    }
    home = names.phone_digits(rng, loc.area_codes) if rng.random() < 0.4 else None
    shared_email = None
    for person in members:
        adult = not person.is_child
        mobile = names.phone_digits(rng, loc.area_codes) if rng.random() < (0.9 if adult else 0.1) else None
        work = names.phone_digits(rng, loc.area_codes) if adult and rng.random() < 0.15 else None
        email = names.email_for(rng, person.first, person.last) if adult and rng.random() < 0.8 else None
        if person.is_child and shared_email and rng.random() < 0.3:
            email = shared_email  # parents put their own address on the child's record
        shared_email = shared_email or email
        phones = {"mobile_phone": mobile, "home_phone": home, "work_phone": work}
        preferred = next((k for k, v in (("Mobile", mobile), ("Home", home), ("Work", work)) if v), None)
        ortho = rng.choice(ORTHO) if rng.random() < (0.1 if person.is_child else 0.02) else None
        person.row = {
            "id": person.id,
            "primary_location_id": loc.id,
            "status": "Active",
            "first_name": person.first,
            "last_name": person.last,
            "nickname": names.nickname_of(person.first) if rng.random() < 0.15 else None,
            "title": TITLES[person.gender].pick(rng) if adult else None,
            "date_of_birth": person.dob,
            "gender": person.gender if rng.random() < 0.98 else rng.choice(("Other", "Unknown")),
            "ethnicity": rng.choice(names.ETHNICITIES) if rng.random() < 0.4 else None,
            **{k: names.format_phone(v, PHONE_FORMAT.pick(rng)) if v else None for k, v in phones.items()},
            "preferred_phone": preferred,
            "sms_opt_out": rng.random() < 0.08,
            "preferred_contact_method": "Email" if email and rng.random() < 0.7 else "Mail",
            "email": email,
            **address,
            "ssn_last_four": rng.digits(4) if adult and rng.random() < 0.6 else None,
            "ortho_treatment_status": ortho,
            "model_box_number": f"B-{rng.randint(1, 400)}" if ortho else None,
            "medical_alerts": rng.sample(ALERTS, rng.choice((0, 0, 0, 0, 0, 0, 0, 1, 1, 2))),
        }


def _lookalikes(ctx: Ctx, members: list[Person]) -> None:
    """Make some households hard to deduplicate: a junior (a son with his father's first name) or twins (same
    birth date, look-alike first names). Recorded as ``lookalike_household`` defects, ``of`` the look-alike."""
    rng = random.Random(f"{ctx.seed}:household:{members[0].id}")
    children = [m for m in members if m.is_child]
    if not children or rng.random() >= LOOKALIKE_SHARE:
        return
    head = members[0]
    sons = [c for c in children if c.gender == "Male"]
    if head.gender == "Male" and sons and (len(children) < 2 or rng.random() < 0.5):
        son = rng.choice(sons)
        son.row.update(first_name=head.row["first_name"], nickname=None)
        ctx.defect("lookalike_household", "patient", son.id, field="first_name", detail="parent_child", of=head.id)
    elif len(children) >= 2:
        one, two = rng.sample(children, 2)
        (first_one, gender_one), (first_two, gender_two) = rng.choice(LOOKALIKE_NAMES)
        one.row.update(first_name=first_one, gender=gender_one, nickname=None)
        two.row.update(first_name=first_two, gender=gender_two, nickname=None, date_of_birth=one.row["date_of_birth"])
        ctx.defect("lookalike_household", "patient", two.id, field="date_of_birth", detail="twins", of=one.id)


def _pick_plan(ctx: Ctx, ref: Reference) -> Plan:
    return ctx.rng.choice(ref.plans)


Coverage = tuple[Person, Plan, str]  # policyholder, plan, subscriber id


def _coverages(ctx: Ctx, ref: Reference, members: list[Person]) -> dict[str, list[Coverage]]:
    """Who is covered by whose plan, in coverage order (Self ~60%, Spouse ~15%, Child ~25%)."""
    rng = ctx.rng
    head = members[0]
    spouse = members[1] if len(members) > 1 and not members[1].is_child else None
    head_plan: Coverage = (head, _pick_plan(ctx, ref), _subscriber_id(ctx))
    out = {m.id: [head_plan] for m in members}
    u = rng.random()
    if spouse and u < 0.55:  # the spouse has an employer plan of their own
        spouse_plan: Coverage = (spouse, _pick_plan(ctx, ref), _subscriber_id(ctx))
        out[spouse.id] = [spouse_plan]
        if u < 0.2:  # ... and the family is on both plans: each adult's own plan first
            out = {m.id: [head_plan, spouse_plan] for m in members}
            out[spouse.id] = [spouse_plan, head_plan]
    elif not spouse and u < 0.05:
        out[head.id].append((head, _pick_plan(ctx, ref), _subscriber_id(ctx)))  # a second job's plan
    return out


def _insure(ctx: Ctx, ref: Reference, members: list[Person]) -> None:
    """Policies per member; once in a while the head changed employers, leaving a terminated policy behind."""
    rng = ctx.rng
    if rng.random() >= INSURED_FAMILIES:
        return
    head = members[0]
    coverages = _coverages(ctx, ref, members)
    effective = dt.date(min(m.joined for m in members).year - rng.randint(0, 3), 1, 1)
    switch = None
    if rng.random() < 0.15 and effective.year + 2 <= ctx.as_of.year:
        switch = dt.date(rng.randint(effective.year + 2, ctx.as_of.year), 1, 1)
        old_plan, old_subscriber = _pick_plan(ctx, ref), _subscriber_id(ctx)
    couple = {head.id, members[1].id} if len(members) > 1 and not members[1].is_child else set()
    for person in members:
        for order, (holder, plan, subscriber) in zip(
            ("Primary", "Secondary"), coverages[person.id], strict=False
        ):
            relationship = (
                "Self" if holder is person else "Spouse" if {holder.id, person.id} == couple else "Child"
            )
            suffix = "" if holder is person else f"-0{members.index(person) + 1}"
            start = effective
            if order == "Primary" and switch and holder is head:
                old = Policy(
                    rng.uid(),
                    old_plan,
                    order,
                    holder.id,
                    relationship,
                    old_subscriber + suffix,
                    effective,
                    switch - DAY,
                )
                person.policies.append(old)
                start = switch
            person.policies.append(
                Policy(rng.uid(), plan, order, holder.id, relationship, subscriber + suffix, start, None)
            )


def _subscriber_id(ctx: Ctx) -> str:
    rng = ctx.rng
    return rng.choice(
        (
            rng.code(3, "ABCDEFGHJKLMNPQRSTUVWXYZ") + rng.digits(9),
            "W" + rng.digits(10),
            rng.digits(9),
            rng.digits(11),
        )
    )


def patient_row(
    ctx: Ctx, ref: Reference, person: Person, first_visit: dt.date | None, last_visit: dt.date | None
) -> dict[str, Any]:
    rng = ctx.rng
    row = dict(person.row)
    row["patient_number"] = str(100000 + ctx.next_number("patient"))
    lapsed = last_visit is None or last_visit < (ctx.as_of - 3 * 365 * DAY).date()
    row["status"] = "Inactive" if lapsed and rng.random() < 0.7 else "Active"
    staff = [p for p in ref.providers if p.location is person.location]
    doctors = [p for p in staff if p.role == "Doctor"]
    hygienists = [p for p in staff if p.role == "Hygienist"]
    row["preferred_dentist_id"] = rng.choice(doctors).id if doctors and rng.random() < 0.8 else None
    row["preferred_hygienist_id"] = rng.choice(hygienists).id if hygienists and rng.random() < 0.6 else None
    row["first_visit_date"], row["last_visit_date"] = first_visit, last_visit
    return row
