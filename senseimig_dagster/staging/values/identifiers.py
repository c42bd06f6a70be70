"""NPIs and picklist values."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from senseimig_dagster.sensei.npi import npi_check_digit_ok
from senseimig_dagster.staging.values import cleaned, first_reason, map_distinct


def _parse_npi(text: str) -> tuple[str | None, str | None]:
    digits = text.strip().replace("-", "").replace(" ", "")
    if not digits:
        return None, None
    return (digits, None) if npi_check_digit_ok(digits) else (None, "invalid_npi")


def clean_npi(npi: pl.Expr) -> pl.Expr:
    """A 10-digit NPI with a valid check digit (``sensei/npi.py``), spaces and dashes removed; else null with
    ``invalid_npi``. NPIs are few (providers, locations): O(n) join + O(distinct) checks."""
    return map_distinct(npi, _parse_npi, pl.String())


def clean_picklist(label: pl.Expr, options: Mapping[str, int]) -> pl.Expr:
    """A source label mapped to its Dataverse option value through the confirmed map (matched trimmed and
    case-insensitively); a label the map does not cover is ``unmapped_picklist_value``. O(n) hash lookup."""
    keys = {k.strip().lower(): v for k, v in options.items()}
    text = label.cast(pl.String).str.strip_chars()
    text = pl.when(text != "").then(text)
    value = text.str.to_lowercase().replace_strict(list(keys), list(keys.values()), default=None,
                                                  return_dtype=pl.Int32)
    return cleaned(value, first_reason((text.is_not_null() & value.is_null(), "unmapped_picklist_value")))
