"""The mess real tenants have, injected on purpose and recorded in defects.jsonl.

Row-level defects (free-text providers, orphaned references) are applied by hooks as rows are emitted;
patient-level ones (duplicates, odd names, bad contacts) when a patient row is built. Rare kinds use the
context's quotas so that even a small tenant carries each of them.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from typing import Any

from senseimig_dagster.sandbox.generator import names
from senseimig_dagster.sandbox.generator.core import Ctx
from senseimig_dagster.sandbox.generator.model import Reference, Staff

FREE_TEXT_RATE = 0.05
FREE_TEXT_OBJECTS = ("appointment", "clinical_note", "ledger_transaction")
# fmt: off
UNRESOLVABLE = (
    "Dr. Locum", "TEMP PROVIDER", "Hygiene Dept", "old doc - see chart", "Dr. ???", "Former associate",
)
# fmt: on
ORPHAN_RATE = 0.003
# references that real exports leave dangling (a purged provider, policy, claim or login)
ORPHAN_FIELDS: dict[str, tuple[str, ...]] = {
    "appointment": ("provider_id",),
    "clinical_note": ("appointment_id",),
    "ledger_transaction": ("claim_id",),
    "document": ("claim_id",),
    "patient_referral": ("referral_source_id",),
    "claim": ("patient_policy_id",),
    "communication": ("user_id",),
    "eligibility_check": ("patient_policy_id",),
    "treatment_plan": ("provider_id",),
}
# per-patient quotas (share of patient slots); consumed by the next row able to host them
# fmt: off
QUOTAS = {
    "duplicate_patient": 0.03, "non_ascii_name": 0.02, "bad_email": 0.02, "bad_phone": 0.02,
    "long_name": 0.001, "long_note": 0.002, "large_document": 0.025, "tiny_document": 0.01, "dup_note": 0.003,
    "dup_perio": 0.002, "dup_plan_item": 0.002,
}
# fmt: on


def _free_text_names(providers: list[Staff]) -> dict[str, list[tuple[str, str]]]:
    """Each provider's free-text spellings, with whether the text identifies exactly one provider."""
    by_last = Counter(p.last.lower() for p in providers)
    by_initial = Counter((p.first[0].lower(), p.last.lower()) for p in providers)
    by_first = Counter(p.first.lower() for p in providers)
    out = {}
    for p in providers:
        title = {"Doctor": "DDS", "Hygienist": "RDH"}.get(p.role, "DA")

        def verdict(count: int) -> str:
            return "resolvable" if count == 1 else "ambiguous"

        spellings = [
            (
                f"{p.first[0]} {p.last.upper()} {title}",
                verdict(by_initial[(p.first[0].lower(), p.last.lower())]),
            ),
            (f"{p.last.lower()}, {p.first.lower()}", "resolvable"),
            (p.abbreviation, "resolvable"),
            (f"{p.first} {p.last}", "resolvable"),
        ]
        if p.role == "Doctor":
            spellings.append((f"Dr. {p.last}", verdict(by_last[p.last.lower()])))
        else:
            short = "hyg" if p.role == "Hygienist" else "asst"
            spellings.append((f"{p.first} ({short})", verdict(by_first[p.first.lower()])))
        out[p.id] = spellings
    return out


class RowMess:
    """Row hooks: free-text providers and orphaned references."""

    def __init__(self, ref: Reference) -> None:
        self.spellings = _free_text_names(ref.providers)

    def __call__(self, ctx: Ctx, obj: str, row: dict[str, Any]) -> None:
        rng = ctx.rng
        if obj in FREE_TEXT_OBJECTS and row.get("provider_id") and rng.random() < FREE_TEXT_RATE:
            true_id = row["provider_id"]
            if rng.random() < 0.06:
                text, verdict, of = rng.choice(UNRESOLVABLE), "unresolvable", None
            else:
                (text, verdict), of = rng.choice(self.spellings[true_id]), true_id
            row["provider_id"], row["provider_name"] = None, text
            if obj == "clinical_note":
                row["signed_by"] = None  # legacy notes carry the signer as text too
            ctx.defect("free_text_provider", obj, row["id"], field="provider_id", detail=verdict, of=of)
        for field in ORPHAN_FIELDS.get(obj, ()):
            if row.get(field) and rng.random() < ORPHAN_RATE:
                row[field] = rng.uid()
                ctx.defect("orphan_reference", obj, row["id"], field=field, detail=row[field])

    def install(self, ctx: Ctx) -> None:
        for obj in {*FREE_TEXT_OBJECTS, *ORPHAN_FIELDS}:
            ctx.row_hooks[obj] = self


