"""The quarantine model: named reasons, what each does to a row, and the rows that record it.

Every problem found while staging becomes one quarantine row: object, source id, field, rule (the reason code),
severity, a message a person can act on, and the raw value. What happens to the source row is decided by the
reason's severity, never ad hoc:

- ``warning``: the value was repaired (control characters stripped, a local time shifted) or is merely unusual
  (a well-formed CDT code we do not list); value and row are kept.
- ``field``: the value is unusable but the row is not (a bad secondary phone): the field is nulled, the row kept.
- ``row``: the row cannot be migrated as it is (no last name, tooth 33): the whole row is quarantined.

A staging spec may escalate or relax a reason for one field (an orphan claim id on a ledger row is a ``field``
problem, an orphan patient id is a ``row`` one) by passing ``severity=`` where it builds the check.

Raw values are PHI. The quarantine frame lives in DuckDB only; messages carry object, id, field and rule, never a
value; Dagster metadata gets :func:`masked_sample` and :func:`reason_counts`, never the frame itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import polars as pl

from senseimig_dagster.objects import MASK, OBJECTS

Severity = Literal["warning", "field", "row"]
SEVERITY_RANK: dict[str, int] = {"warning": 0, "field": 1, "row": 2}


@dataclass(frozen=True)
class Reason:
    code: str
    message_template: str  # the problem; placeholders {object} {source_id} {field} {detail}; never a value
    severity: Severity  # the default; what it did to the row is appended to every message (OUTCOME)


# fmt: off
_REASONS = (
    Reason("required_missing", "{object} {source_id}: required {field} is empty", "row"),
    Reason("text_too_long", "{object} {source_id}: {field} is longer than its Dataverse column allows ({detail}); "
           "shorten it in Sensei or widen the column", "row"),
    Reason("control_characters", "{object} {source_id}: {field} contained control characters (NUL, escape codes); "
           "they were removed and the rest of the text kept", "warning"),
    Reason("invalid_phone", "{object} {source_id}: {field} is not a dialable phone number", "field"),
    Reason("invalid_email", "{object} {source_id}: {field} is not a valid e-mail address", "field"),
    Reason("invalid_date", "{object} {source_id}: {field} is not a date", "field"),
    Reason("date_out_of_range", "{object} {source_id}: {field} is outside {detail}", "field"),
    Reason("nonexistent_local_time", "{object} {source_id}: {field} falls in a daylight-saving gap; it was moved "
           "forward by one hour", "warning"),
    Reason("unknown_time_zone", "{object} {source_id}: the location's time zone is not an IANA zone, so {field} "
           "cannot be converted to UTC", "row"),
    Reason("invalid_amount", "{object} {source_id}: {field} is not an amount that fits decimal(12,2) with at most "
           "2 decimals", "row"),
    Reason("amount_precision", "{object} {source_id}: {field} has more than 2 decimals; it was received exactly and "
           "is never rounded: correct it in Sensei or in the corrections file", "row"),
    Reason("negative_charge", "{object} {source_id}: {field} is negative on a debit entry ({detail}); ledger totals "
           "would not reconcile", "row"),
    Reason("positive_credit", "{object} {source_id}: {field} is positive on a credit entry ({detail}); ledger totals "
           "would not reconcile", "row"),
    Reason("invalid_cdt_code", "{object} {source_id}: {field} is not a CDT code (D followed by 4 digits)", "row"),
    Reason("unknown_cdt_code", "{object} {source_id}: {field} is a well-formed CDT code missing from the known code "
           "list; please confirm it", "warning"),
    Reason("invalid_tooth", "{object} {source_id}: {field} is not a tooth ({detail})", "row"),
    Reason("invalid_surface", "{object} {source_id}: {field} is not a valid surface combination for the tooth "
           "({detail})", "row"),
    Reason("invalid_npi", "{object} {source_id}: {field} is not a valid NPI (10 digits, first 1 or 2, check digit)",
           "field"),
    Reason("unmapped_picklist_value", "{object} {source_id}: {field} has a value the confirmed map does not cover",
           "field"),
    Reason("orphan_reference", "{object} {source_id}: {field} points at a {detail} that is not in the extract",
           "field"),
    Reason("parent_not_staged", "{object} {source_id}: {field} points at a {detail} that will not be loaded "
           "(quarantined, merged away or deleted in Sensei); fix the parent first", "field"),
    Reason("duplicate_source_id", "{object} {source_id}: the source id appears more than once; the latest copy "
           "is staged", "row"),
    Reason("source_id_case_collision", "{object} {source_id}: the source id differs from another {object}'s only in "
           "letter case or accents, and Dataverse's alternate key {detail} matches them as one record", "row"),
    # used by staging/providers.py (free-text provider names), which writes its own messages with the candidates
    Reason("ambiguous_provider", "{object} {source_id}: the free-text {field} matches several providers", "row"),
    Reason("unknown_provider", "{object} {source_id}: the free-text {field} matches no provider record", "row"),
)
# fmt: on
REASONS: dict[str, Reason] = {r.code: r for r in _REASONS}
# Reasons the document load (dataverse/documents.py) decides from the fetched bytes and SharePoint's name rules:
# kept apart from REASONS, which lists what staging's checks catch (and its tests exercise every one of).
DOCUMENT_REASONS: dict[str, Reason] = {r.code: r for r in (
    Reason("zero_byte_file", "{object} {source_id}: the file is empty (a failed upload at the practice); no note "
           "is created", "row"),
    Reason("missing_at_source", "{object} {source_id}: Sensei answers 404 for the file's content", "row"),
    Reason("source_hash_mismatch", "{object} {source_id}: the bytes fetched differ from Sensei's recorded "
           "{detail}", "row"),
    Reason("renamed_forbidden_characters", "{object} {source_id}: {field} has characters or a form SharePoint "
           "forbids ({detail}); stored under a sanitised name", "warning"),
    Reason("renamed_duplicate", "{object} {source_id}: {field} repeats another file's name in the patient's "
           "folder; stored with a numbered suffix", "warning"),
)}


def reason(code: str) -> Reason:
    try:
        return REASONS[code]
    except KeyError:
        raise KeyError(f"unknown quarantine reason {code!r}") from None


QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "object": pl.String(), "source_id": pl.String(), "field": pl.String(), "rule": pl.String(),
    "severity": pl.String(), "message": pl.String(), "raw_value": pl.String(),
}


def empty() -> pl.DataFrame:
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)


OUTCOME: dict[str, str] = {
    "warning": "; the value and the row were kept",
    "field": "; the field was left empty and the row kept",
    "row": "; the row was quarantined and will not be loaded until fixed",
}


def message_expr(code: str, obj: str, field: str, source_id: pl.Expr, detail: str = "",
                 severity: Severity | None = None) -> pl.Expr:
    """The reason's message plus its outcome, constant parts filled in, the source id spliced in per row."""
    template = reason(code).message_template + OUTCOME[severity or reason(code).severity]
    text = template.replace("{object}", obj).replace("{field}", field)
    before, _, after = text.replace("{detail}", detail).partition("{source_id}")
    return pl.concat_str([pl.lit(before), source_id.cast(pl.String).fill_null("(no id)"), pl.lit(after)])


