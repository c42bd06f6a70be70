"""Payers with their plans, and referral sources: shared reference data that every patient points into."""

from __future__ import annotations

from decimal import Decimal

from senseimig_dagster.sandbox.generator import names
from senseimig_dagster.sandbox.generator.core import DAY, Ctx
from senseimig_dagster.sandbox.generator.model import Payer, Plan
from senseimig_dagster.sandbox.generator.npi import make_invalid_npi, make_npi

# fmt: off
PAYERS = (
    "Delta Dental", "MetLife Dental", "Cigna Dental", "Aetna Dental", "Guardian", "United Concordia",
    "Humana Dental", "Principal Financial", "Ameritas", "Sun Life Financial", "Blue Cross Blue Shield",
    "UnitedHealthcare Dental", "Lincoln Financial", "DentaQuest", "GEHA Connection Dental",
)
EMPLOYERS = (
    "ACME Corp", "City of {city}", "State Employees", "Northwind Traders", "Contoso Ltd", "Fabrikam",
    "{city} Public Schools", "Initech", "Globex", "Umbrella Health", "Stark Industries", "Wayne Enterprises",
    "Tailspin Toys", "Alpine Ski House", "Blue Yonder Airlines", "Woodgrove Bank",
)
MARKETING = (
    "Google Search", "Google Ads", "Yelp", "Facebook", "Instagram", "Practice website", "Zocdoc",
    "Mailer – Spring 2021", "Insurance directory", "Billboard – I-25", "Health fair",
)
SPECIALTIES = (
    "Oral Surgery", "Periodontics", "Endodontics", "Orthodontics", "Pediatric Dentistry", "Family Medicine",
)
PREFERENCES = (
    "Prefers digital x-rays by e-mail.", "Implant cases only.", "Send reports to the lab, not the office.",
    "Call before sending a referral; fax is broken.", None, None,
)
# fmt: on


def _payer_code(ctx: Ctx, taken: set[str]) -> str:
    rng = ctx.rng
    code = ""
    while not code or code in taken:
        code = rng.digits(5) if rng.random() < 0.3 else rng.code(5, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    taken.add(code)
    return code


def payers_and_plans(ctx: Ctx) -> list[Plan]:
    rng = ctx.rng
    plans: list[Plan] = []
    codes: set[str] = set()
    for name in PAYERS:
        payer = Payer(rng.uid(), name, rng.random() < 0.75)
        city, state, _, area, zip3, _ = rng.choice(names.METROS)
        ctx.emit(
            "payer",
            {
                "id": payer.id,
                "name": name,
                "payer_code": _payer_code(ctx, codes),
                "type": "Medical" if name == "Blue Cross Blue Shield" else "Dental",
                "claims_address": f"PO Box {rng.randint(1000, 99999)}, {city}, {state} {zip3}{rng.digits(2)}",
                "phone": f"1-800-{rng.randint(200, 999)}-{rng.digits(4)}",
                "eligibility_enabled": payer.eligibility_enabled,
            },
            rng.between(ctx.start - 300 * DAY, ctx.start),
        )
        for _ in range(rng.randint(2, 4)):
            plans.append(_plan(ctx, payer))
    return plans


def _plan(ctx: Ctx, payer: Payer) -> Plan:
    rng = ctx.rng
    kind, factor = rng.choice(
        (
            ("PPO", (0.65, 0.85)),
            ("PPO", (0.65, 0.85)),
            ("Premier", (0.85, 0.95)),
            ("DHMO", (0.5, 0.6)),
            ("Indemnity", (1.0, 1.0)),
        )
    )
    employer = rng.choice(EMPLOYERS).format(city=rng.choice(names.METROS)[0])
    coverage = {
        "preventive": rng.choice((100, 100, 100, 90, 80)),
        "basic": rng.choice((80, 80, 70, 60)),
        "major": rng.choice((50, 50, 40)),
        "ortho": rng.choice((50, 50, 0)),
    }
    deductible = Decimal(rng.choice((50, 50, 75, 100)))
    plan = Plan(
        rng.uid(),
        payer,
        coverage,
        Decimal(rng.choice((1000, 1500, 1500, 2000, 2500, 3000))),
        deductible,
        rng.uniform(*factor),
        rng.choice((1,) * 8 + (7, 10)),
    )
    group = rng.choice((rng.digits(7), rng.digits(5), f"GRP-{rng.digits(5)}", rng.code(3) + rng.digits(4)))
    ctx.emit(
        "insurance_plan",
        {
            "id": plan.id,
            "payer_id": payer.id,
            "plan_name": f"{employer} {kind}",
            "group_number": group,
            "employer_name": employer,
            "annual_maximum": plan.annual_max,
            "deductible_individual": deductible,
            "deductible_family": deductible * 3,
            "benefit_year_start_month": plan.year_start_month,
            "coverage_pct": coverage,
            "ortho_charge_frequency": rng.choice(
                ("Monthly", "Monthly", "Quarterly", "SemiAnnually", "Annually")
            ),
            "cot_claims_required": rng.random() < 0.7,
        },
        rng.between(ctx.start - 200 * DAY, ctx.start),
    )
    return plan


def referral_sources(ctx: Ctx) -> list[str]:
    rng = ctx.rng
    sources = [
        (
            f"Dr. {names.first_name(rng, rng.choice(('Male', 'Female')))} {rng.choice(names.LAST)} – "
            f"{rng.choice(SPECIALTIES)}",
            "Doctor",
        )
        for _ in range(rng.randint(5, 8))
    ]
    sources += [(name, "Marketing") for name in rng.sample(MARKETING, 7)]
    sources += [
        ("Existing patient", "Patient"),
        ("Friend or family member", "Patient"),
        ("Walk-in", "Other"),
        ("Employer benefits fair", "Other"),
    ]
    ids = []
    for i, (name, kind) in enumerate(sources):
        sid = rng.uid()
        npi = None
        if kind == "Doctor":
            npi = make_npi(rng, "1")
            if i == 1:  # one referring doctor's NPI was mistyped when the source was added
                npi, how = make_invalid_npi(rng)
                ctx.defect("invalid_npi", "referral_source", sid, field="npi", detail=how)
        doctor = kind == "Doctor"
        ctx.emit(
            "referral_source",
            {
                "id": sid,
                "name": name,
                "type": kind,
                "npi": npi,
                "phone": names.format_phone(names.phone_digits(rng, names.METROS[0][3]), "({a}) {e}-{n}")
                if doctor
                else None,
                "email": f"referrals{i}@{names.ascii_fold(name.split(' – ')[0])[:12]}.com"
                if doctor
                else None,
                "preferences": rng.choice(PREFERENCES) if doctor else None,
                "is_active": rng.random() < 0.85,
            },
            rng.between(ctx.start, ctx.start + 2000 * DAY),
        )
        ids.append(sid)
    return ids
