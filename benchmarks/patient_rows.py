"""Patient rows only, fast: the sandbox generator's households, look-alike members, patient defects and duplicate
kinds, without the clinical and billing history that makes a full tenant take a minute per 1,000 patients.

For the matching benchmark at 100k–1M patients: every row is a distinct person (or a duplicate of one, with the
generator's own duplicate kinds and their truth), not copies of a small tenant. A real practice group of that
size has far more names than the generator's ~170 first and ~180 last names (which would make thousands of
unrelated John Smiths born the same day), so ``wide_names`` adds Faker's US name lists (1,000 surnames
and 700 first names) for the duration of a run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from typing import Any

import polars as pl
from faker.providers.person.en_US import Provider as UsNames  # the bench extra

from senseimig_dagster.sandbox.generator import names, people, reference
from senseimig_dagster.sandbox.generator.core import DEFAULT_AS_OF, Ctx
from senseimig_dagster.sandbox.generator.defects import QUOTAS, duplicate_of, patient_defects

CHUNK = 50_000


class _Defects:
    """A writer that keeps the defect manifest and drops every other row (reference data is not needed)."""

    def __init__(self) -> None:
        self.defects: list[dict[str, Any]] = []

    def write(self, obj: str, row: dict[str, Any]) -> None:
        pass

    def write_document(self, row: dict[str, Any]) -> None:
        pass

    def defect(self, kind: str, obj: str, id_: str, **details: str | None) -> None:
        self.defects.append({"kind": kind, "object": obj, "id": id_, "field": details.get("field"),
                             "detail": details.get("detail"), "of": details.get("of")})


@contextlib.contextmanager
def wide_names() -> Iterator[None]:
    """The generator's name pools widened with Faker's US lists (the generator's own names, with their
    nicknames, stay in)."""
    saved = names.LAST, names.MALE, names.FEMALE
    names.LAST = tuple(dict.fromkeys((*names.LAST, *UsNames.last_names)))
    names.MALE = {**dict.fromkeys(UsNames.first_names_male, ()), **names.MALE}
    names.FEMALE = {**dict.fromkeys(UsNames.first_names_female, ()), **names.FEMALE}
    try:
        yield
    finally:
        names.LAST, names.MALE, names.FEMALE = saved


def _frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, infer_schema_length=None).drop("medical_alerts", "first_visit_date",
                                                             "last_visit_date")


def _own_email(row: dict[str, Any], family: int, email_family: dict[str, int]) -> None:
    """An e-mail address belongs to one household: the generator builds them from name patterns, which among a
    million people repeat (two unrelated Marvin Orrs at marvinorr@gmail.com), so a later family's gets a number
    (marvinorr.7@gmail.com). Set before a duplicate is copied from the row, so the duplicate keeps it."""
    email = row.get("email")
    if not email or "@" not in email:
        return
    owner = email_family.setdefault(email, family)
    if owner != family:
        local, domain = email.rsplit("@", 1)
        row["email"] = f"{local}.{family}@{domain}"
        email_family[row["email"]] = family


def patient_rows(patients: int, seed: int = 5, as_of: dt.datetime = DEFAULT_AS_OF
                 ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``patients`` patient rows (duplicates included, as the full generator places them) and the defects."""
    writer = _Defects()
    ctx = Ctx(writer, seed, as_of)  # type: ignore[arg-type]  # duck-typed writer
    ref = reference.build(ctx, patients)
    ctx.plan_quotas(patients, QUOTAS)
    rows: list[dict[str, Any]] = []
    frames: list[pl.DataFrame] = []
    email_family: dict[str, int] = {}
    slot = families = 0
    while slot < patients:
        family = people.family(ctx, ref, patients - slot)
        families += 1
        for i, person in enumerate(family):
            ctx.open_slot(slot)
            slot += 1
            row = people.patient_row(ctx, ref, person, None, None)
            declared = patient_defects(ctx, row)
            _own_email(row, families, email_family)
            ctx.stamp(row, person.joined, None)
            rows.append(row)
            if patients - slot - (len(family) - i - 1) > 0 and ctx.take("duplicate_patient"):
                ctx.open_slot(slot)
                slot += 1
                copy = duplicate_of(ctx, ref, row, declared, people.PHONE_FORMAT)
                ctx.stamp(copy, person.joined, None)
                rows.append(copy)
        if len(rows) >= CHUNK:  # a million dicts would take gigabytes: framed as they come
            frames.append(_frame(rows))
            rows = []
    frame = pl.concat([*frames, *([_frame(rows)] if rows else [])], how="diagonal_relaxed")
    return frame, pl.DataFrame(writer.defects, schema={k: pl.String for k in
                                                       ("kind", "object", "id", "field", "detail", "of")})
