"""Text: Unicode NFC, control characters out, whitespace collapsed, length checked as Dataverse counts it.

Emoji, right-to-left scripts, zero-width joiners and accents are valid text and pass unchanged (already-NFC input
is returned as is); only C0/C1 control characters (NUL, ESC, …) and byte-order marks are removed. All O(n).
"""

from __future__ import annotations

import polars as pl

from senseimig_dagster.staging.values import cleaned, first_reason

# C0 controls except TAB/LF/CR, DEL, C1 controls, and the BOM that spreadsheet exports leave at the start.
CONTROL = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F\x{FEFF}]"
_ASTRAL = r"[\x{10000}-\x{10FFFF}]"


def dataverse_length(text: pl.Expr) -> pl.Expr:
    """Length in UTF-16 code units, which is how Dataverse (.NET strings) counts MaxLength [memory]: an emoji
    outside the Basic Multilingual Plane counts as 2."""
    return text.str.len_chars() + text.str.count_matches(_ASTRAL)


def clean_text(text: pl.Expr, *, max_length: int | None = None, required: bool = False,
               multiline: bool = False) -> pl.Expr:
    """Trimmed NFC text without control characters; blank becomes null.

    Single-line text has every whitespace run (tabs, newlines, NBSP) collapsed to one space; ``multiline`` text
    (notes) keeps its line breaks and inner spacing, with CRLF made LF. Reasons, most severe first:
    ``required_missing``, ``text_too_long`` (value kept so a person sees all of it), ``control_characters``.
    """
    nfc = text.cast(pl.String).str.normalize("NFC")
    stripped = nfc.str.replace_all(CONTROL, "")
    stripped = stripped.str.replace_all("\r\n", "\n", literal=True) if multiline \
        else stripped.str.replace_all(r"\s+", " ")
    trimmed = stripped.str.strip_chars()
    value = pl.when(trimmed.str.len_bytes() == 0).then(pl.lit(None, pl.String)).otherwise(trimmed)
    checks: list[tuple[pl.Expr, str]] = []
    if required:
        checks.append((value.is_null(), "required_missing"))
    if max_length is not None:
        checks.append((dataverse_length(value) > max_length, "text_too_long"))
    checks.append((nfc.str.contains(CONTROL), "control_characters"))
    return cleaned(value, first_reason(*checks))