def from_mask(frame: pl.DataFrame, obj: str, field: str, code: str, mask: pl.Series | pl.Expr, *,
              id_column: str = "id", detail: str = "", severity: Severity | None = None,
              raw: pl.Expr | None = None) -> pl.DataFrame:
    """Quarantine rows for every row of ``frame`` where ``mask`` is true. O(n), vectorised.

    ``raw`` defaults to the field's value as text (null when the field is not a column, e.g. a row-level rule).
    """
    mask_expr = pl.lit(mask) if isinstance(mask, pl.Series) else mask
    if raw is None:
        raw = pl.col(field).cast(pl.String) if field in frame.columns else pl.lit(None, pl.String)
    return frame.filter(mask_expr.fill_null(False)).select(
        pl.lit(obj).alias("object"), pl.col(id_column).cast(pl.String).alias("source_id"), pl.lit(field).alias("field"),
        pl.lit(code).alias("rule"), pl.lit(severity or reason(code).severity).alias("severity"),
        message_expr(code, obj, field, pl.col(id_column), detail, severity).alias("message"), raw.alias("raw_value"),
    ).cast(QUARANTINE_SCHEMA)  # type: ignore[arg-type]


def quarantined_ids(quarantine: pl.DataFrame) -> pl.Series:
    """Source ids whose whole row is quarantined (at least one ``row`` reason)."""
    return quarantine.filter(pl.col("severity") == "row").get_column("source_id").unique()


def reason_counts(quarantine: pl.DataFrame) -> pl.DataFrame:
    """Counts per object, rule and severity: safe for metadata (no ids, no values)."""
    return (quarantine.group_by("object", "rule", "severity").len("rows")
            .sort(["object", "rows", "rule"], descending=[False, True, False]))


def _shown_fields() -> pl.DataFrame:
    """The registry's allow-list (``Field.shown``): every other raw value is masked whole."""
    rows = [(o.name, name) for o in OBJECTS.values() for name in sorted(o.shown_fields)]
    return pl.DataFrame(rows, schema={"object": pl.String, "field": pl.String}, orient="row")


def masked_sample(quarantine: pl.DataFrame, n: int = 10, *, extra_phi: Mapping[str, set[str]] | None = None
                  ) -> pl.DataFrame:
    """A few quarantine rows per rule for Dagster metadata: PHI raw values masked, others cut to 40 characters.

    ``extra_phi`` masks more fields per object (free-text fields the registry does not flag).
    """
    shown = _shown_fields().with_columns(pl.lit(True).alias("_shown"))
    if extra_phi:
        hidden = pl.DataFrame([(o, f) for o, fs in extra_phi.items() for f in fs],
                              schema={"object": pl.String, "field": pl.String}, orient="row")
        shown = shown.join(hidden, on=["object", "field"], how="anti")
    sample = quarantine.group_by("rule", maintain_order=True).head(n)
    return (sample.join(shown, on=["object", "field"], how="left")
            .with_columns(pl.when(pl.col("raw_value").is_null()).then(None)
                          .when(pl.col("_shown")).then(pl.col("raw_value").str.slice(0, 40))
                          .otherwise(pl.lit(MASK)).alias("raw_value"))
            .drop("_shown").select(list(QUARANTINE_SCHEMA)))
