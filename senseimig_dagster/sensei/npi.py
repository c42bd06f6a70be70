"""NPI check digit (CMS's NPI standard): Luhn over the 9 base digits as if prefixed by 80840 (worth 24)."""

from __future__ import annotations

_PREFIX_SUM = 24  # Luhn contribution of the 80840 prefix


def npi_check_digit(base: str) -> int:
    """The check digit for a 9-digit NPI base."""
    total = _PREFIX_SUM
    for i, ch in enumerate(reversed(base)):
        digit = int(ch)
        if i % 2 == 0:  # rightmost base digit is doubled
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return (10 - total % 10) % 10


def npi_check_digit_ok(npi: str) -> bool:
    """True for a well-formed NPI: 10 ASCII digits, first 1 or 2, valid check digit."""
    if (
        not isinstance(npi, str)
        or len(npi) != 10
        or not npi.isascii()
        or not npi.isdigit()
        or npi[0] not in "12"
    ):
        return False
    return int(npi[9]) == npi_check_digit(npi[:9])
