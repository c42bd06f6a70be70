"""E-mail addresses checked with ``email-validator``: syntax only (no DNS, migrations run offline), domain
lower-cased and IDNA-normalised, local part kept as typed. O(n) join + O(distinct) validations."""

from __future__ import annotations

import polars as pl
from email_validator import EmailNotValidError, validate_email

from senseimig_dagster.staging.values import map_distinct


def parse_email(text: str) -> tuple[str | None, str | None]:
    """``(normalised address, reason)``; blank is null without a reason. Placeholders ("n/a"), two addresses in one
    field, spaces, a missing top-level domain and reserved domains (``.test``, ``.invalid``) are invalid."""
    text = text.strip()
    if not text:
        return None, None
    try:
        # Internationalised addresses (SMTPUTF8) are accepted; whether Dataverse's e-mail format accepts
        # them is unverified.
        return validate_email(text, check_deliverability=False).normalized, None
    except EmailNotValidError:
        return None, "invalid_email"


def clean_email(email: pl.Expr) -> pl.Expr:
    return map_distinct(email, parse_email, pl.String())
