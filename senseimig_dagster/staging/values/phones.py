"""Phones to E.164 with Google's libphonenumber (``phonenumbers``), not regexes.

Per-value parsing, so it runs once per distinct number (``map_distinct``): O(n) join + O(distinct) parses.
"""

from __future__ import annotations

import re

import phonenumbers
import polars as pl

from senseimig_dagster.staging.values import map_distinct

DEFAULT_REGION = "US"
# An extension the front desk typed after the number: "x12", "ext. 12", "extension 12", "#12".
_EXTENSION = re.compile(r"\s*(?:ext(?:ension)?\.?|x|#)\s*(\d{1,7})\s*$", re.IGNORECASE)
_LETTER = re.compile(r"[^\W\d_]")


def parse_phone(text: str, region: str = DEFAULT_REGION) -> tuple[str | None, str | None]:
    """``(E.164 number, reason)``; an extension is kept as ``+13035550111 x12`` (E.164 has no extension field,
    and phonenumbers reads this form back). Blank is null without a reason."""
    text = text.strip()
    if not text:
        return None, None
    match = _EXTENSION.search(text)
    number, extension = (text[: match.start()], match.group(1)) if match else (text, None)
    # Letters besides an extension mean free text ("call mom", "N/A"); vanity numbers (1-800-FLOWERS) are not
    # something a patient record should hold either, so they are not translated.
    if _LETTER.search(number):
        return None, "invalid_phone"
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None, "invalid_phone"
    if not phonenumbers.is_valid_number(parsed):  # wrong length, 000-000-0000, no area code, unassigned ranges
        return None, "invalid_phone"
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return (f"{e164} x{extension}" if extension else e164), None


def clean_phone(phone: pl.Expr, region: str = DEFAULT_REGION) -> pl.Expr:
    """E.164 phone (extension kept) or null with ``invalid_phone``; numbers without ``+`` are read in ``region``."""
    return map_distinct(phone, lambda text: parse_phone(text, region), pl.String())
