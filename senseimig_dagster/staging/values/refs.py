"""Frame-level checks: references to parents that are not in the extract, source ids seen twice, and source ids
that only letter case tells apart. O(n)."""

from __future__ import annotations

import polars as pl

from senseimig_dagster.objects import MODIFIED_AT, PRIMARY_KEY
from senseimig_dagster.staging.values import cleaned, first_reason


def _id_list(parent_ids: pl.Series) -> pl.Expr:
    return pl.lit(parent_ids.cast(pl.String).drop_nulls().unique().implode())


def clean_reference(ref: pl.Expr, parent_ids: pl.Series, *, required: bool = False) -> pl.Expr:
    """The id when it names a parent in ``parent_ids``, else null with ``orphan_reference``. A null (or blank)
    id is fine unless ``required`` (``required_missing``). Hash lookup, O(n + parents)."""
    value = ref.cast(pl.String).str.strip_chars()
    value = pl.when(value != "").then(value)
    orphan = value.is_not_null() & ~value.is_in(_id_list(parent_ids))
    missing = (value.is_null(), "required_missing") if required else (pl.lit(False), "required_missing")
    return cleaned(pl.when(~orphan).then(value), first_reason(missing, (orphan, "orphan_reference")))


def orphans(child: pl.DataFrame, parent_ids: pl.Series, field: str) -> pl.Series:
    """True for each child row whose ``field`` is set but names no id in ``parent_ids``."""
    value = pl.col(field).cast(pl.String)
    return child.select((value.is_not_null() & ~value.is_in(_id_list(parent_ids))).alias("orphan")).to_series()


def duplicate_ids(frame: pl.DataFrame, id_column: str = PRIMARY_KEY, order_by: str | None = MODIFIED_AT
                  ) -> pl.Series:
    """True for every copy of a source id except the one to keep: the latest ``order_by`` (the last one read on a
    tie, as ``sensei/records.py`` does within a batch). Rows without an id are never duplicates."""
    indexed = frame.select(pl.col(id_column).cast(pl.String).alias("_id"),
                           *([pl.col(order_by).alias("_order_by")] if order_by in frame.columns else []))
    indexed = indexed.with_row_index("_row")
    sort_keys = ["_order_by", "_row"] if "_order_by" in indexed.columns else ["_row"]
    keep = (indexed.filter(pl.col("_id").is_not_null()).sort(sort_keys, nulls_last=False)
            .unique("_id", keep="last").get_column("_row"))
    return indexed.select(pl.col("_id").is_not_null() & ~pl.col("_row").is_in(keep.implode())).to_series()


def case_colliding_ids(frame: pl.DataFrame, id_column: str = PRIMARY_KEY) -> pl.Series:
    """True for every row whose source id equals another row's different id but for letter case or accents
    (``AB-1``, ``ab-1``, ``áb-1``). Dataverse compares alternate-key values under its database collation, ``_CI_AI``
    for an English environment (https://learn.microsoft.com/power-platform/admin/language-collations), so such ids
    name one record there: every row of the group is marked, as none can be told to be the right one. Copies of
    one exact id are :func:`duplicate_ids`' business, not this."""
    ids = pl.col(id_column).cast(pl.String)
    folded = ids.str.normalize("NFKD").str.replace_all(r"\p{Mn}", "").str.to_lowercase()
    return frame.select((ids.is_not_null() & (ids.n_unique().over(folded) > 1)).alias("case_collision")).to_series()
