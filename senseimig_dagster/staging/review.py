"""The review list a migration team works from: every record that was quarantined by staging or rejected before
landing, one row per record, with the object, the record's id, where it came from, the reasons and the names of the
offending fields, never a value (values stay in DuckDB, or in an explicit 0600 export a person asks for).

Not listed: warnings (the value was repaired and kept), identical copies collapsed at extraction (nothing to
decide), and rejected versions of a record that landed in another version.
"""

from __future__ import annotations

import polars as pl

REVIEW_SCHEMA = {"kind": pl.String, "object": pl.String, "record_id": pl.String, "place": pl.String,
                 "reasons": pl.String, "fields": pl.String, "outcome": pl.String}
VALUES_SCHEMA = {"object": pl.String, "record_id": pl.String, "place": pl.String, "field": pl.String,
                 "reason": pl.String, "value": pl.String}
_COLLAPSED = "duplicate_identical"
_OUTCOME = {"row": "not loaded until corrected", "field": "loaded without the field"}


def _joined(column: str) -> pl.Expr:
    text = pl.col(column).drop_nulls().unique().sort().str.join("; ")
    return pl.when(text != "").then(text)


def review_list(quarantine: pl.DataFrame, rejects: pl.DataFrame, landed: dict[str, set[str]] | None = None
                ) -> pl.DataFrame:
    """``staging.quarantine`` and ``raw._rejects`` as one list (``REVIEW_SCHEMA``), quarantined records first.
    ``landed``: object -> ids that landed (a rejected older or newer copy of those is not a record to review)."""
    held = quarantine.filter(pl.col("severity") != "warning").group_by("object", "source_id").agg(
        _joined("rule").alias("reasons"), _joined("field").alias("fields"),
        (pl.col("severity") == "row").any().alias("_row"))
    held = held.select(pl.lit("quarantined").alias("kind"), "object", pl.col("source_id").alias("record_id"),
                       pl.lit(None, pl.String).alias("place"), "reasons", "fields",
                       pl.when("_row").then(pl.lit(_OUTCOME["row"])).otherwise(pl.lit(_OUTCOME["field"]))
                       .alias("outcome"))
    rejected = rejects.filter(pl.col("reason") != _COLLAPSED)
    for name, ids in (landed or {}).items():
        landed_copy = (pl.col("object") == name) & pl.col("source_id").is_in(sorted(ids)).fill_null(False)
        rejected = rejected.filter(~landed_copy)
    rejected = rejected.group_by("object", pl.coalesce("source_id", "source_ref").alias("_key")).agg(
        pl.col("source_id").first().alias("record_id"), _joined("source_ref").alias("place"),
        _joined("reason").alias("reasons"), _joined("field").alias("fields"))
    rejected = rejected.select(pl.lit("rejected").alias("kind"), "object", "record_id", "place", "reasons", "fields",
                               pl.lit("not landed: correct it in Sensei and extract again").alias("outcome"))
    return pl.concat([held.cast(REVIEW_SCHEMA), rejected.cast(REVIEW_SCHEMA)]).sort(
        "kind", "object", "record_id", "place", nulls_last=True)


def review_values(quarantine: pl.DataFrame, rejects: pl.DataFrame) -> pl.DataFrame:
    """The offending values (PHI): for the explicit 0600 export only, never for metadata or logs."""
    held = quarantine.filter(pl.col("severity") != "warning").select(
        "object", pl.col("source_id").alias("record_id"), pl.lit(None, pl.String).alias("place"), "field",
        pl.col("rule").alias("reason"), pl.col("raw_value").alias("value"))
    rejected = rejects.filter(pl.col("reason") != _COLLAPSED).select(
        "object", pl.col("source_id").alias("record_id"), pl.col("source_ref").alias("place"), "field", "reason",
        pl.col("raw").alias("value"))
    return pl.concat([held.cast(VALUES_SCHEMA), rejected.cast(VALUES_SCHEMA)])