Declared = list[tuple[str, str, str | None]]  # (kind, field, detail) declared on one patient row


def patient_defects(ctx: Ctx, row: dict[str, Any]) -> Declared:
    """Odd names and broken contact details on a patient row (quota-driven); what was declared."""
    rng = ctx.rng
    declared: Declared = []
    if ctx.take("long_name"):
        row["last_name"] = names.long_last_name(rng)
        declared.append(("long_name", "last_name", str(len(row["last_name"]))))
    if ctx.take("non_ascii_name"):
        field = "first_name" if declared or rng.random() < 0.5 else "last_name"
        row[field] = rng.choice(names.NON_ASCII_FIRST if field == "first_name" else names.NON_ASCII_LAST)
        if field == "first_name":
            row["nickname"] = None
        declared.append(("non_ascii_name", field, None))
    if ctx.take("bad_email"):
        row["email"], how = names.bad_email(rng, row["first_name"], row["last_name"])
        declared.append(("bad_email", "email", how))
    if ctx.take("bad_phone"):
        field = next((f for f in ("mobile_phone", "home_phone", "work_phone") if row[f]), "mobile_phone")
        row[field], how = names.bad_phone(rng, _digits(row[field]) or "3035550100")
        row["preferred_phone"] = row["preferred_phone"] or "Mobile"
        declared.append(("bad_phone", field, how))
    for kind, field, detail in declared:
        ctx.defect(kind, "patient", row["id"], field=field, detail=detail)
    return declared


def _still_defective(kind: str, value: Any, original: Any) -> bool:
    if kind == "long_name":
        return isinstance(value, str) and len(value) > 100
    if kind == "non_ascii_name":
        return isinstance(value, str) and not value.isascii()
    return value is not None and value == original  # a bad e-mail or phone copied onto the duplicate


DUPLICATE_VARIANTS = ("nickname", "case", "typo", "phone_format", "no_email", "address", "new_location")
# Of the duplicates, the share also entered with the errors real conversions make (public record-linkage sets
# have them): these draw from their own RNG, seeded by the duplicate's id, so every other row stays as it was.
HARSH_SHARE = 0.5
HARSH_VARIANTS = ("name_swap", "typos", "dob_transposed", "dob_typo", "missing_fields", "moved")
MISSABLE = ("email", "mobile_phone", "home_phone", "work_phone", "address_line1", "ssn_last_four", "date_of_birth")


def duplicate_of(
    ctx: Ctx, ref: Reference, original: dict[str, Any], declared: Declared, phone_format: Any
) -> dict[str, Any]:
    """The same person entered again (legacy conversion, front-desk re-registration), spelled differently.

    Defects of the original that the copy still carries are declared on the copy too.
    """
    rng = ctx.rng
    row = dict(original)
    row["id"] = rng.uid()
    row["patient_number"] = str(100000 + ctx.next_number("patient"))
    applied = []
    for variant in rng.sample(DUPLICATE_VARIANTS, rng.randint(1, 3)):
        if _vary(ctx, ref, row, variant, phone_format):
            applied.append(variant)
    harsh = random.Random(f"{ctx.seed}:{row['id']}")
    if harsh.random() < HARSH_SHARE:
        for variant in harsh.sample(HARSH_VARIANTS, harsh.randint(1, 2)):
            if _harsh(harsh, row, variant, phone_format, ctx.as_of.date()):
                applied.append(variant)
    if not applied:  # nothing applicable: an exact re-entry, which is a duplicate too
        applied.append("exact")
    row["status"] = "Inactive" if rng.random() < 0.5 else "Active"
    row["last_visit_date"] = None
    ctx.defect("duplicate_patient", "patient", row["id"], detail=",".join(applied), of=original["id"])
    for kind, field, detail in declared:
        if _still_defective(kind, row[field], original[field]):
            ctx.defect(kind, "patient", row["id"], field=field, detail=detail)
    return row


