"""What assets and checks show in the Dagster UI: Markdown tables of ids, counts and reasons (never record values:
callers pass frames without PHI, or masked samples), and the asset-key type the check builders take."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import polars as pl
from dagster import AssetKey

KeyLike: TypeAlias = AssetKey | str | Sequence[str]  # what AssetKey.from_coercible takes
IDS_SHOWN = 50  # ids listed in metadata; the DuckDB tables hold them all


def markdown_table(frame: pl.DataFrame, empty: str = "none") -> str:
    """A Markdown table of ``frame`` (cells with ``|`` escaped); ``empty`` when it has no rows."""
    if frame.is_empty():
        return empty
    header = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * frame.width
    rows = ["| " + " | ".join("" if v is None else str(v).replace("|", "/") for v in row) + " |"
            for row in frame.iter_rows()]
    return "\n".join([header, *rows])
