"""Files that hold PHI, written only when a person asks (the diff and audit exports): created owner-only (0600)
before the first byte is written, and every text cell that a spreadsheet would read as a formula defused.

A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is prefixed with a single quote, as OWASP's
"CSV Injection" page recommends (https://owasp.org/www-community/attacks/CSV_Injection): patient-entered text such
as ``=HYPERLINK(...)`` then opens as text, not as a formula.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_PATTERN = r"^[=+\-@\t\r]"
PRIVATE_MODE = 0o600


def formula_safe(value: object) -> object:
    """``value`` as a cell a spreadsheet shows as text: a leading quote before a formula's first character."""
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def formula_safe_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Every text column of ``frame`` made formula-safe (numbers, dates and booleans are written as values)."""
    text = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    return frame.with_columns(pl.when(pl.col(c).str.contains(_FORMULA_PATTERN)).then(pl.lit("'") + pl.col(c))
                              .otherwise(pl.col(c)).alias(c) for c in text)


def private_file(path: str | Path) -> Path:
    """Create (or truncate) ``path`` readable and writable by its owner only, whatever the umask; its parents too."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)  # an existing file keeps its mode through O_CREAT: set it
    finally:
        os.close(fd)
    return path


def write_private_csv(frame: pl.DataFrame, path: str | Path) -> Path:
    """``frame`` as a CSV file at ``path``: owner-only, formula-safe cells, a header row."""
    path = private_file(path)
    with path.open("wb") as fh:
        formula_safe_frame(frame).write_csv(fh)
    return path
