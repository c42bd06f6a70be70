"""Comparison columns: what the linkage model compares, normalised in Polars before Splink sees it.

Names accent-folded and lower case, with the known nicknames of each first name (the ``nicknames`` dataset,
Apache-2.0, both directions) and a phonetic code (Metaphone, ``jellyfish``) for blocking; birth date as ISO text;
phones as ten NANP digits (placeholders dropped); e-mail lower case when it looks like one; address with street
suffixes abbreviated; ZIP5; SSN last four. Missing columns are null, so any person-shaped frame can be matched.
"""

from __future__ import annotations

import functools
from collections import defaultdict

import jellyfish
import polars as pl
from nicknames import NickNamer

from senseimig_dagster.objects import PRIMARY_KEY

# Common nicknames the dataset lacks (checked against it; add here rather than patching the package data).
EXTRA_NICKNAMES = (("barbara", "barb"), ("olivia", "liv"), ("evelyn", "evie"), ("madison", "maddie"))
PHONES = ("mobile_phone", "home_phone", "work_phone")
_SUFFIXES = {
    "street": "st", "avenue": "ave", "drive": "dr", "lane": "ln", "court": "ct", "boulevard": "blvd",
    "road": "rd", "place": "pl", "circle": "cir", "parkway": "pkwy", "highway": "hwy", "terrace": "ter",
    "apartment": "apt", "suite": "ste", "north": "n", "south": "s", "east": "e", "west": "w",
}  # fmt: skip
COLUMNS = {
    "unique_id": pl.String, "first": pl.String, "last": pl.String, "first_related": pl.List(pl.String),
    "first_sound": pl.String, "last_sound": pl.String, "initial": pl.String, "dob": pl.String,
    "dob_digits": pl.String, "dob_year": pl.String, "phones": pl.List(pl.String), "phone": pl.String,
    "email": pl.String, "address": pl.String, "zip5": pl.String, "city": pl.String, "ssn4": pl.String,
    "gender": pl.String,
}  # fmt: skip


def _fold(expr: pl.Expr) -> pl.Expr:
    """Accent-folded, lower-case, punctuation-free text with single spaces (O'Brien -> obrien, Zoë -> zoe)."""
    out = (expr.str.normalize("NFKD").str.replace_all(r"\p{M}", "").str.to_lowercase()
           .str.replace_all(r"[-_/,.]", " ").str.replace_all(r"[^a-z0-9 ]", "")
           .str.replace_all(r"\s+", " ").str.strip_chars())
    return pl.when(out != "").then(out)


def _phone(expr: pl.Expr) -> pl.Expr:
    digits = expr.str.replace_all(r"\D", "")
    digits = pl.when(digits.str.len_chars() == 11).then(digits.str.strip_prefix("1")).otherwise(digits)
    # NANP area codes never start with 0 or 1; a placeholder (000-000-0000, 999...) would make one huge block
    placeholder = "^[01]|" + "|".join(f"^{d}{{10}}$" for d in "23456789")
    return pl.when((digits.str.len_chars() == 10) & ~digits.str.contains(placeholder)).then(digits)


def _address(expr: pl.Expr) -> pl.Expr:
    words = _fold(expr)
    for full, short in _SUFFIXES.items():
        words = words.str.replace_all(rf"\b{full}\b", short)
    return words


@functools.cache
def nickname_pairs() -> pl.DataFrame:
    """Every (name, nickname) pair in both directions, lower case."""
    rows = [(name, nick) for name, nicks in NickNamer().nickname_lookup.items() for nick in nicks]
    rows += list(EXTRA_NICKNAMES)
    rows += [(b, a) for a, b in rows]
    return pl.DataFrame(rows, schema={"a": pl.String, "b": pl.String}, orient="row").unique()


@functools.cache
def _related() -> dict[str, list[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for a, b in nickname_pairs().iter_rows():
        out[a].add(b)
    return {k: sorted(v) for k, v in out.items()}


def _sounds(values: pl.Series) -> pl.Series:
    """Metaphone of each distinct value (names repeat: computed once per name)."""
    distinct = values.drop_nulls().unique().to_list()
    codes = {v: jellyfish.metaphone(v.replace(" ", "")) or None for v in distinct}
    return values.replace_strict(codes, default=None, return_dtype=pl.String)


def _col(frame: pl.DataFrame, name: str) -> pl.Expr:
    return pl.col(name).cast(pl.String) if name in frame.columns else pl.lit(None, pl.String)


def comparison_columns(patients: pl.DataFrame) -> pl.DataFrame:
    """One row per patient in ``COLUMNS`` (``unique_id`` is the patient's id). Holds PHI: stays in memory."""
    c = functools.partial(_col, patients)
    email = c("email").str.strip_chars().str.to_lowercase()
    dob = c("date_of_birth").str.slice(0, 10)
    out = patients.select(
        c(PRIMARY_KEY).alias("unique_id"),
        _fold(c("first_name")).alias("first"),
        _fold(c("nickname")).alias("_nick"),
        _fold(c("last_name")).str.replace_all(" ", "").alias("last"),
        pl.when(dob.str.contains(r"^\d{4}-\d{2}-\d{2}$")).then(dob).alias("dob"),
        pl.concat_list([_phone(c(p)) for p in PHONES]).list.drop_nulls().list.unique(maintain_order=True)
        .alias("phones"),
        pl.when(email.str.contains(r"^[^@\s,]+@[^@\s,]+\.[a-z]{2,}$")).then(email).alias("email"),
        _address(c("address_line1")).alias("address"),
        c("postal_code").str.replace_all(r"\s", "").str.slice(0, 5).alias("zip5"),
        _fold(c("city")).alias("city"),
        c("ssn_last_four").str.replace_all(r"\D", "").str.slice(-4).alias("ssn4"),
        c("gender").str.to_lowercase().alias("gender"),
    )
    related = _related()
    nicks = out.get_column("first").replace_strict(related, default=None, return_dtype=pl.List(pl.String))
    out = out.with_columns(
        pl.concat_list(nicks.fill_null([]), pl.col("_nick")).list.drop_nulls().list.unique().alias("first_related"),
        _sounds(out.get_column("first")).alias("first_sound"),
        _sounds(out.get_column("last")).alias("last_sound"),
        pl.col("first").str.slice(0, 1).alias("initial"),
        pl.col("dob").str.replace_all("-", "").alias("dob_digits"),
        pl.col("dob").str.slice(0, 4).alias("dob_year"),
        pl.col("phones").list.first().alias("phone"),
        pl.when(pl.col("ssn4").str.len_chars() == 4).then(pl.col("ssn4")).alias("ssn4"),
    )
    return out.select([pl.col(k).cast(v) for k, v in COLUMNS.items()])
