"""Synthetic NPIs for the sandbox: valid ones, and invalid ones of named kinds (validation is in ``sensei.npi``)."""

from __future__ import annotations

import random

from senseimig_dagster.sensei.npi import npi_check_digit, npi_check_digit_ok

__all__ = ["make_invalid_npi", "make_npi", "npi_check_digit_ok"]


def make_npi(rng: random.Random, first: str = "1") -> str:
    base = first + "".join(rng.choice("0123456789") for _ in range(8))
    return base + str(npi_check_digit(base))


def make_invalid_npi(rng: random.Random) -> tuple[str, str]:
    """An NPI that fails ``npi_check_digit_ok``, and how it is wrong (for the defect's detail)."""
    valid = make_npi(rng, rng.choice("12"))
    how = rng.choice(("check digit", "check digit", "nine digits", "first digit"))
    if how == "check digit":
        return valid[:9] + str((int(valid[9]) + rng.randint(1, 9)) % 10), how
    if how == "nine digits":
        return valid[:9], how
    return rng.choice("3456789") + valid[1:], how
