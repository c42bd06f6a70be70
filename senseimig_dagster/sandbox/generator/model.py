"""In-memory shapes of the small shared reference data (kept for the whole run) and of per-patient state."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo


@dataclass(slots=True)
class Location:
    id: str
    name: str
    city: str
    state: str
    tz: ZoneInfo
    area_codes: tuple[str, ...]
    zip3: str
    suburbs: tuple[str, ...]
    grid: int  # scheduling grid in minutes (10 or 15)
    fee_factor: float
    opened: dt.datetime


@dataclass(slots=True)
class Staff:
    """A provider or a staff login; ``left`` is set for people who no longer work at the practice."""

    id: str
    first: str
    last: str
    role: str
    location: Location
    started: dt.datetime
    left: dt.datetime | None = None
    abbreviation: str = ""
    npi: str | None = None
    email: str = ""

    def works_at(self, when: dt.datetime) -> bool:
        return self.started <= when and (self.left is None or when < self.left)


@dataclass(slots=True)
class Payer:
    id: str
    name: str
    eligibility_enabled: bool


@dataclass(slots=True)
class Plan:
    id: str
    payer: Payer
    coverage: dict[str, int]  # category -> percent
    annual_max: Decimal
    deductible: Decimal
    allowed_factor: float  # PPO allowed amount / billed (internal; drives contractual write-offs)
    year_start_month: int


@dataclass(slots=True)
class Reference:
    organization_id: str
    domain: str
    locations: list[Location]
    providers: list[Staff]
    users: list[Staff]
    plans: list[Plan]
    referral_source_ids: list[str]
    provider_names: dict[str, list[tuple[str, str]]] = field(
        default_factory=dict
    )  # id -> [(text, resolvability)]

    def staff_at(
        self, staff: list[Staff], location: Location, when: dt.datetime, roles: tuple[str, ...]
    ) -> list[Staff]:
        return [s for s in staff if s.location is location and s.role in roles and s.works_at(when)]


@dataclass(slots=True)
class Policy:
    id: str
    plan: Plan
    order: str  # Primary / Secondary
    holder_id: str
    relationship: str
    subscriber_id: str
    effective: dt.date
    termination: dt.date | None
    paid_by_year: dict[int, Decimal] = field(default_factory=dict)
    deductible_by_year: dict[int, Decimal] = field(default_factory=dict)

    def covers(self, day: dt.date) -> bool:
        return self.effective <= day and (self.termination is None or day <= self.termination)

    def benefit_year(self, day: dt.date) -> int:
        return day.year if day.month >= self.plan.year_start_month else day.year - 1


@dataclass(slots=True)
class Person:
    """A patient while its family is being generated."""

    id: str
    first: str
    last: str
    gender: str
    dob: dt.date
    location: Location
    joined: dt.datetime  # first contact with the practice
    guarantor_id: str
    is_child: bool
    row: dict = field(default_factory=dict)  # demographics as written (duplicates copy it)
    policies: list[Policy] = field(default_factory=list)


@dataclass(slots=True)
class Proc:
    code: str
    tooth: str | None
    surfaces: str | None
    fee: Decimal
    category: str


@dataclass(slots=True)
class Visit:
    id: str
    kind: str
    start: dt.datetime
    day: dt.date  # local date at the location
    location: Location
    provider: Staff
    procs: list[Proc]
    duration: int
    end: dt.datetime


@dataclass(slots=True)
class PlanItem:
    id: str
    proc: Proc
    sequence: int
    phase: str
    status: str = "Proposed"
    service_date: dt.date | None = None


@dataclass(slots=True)
class TreatmentPlan:
    id: str
    number: int
    visit: Visit  # the exam it was presented at
    items: list[PlanItem]
    decision: str  # Accepted, Declined, Undecided
    accepted_at: dt.datetime | None
    signed: bool


@dataclass(slots=True)
class Chart:
    """One patient's working state while its history is generated; dropped afterwards."""

    person: Person
    created: dt.datetime  # the patient row's created_at
    broken: float  # multiplier on the cancellation/no-show mix (Pareto-skewed across patients)
    perio_exams: int  # perio charts still to take
    perio_disease: bool
    missing: set[int]
    plans: list[TreatmentPlan] = field(default_factory=list)
    first_visit: dt.date | None = None
    last_visit: dt.date | None = None

    def policy(self, day: dt.date, order: str = "Primary") -> Policy | None:
        return next((p for p in self.person.policies if p.order == order and p.covers(day)), None)
