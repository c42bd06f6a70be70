"""The shared reference data: the DSO, its locations, providers and staff logins (payers in ``payers``).

Small (tens to hundreds of rows) and kept in memory for the whole run; everything per patient points into it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

from senseimig_dagster.sandbox.generator import names, payers
from senseimig_dagster.sandbox.generator.core import DAY, Ctx
from senseimig_dagster.sandbox.generator.model import Location, Reference, Staff
from senseimig_dagster.sandbox.generator.npi import make_invalid_npi, make_npi

# fmt: off
ORGANIZATIONS = (
    ("Bright Smiles Dental Group", "brightsmilesdental.com"),
    ("Summit Dental Partners", "summitdentalpartners.com"),
    ("Evergreen Family Dentistry", "evergreenfamilydental.com"),
)
TAXONOMY = (
    ("1223G0001X", 70), ("1223P0300X", 6), ("1223E0200X", 6), ("1223X0400X", 6), ("1223S0112X", 6),
    ("1223P0221X", 6),
)
# fmt: on
HYGIENIST_TAXONOMY = "124Q00000X"
# fmt: off
COLORS = (
    "#4A90E2", "#50E3C2", "#F5A623", "#D0021B", "#7ED321", "#9013FE", "#BD10E0", "#8B572A", "#417505",
)
# fmt: on


def location_count(patients: int) -> int:
    """3–8 locations, growing mildly (logarithmically) with the tenant."""
    return min(8, 3 + sum(patients >= t for t in (1000, 3000, 6000, 10000, 20000)))


def build(ctx: Ctx, patients: int) -> Reference:
    rng = ctx.rng
    org_name, domain = rng.choice(ORGANIZATIONS)
    org_id = rng.uid()
    founded = rng.between(ctx.start - 400 * DAY, ctx.start - 90 * DAY)
    ctx.emit(
        "organization",
        {"id": org_id, "name": org_name, "tax_id": f"{rng.digits(2)}-{rng.digits(7)}"},
        founded,
    )
    locations = _locations(ctx, org_id, org_name, founded, location_count(patients))
    emails: set[str] = set()
    providers = _providers(ctx, locations, domain, emails)
    users = _users(ctx, locations, providers, domain, emails)
    plans = payers.payers_and_plans(ctx)
    ref = Reference(org_id, domain, locations, providers, users, plans, payers.referral_sources(ctx))
    return ref


def _locations(ctx: Ctx, org_id: str, org_name: str, founded: dt.datetime, n: int) -> list[Location]:
    rng = ctx.rng
    metros = [names.METROS[0], *rng.sample(names.METROS[1:], n - 1)]
    invalid_at = rng.randrange(1, n) if n >= 5 else None  # a large group has one location with a mistyped NPI
    brand = org_name.split(" Dental")[0].split(" Family")[0]
    out = []
    for i, (city, state, tz, area, zip3, suburbs) in enumerate(metros):
        opened = founded if i == 0 else rng.between(founded, ctx.start + 6 * 365 * DAY)
        loc = Location(
            rng.uid(),
            f"{brand} – {city}",
            city,
            state,
            ZoneInfo(tz),
            area,
            zip3,
            suburbs,
            rng.choice((10, 15)),
            rng.uniform(0.92, 1.15),
            opened,
        )
        suffix = rng.choice(names.SUFFIXES)[0]
        npi = make_npi(rng, "1")
        if i == invalid_at:
            npi, how = make_invalid_npi(rng)
            ctx.defect("invalid_npi", "location", loc.id, field="npi", detail=how)
        ctx.emit(
            "location",
            {
                "id": loc.id,
                "organization_id": org_id,
                "name": loc.name,
                "npi": npi,
                "tax_id": f"{rng.digits(2)}-{rng.digits(7)}",
                "address_line1": f"{rng.randint(100, 9999)} {rng.choice(names.STREETS)} {suffix}",
                "city": city,
                "state": state,
                "postal_code": zip3 + rng.digits(2),
                "phone": names.format_phone(names.phone_digits(rng, area), "({a}) {e}-{n}"),
                "time_zone": tz,
                "is_active": True,
            },
            opened,
        )
        out.append(loc)
    return out


def _tenure(
    ctx: Ctx, loc: Location, founder: bool, leave_rate: float
) -> tuple[dt.datetime, dt.datetime | None]:
    rng = ctx.rng
    started = loc.opened if founder else rng.between(loc.opened, ctx.as_of - 180 * DAY)
    left = None
    if not founder and rng.random() < leave_rate and started < ctx.as_of - 400 * DAY:
        left = rng.between(started + 365 * DAY, ctx.as_of - 30 * DAY)
    return started, left


def _email(ctx: Ctx, staff: Staff, domain: str, taken: set[str]) -> str:
    """Initial + last name on the practice domain, numbered when taken (the e-mail is the owner match key)."""
    local = f"{names.ascii_fold(staff.first)[:1]}{names.ascii_fold(staff.last)}"
    while local in taken:
        local += str(ctx.rng.randint(1, 9))
    taken.add(local)
    return f"{local}@{domain}"


def _providers(ctx: Ctx, locations: list[Location], domain: str, emails: set[str]) -> list[Staff]:
    rng = ctx.rng
    out: list[Staff] = []
    npis: set[str] = set()
    counters = {"Doctor": 0, "Hygienist": 0, "Assistant": 0}
    for loc in locations:
        roster = ["Doctor"] * (1 + (rng.random() < 0.6) + (rng.random() < 0.25))
        roster += ["Hygienist"] * rng.randint(1, 3) + ["Assistant"] * rng.randint(1, 2)
        for k, role in enumerate(roster):
            gender = rng.choice(("Male", "Female"))
            first, last = names.first_name(rng, gender), rng.choice(names.LAST)
            if role == "Doctor" and len(out) and counters["Doctor"] == 1:
                last = out[0].last  # a husband-and-wife practice: "Dr. <last>" is ambiguous
            counters[role] += 1
            prefix = {"Doctor": "DDS", "Hygienist": "HYG", "Assistant": "DA"}[role]
            started, left = _tenure(ctx, loc, founder=k == 0, leave_rate=0.2)
            staff = Staff(rng.uid(), first, last, role, loc, started, left, f"{prefix}{counters[role]}")
            staff.email = _email(ctx, staff, domain, emails)
            out.append(staff)
            # a few doctors carry a mistyped NPI; the first doctor of the second location always does
            invalid = role == "Doctor" and ((loc is locations[1] and k == 0) or rng.random() < 0.1)
            _emit_provider(ctx, staff, npis, invalid)
    return out


def _emit_provider(ctx: Ctx, p: Staff, npis: set[str], invalid: bool) -> None:
    rng = ctx.rng
    npi = None
    if p.role == "Doctor" or (p.role == "Hygienist" and rng.random() < 0.4):  # hygienists often lack an NPI
        while npi is None or npi in npis:
            npi = make_npi(rng, "1")
        npis.add(npi)
    if invalid:
        npi, how = make_invalid_npi(rng)
        ctx.defect("invalid_npi", "provider", p.id, field="npi", detail=how)
    p.npi = npi
    taxonomy = None
    if p.role == "Doctor":
        taxonomy = rng.choices([t for t, _ in TAXONOMY], [w for _, w in TAXONOMY])[0]
    elif npi:
        taxonomy = HYGIENIST_TAXONOMY
    licenses = []
    if p.role != "Assistant":
        licenses.append({"state": p.location.state, "number": f"{p.location.state}.{rng.digits(7)}"})
        if rng.random() < 0.15:
            licenses.append({"state": rng.choice(("CO", "WY", "UT", "NM", "AZ")), "number": rng.digits(6)})
    ctx.emit(
        "provider",
        {
            "id": p.id,
            "default_location_id": p.location.id,
            "first_name": p.first,
            "last_name": p.last,
            "role": p.role,
            "npi": npi,
            "taxonomy_code": taxonomy,
            "state_licenses": licenses,
            "dea_number": _dea(ctx, p.last) if p.role == "Doctor" and rng.random() < 0.85 else None,
            "color": rng.choice(COLORS),
            "abbreviation": p.abbreviation,
            "email": p.email,
            "is_active": p.left is None,
        },
        p.started,
        p.left,
    )


def _dea(ctx: Ctx, last: str) -> str:
    """A DEA number with a valid check digit: (d1+d3+d5) + 2*(d2+d4+d6), last digit."""
    rng = ctx.rng
    d = [rng.randint(0, 9) for _ in range(6)]
    check = (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10
    initial = names.ascii_fold(last)[:1].upper() or "X"
    return rng.choice("ABFG") + initial + "".join(map(str, d)) + str(check)


def _users(
    ctx: Ctx, locations: list[Location], providers: list[Staff], domain: str, emails: set[str]
) -> list[Staff]:
    """Sensei logins: every provider, plus front desk, managers, billing and admins (some have left)."""
    rng = ctx.rng
    # a login is not the provider row; the name and e-mail tie them together
    users = [dataclasses.replace(p, id=rng.uid()) for p in providers]
    hq = locations[0]
    for loc in locations:
        staff = [("FrontDesk", 0.45)] * rng.randint(2, 4) + [("OfficeManager", 0.2), ("Billing", 0.3)]
        if loc is hq:
            staff += [("Admin", 0.0), ("Admin", 0.3), ("Billing", 0.3)]
        for k, (role, leave_rate) in enumerate(staff):
            gender = rng.choice(("Male", "Female", "Female"))
            started, left = _tenure(
                ctx, loc, founder=k == 0 or role == "Admin" and leave_rate == 0, leave_rate=leave_rate
            )
            user = Staff(
                rng.uid(), names.first_name(rng, gender), rng.choice(names.LAST), role, loc, started, left
            )
            user.email = _email(ctx, user, domain, emails)
            users.append(user)
    for user in users:
        email = user.email
        if rng.random() < 0.1:  # typed with capitals when the account was created
            email = email[0].upper() + email[1:2].upper() + email[2:]
        if user.left is not None:
            ctx.defect("inactive_user", "user", user.id, field="is_active")
        last_login = (
            user.left - rng.randint(0, 10 * 86400) * dt.timedelta(seconds=1)
            if user.left
            else (None if rng.random() < 0.05 else rng.between(ctx.as_of - 5 * DAY, ctx.as_of))
        )
        ctx.emit(
            "user",
            {
                "id": user.id,
                "default_location_id": user.location.id,
                "first_name": user.first,
                "last_name": user.last,
                "email": email,
                "role": user.role,
                "is_active": user.left is None,
                "last_login_at": last_login,
            },
            user.started,
            user.left or last_login,
        )
    return users