def _vary(ctx: Ctx, ref: Reference, row: dict[str, Any], variant: str, phone_format: Any) -> bool:
    rng = ctx.rng
    first = row["first_name"]
    if variant == "nickname":
        nick = names.nickname_of(first) or row["nickname"]
        if nick and nick != first:
            row["first_name"], row["nickname"] = nick, None
            return True
        return False
    if variant == "case":
        row["last_name"] = row["last_name"].upper() if rng.random() < 0.7 else row["last_name"].lower()
        return True
    if variant == "typo":
        field = rng.choice(("first_name", "last_name"))
        changed = names.typo(rng, row[field])
        if changed == row[field]:
            return False
        row[field] = changed
        return True
    if variant == "phone_format":
        field = next((f for f in ("mobile_phone", "home_phone", "work_phone") if row[f]), None)
        digits = _digits(row[field]) if field else None
        if not digits:
            return False
        new = names.format_phone(digits, phone_format.pick(rng))
        while new == row[field]:
            new = names.format_phone(digits, phone_format.pick(rng))
        row[field] = new
        return True
    if variant == "no_email":
        had = row["email"] is not None
        row["email"] = None
        return had
    if variant == "address":
        line = row["address_line1"]
        for full, short in names.SUFFIXES:
            if line.endswith(" " + short) and full != short:
                row["address_line1"] = line[: -len(short)] + full.upper()
                return True
            if line.endswith(" " + full) and full != short:
                row["address_line1"] = line[: -len(full)] + short + "."
                return True
        return False
    others = [loc for loc in ref.locations if loc.id != row["primary_location_id"]]
    row["primary_location_id"] = rng.choice(others).id  # registered again at another practice of the group
    return True


def _harsh(rng: random.Random, row: dict[str, Any], variant: str, phone_format: Any, latest: dt.date) -> bool:
    """A harsher error on a duplicate: names swapped, several typos, a birth date transposed or mistyped,
    fields left empty, or the person moved (new address and phone, no e-mail)."""
    dob: dt.date | None = row["date_of_birth"]
    if variant == "name_swap":
        row["first_name"], row["last_name"] = row["last_name"], row["first_name"]
        return True
    if variant == "typos":
        for field in rng.sample(("first_name", "last_name", "last_name"), 2):
            row[field] = names.typo(rng, row[field])
        return True
    if variant == "dob_transposed":
        if dob is None or dob.day > 12 or dob.day == dob.month:
            return False
        row["date_of_birth"] = dob.replace(month=dob.day, day=dob.month)
        return True
    if variant == "dob_typo":
        for _ in range(10):  # one digit keyed wrong, still a valid date
            text = (dob or dt.date(1980, 1, 1)).strftime("%Y%m%d")
            i = rng.choice((2, 3, 5, 7))
            try:
                changed = dt.datetime.strptime(text[:i] + str(rng.randrange(10)) + text[i + 1:], "%Y%m%d").date()
            except ValueError:
                continue
            if dob is not None and changed != dob and changed < latest:
                row["date_of_birth"] = changed
                return True
        return False
    if variant == "missing_fields":
        present = [f for f in MISSABLE if row[f] is not None]
        for field in rng.sample(present, min(len(present), rng.randint(1, 3))):
            row[field] = None
        return bool(present)
    street, suffix = rng.choice(names.STREETS), rng.choice(names.SUFFIXES)
    row["address_line1"] = f"{rng.randint(100, 19999)} {street} {suffix[0]}"
    row["postal_code"] = (row["postal_code"] or "80202")[:3] + f"{rng.randrange(100):02d}"
    row["mobile_phone"] = names.format_phone(f"{rng.randint(201, 989)}555{rng.randrange(10000):04d}",
                                             phone_format.pick(rng))
    row["home_phone"] = row["email"] = None
    return True


def _digits(phone: str | None) -> str | None:
    """The 10 NANP digits of a well-formed phone, else None."""
    digits = "".join(ch for ch in phone or "" if ch.isdigit())
    if len(digits) == 11 and digits[0] == "1":
        digits = digits[1:]
    return digits if len(digits) == 10 else None
