"""Money as ``Decimal(12, 2)`` with sign rules; never rounded, so ledgers reconcile. O(n)."""

from __future__ import annotations

from typing import Literal

import polars as pl

from senseimig_dagster.sensei import values
from senseimig_dagster.sensei.wire import EXACT_DECIMAL
from senseimig_dagster.staging.values import cleaned, first_reason

MONEY = pl.Decimal(12, 2)
Sign = Literal["any", "debit", "credit"]

# Ledger sign convention (Sensei's "+125.00 debit, -80.00 credit", as the generator posts): debits raise what
# the patient owes, credits lower it. Corrections, removals and initial balances may go either way.
DEBIT_TYPES = ("Charge", "Refund", "ContractCharge")
CREDIT_TYPES = ("Payment", "InsurancePayment", "Discount", "WriteOff", "PrePayment", "ContractAdjustment")


def clean_money(amount: pl.Expr, sign: Sign = "any", dtype: pl.DataType | None = None) -> pl.Expr:
    """An amount as Decimal(12,2): Decimal, integer or text (``$1,250.00``, ``(80.00)`` for negative: the
    extraction's parser, ``sensei/values.py``).

    ``invalid_amount`` for text that is not a number or more than 10 integer digits; ``amount_precision`` for more
    than 2 decimals (never rounded away: a person corrects it); ``negative_charge`` when a ``debit`` amount is
    below 0, ``positive_credit`` when a ``credit`` one is above 0.
    """
    value, invalid, imprecise = _parsed(amount, dtype)
    checks = [(invalid, "invalid_amount"), (imprecise, "amount_precision")]
    if sign == "debit":
        checks.append((value < 0, "negative_charge"))
    elif sign == "credit":
        checks.append((value > 0, "positive_credit"))
    reason = first_reason(*checks)
    return cleaned(pl.when(_keeps_value(reason)).then(value), reason)


def exact_amount(amount: pl.Expr, dtype: pl.DataType | None = None) -> pl.Expr:
    """The amount exactly as received (``EXACT_DECIMAL``, all its decimals), null where it is not a number. A
    column already typed as a decimal or integer (the raw layer's) is cast, no text round trip."""
    if isinstance(dtype, pl.Decimal) or (dtype is not None and dtype.is_integer()):
        return amount.cast(EXACT_DECIMAL, strict=False)
    return values.decimal(amount.cast(pl.String)).struct.field(values.VALUE)


def _parsed(amount: pl.Expr, dtype: pl.DataType | None = None) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """The Decimal(12,2) value, the ``invalid_amount`` mask and the ``amount_precision`` mask (the exact amount has
    more than 2 decimals)."""
    exact = exact_amount(amount, dtype)
    if isinstance(dtype, pl.Decimal) or (dtype is not None and dtype.is_integer()):
        present = amount.is_not_null()
    else:
        present = amount.cast(pl.String).str.strip_chars().fill_null("") != ""
    money = exact.cast(MONEY, strict=False)
    invalid = present & money.is_null()
    imprecise = money.is_not_null() & (money.cast(EXACT_DECIMAL) != exact.cast(EXACT_DECIMAL))
    return money, invalid, imprecise


def _keeps_value(reason: pl.Expr) -> pl.Expr:
    """No value where there is no exact two-decimal amount (a sign problem keeps it: the row is held anyway)."""
    return reason.is_in(["invalid_amount", "amount_precision"]).not_().fill_null(True)


def ledger_amount(amount: pl.Expr, txn_type: pl.Expr, dtype: pl.DataType | None = None) -> pl.Expr:
    """A ledger amount checked against its entry type's sign (``negative_charge`` / ``positive_credit``).
    The text is parsed once, not once per sign rule (three parses cost ~1 s per million rows)."""
    value, invalid, imprecise = _parsed(amount, dtype)
    reason = first_reason((invalid, "invalid_amount"), (imprecise, "amount_precision"),
                          (txn_type.is_in(DEBIT_TYPES) & (value < 0), "negative_charge"),
                          (txn_type.is_in(CREDIT_TYPES) & (value > 0), "positive_credit"))
    return cleaned(pl.when(_keeps_value(reason)).then(value), reason)
