"""Money as ``Decimal(12, 2)`` with sign rules; never rounded, so ledgers reconcile. O(n)."""

from __future__ import annotations

from typing import Literal

import polars as pl

from senseimig_dagster.staging.values import cleaned, first_reason

MONEY = pl.Decimal(12, 2)
Sign = Literal["any", "debit", "credit"]

# Ledger sign convention (Sensei's "+125.00 debit, -80.00 credit", as the generator posts): debits raise what
# the patient owes, credits lower it. Corrections, removals and initial balances may go either way.
DEBIT_TYPES = ("Charge", "Refund", "ContractCharge")
CREDIT_TYPES = ("Payment", "InsurancePayment", "Discount", "WriteOff", "PrePayment", "ContractAdjustment")
_AMOUNT = r"^-?\d{1,10}(\.\d{1,2})?$"


def clean_money(amount: pl.Expr, sign: Sign = "any", dtype: pl.DataType | None = None) -> pl.Expr:
    """An amount as Decimal(12,2): Decimal, integer or text (``$1,250.00``, ``(80.00)`` for negative).

    ``invalid_amount`` for text that is not a number, more than 2 decimals (never rounded away) or more than 10
    integer digits; ``negative_charge`` when a ``debit`` amount is below 0, ``positive_credit`` when a ``credit``
    one is above 0.
    """
    value, invalid = _parsed(amount, dtype)
    checks = [(invalid, "invalid_amount")]
    if sign == "debit":
        checks.append((value < 0, "negative_charge"))
    elif sign == "credit":
        checks.append((value > 0, "positive_credit"))
    reason = first_reason(*checks)
    return cleaned(value, reason)  # value is already null when the text was not an amount


def _parsed(amount: pl.Expr, dtype: pl.DataType | None = None) -> tuple[pl.Expr, pl.Expr]:
    """The Decimal value (null unless well formed) and the ``invalid_amount`` mask. A column already typed as a
    decimal that fits Decimal(12,2) (the raw layer's) is cast as is: no text round trip, nothing to round."""
    if isinstance(dtype, pl.Decimal) and dtype.scale <= 2 and (dtype.precision or 38) - dtype.scale <= 10:
        return amount.cast(MONEY), pl.lit(False)
    text = amount.cast(pl.String).str.strip_chars().str.replace_all(r"[$,\s]", "")
    text = pl.when(text.str.contains(r"^\(.*\)$")).then(pl.lit("-") + text.str.strip_chars("()")).otherwise(text)
    text = text.str.replace(r"(\.\d*?)0+$", "$1").str.replace(r"\.$", "")  # 12.3400000000 -> 12.34
    well_formed = text.str.contains(_AMOUNT)
    return pl.when(well_formed).then(text).cast(MONEY, strict=False), text.is_not_null() & (text != "") & ~well_formed


def ledger_amount(amount: pl.Expr, txn_type: pl.Expr, dtype: pl.DataType | None = None) -> pl.Expr:
    """A ledger amount checked against its entry type's sign (``negative_charge`` / ``positive_credit``).
    The text is parsed once, not once per sign rule (three parses cost ~1 s per million rows)."""
    value, invalid = _parsed(amount, dtype)
    return cleaned(value, first_reason((invalid, "invalid_amount"),
                                       (txn_type.is_in(DEBIT_TYPES) & (value < 0), "negative_charge"),
                                       (txn_type.is_in(CREDIT_TYPES) & (value > 0), "positive_credit")))
