"""Owner resolution: Sensei users -> Dataverse system users, decided before anything is written.

Sensei users are matched by e-mail, case-insensitively: ``internalemailaddress`` first, then ``domainname`` (the
UPN). Each user gets one outcome:

- ``matched``: an enabled, interactive user; it owns the user's records;
- ``disabled`` (``isdisabled``), ``application`` (``applicationid`` set), ``non_interactive`` (``accessmode`` 4):
  Dataverse refuses a disabled owner (0x8004022b), and an application or non-interactive user
  owning patient records hides them from the practice;
- ``missing``: no system user has the e-mail (or the Sensei user has none);
- ``unknown_user``: a staged row names a Sensei user id absent from the extract (:func:`owner_problems` only).

Problem users get the configured fallback owner (an enabled interactive user, or a team), or no owner. Without a
fallback, the blocking ``owners_resolved`` check (``assets/owners.py``) fails naming every such user id, so activity
records are never orphaned to inactive owners silently. E-mails and names stay out of reports and metadata; only ids and outcomes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import polars as pl

if TYPE_CHECKING:
    from senseimig_dagster.dataverse.client import DataverseClient

OWNER_COLUMN = "_owner_user_id"
CHECK_NAME = "owners_resolved"
NON_INTERACTIVE = 4  # systemuser.accessmode Non-interactive [memory]
SYSTEMUSER_COLUMNS = ("systemuserid", "internalemailaddress", "domainname", "isdisabled", "accessmode",
                      "applicationid", "fullname")
SYSTEMUSER_SCHEMA: dict[str, pl.DataType] = {
    "systemuserid": pl.String(), "internalemailaddress": pl.String(), "domainname": pl.String(),
    "isdisabled": pl.Boolean(), "accessmode": pl.Int64(), "applicationid": pl.String(), "fullname": pl.String(),
}
Outcome = Literal["matched", "disabled", "application", "non_interactive", "missing", "unknown_user"]
# Best candidate first when two system users share an e-mail.
_RANK = {"matched": 0, "non_interactive": 1, "application": 2, "disabled": 3}
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
REPORT_SCHEMA: dict[str, pl.DataType] = {"user_id": pl.String(), "outcome": pl.String(), "systemuserid": pl.String(),
                                         "owner_id": pl.String(), "owner_type": pl.String()}


class FallbackOwnerInvalid(ValueError):
    """The configured fallback owner can't own records (message names the id and why, never the e-mail)."""


@dataclass(frozen=True)
class FallbackOwner:
    id: str
    type: Literal["systemuser", "team"]


@dataclass(frozen=True)
class OwnerResolution:
    """``owners``: one row per Sensei user (REPORT_SCHEMA): ``owner_id``/``owner_type`` is who owns their records
    (the matched user, the fallback, or null). ``report``: the problem users only. No e-mails or names."""

    owners: pl.DataFrame
    fallback: FallbackOwner | None

    @property
    def report(self) -> pl.DataFrame:
        return self.owners.filter(pl.col("outcome") != "matched")

    def outcome_counts(self) -> dict[str, int]:
        return dict(self.owners.group_by("outcome").len().sort("outcome").iter_rows())


def fetch_systemusers(client: DataverseClient) -> pl.DataFrame:
    """Every system user with what matching needs; ``fullname`` is fetched for people reviewing the
    match locally and must stay out of metadata."""
    rows = [{c: r.get(c) for c in SYSTEMUSER_COLUMNS} for r in client.query("systemusers", SYSTEMUSER_COLUMNS)]
    return pl.DataFrame(rows, schema=SYSTEMUSER_SCHEMA, orient="row")


def _classified(systemusers: pl.DataFrame) -> pl.DataFrame:
    return systemusers.with_columns(
        pl.when(pl.col("isdisabled").fill_null(False)).then(pl.lit("disabled"))
        .when(pl.col("applicationid").is_not_null()).then(pl.lit("application"))
        .when(pl.col("accessmode") == NON_INTERACTIVE).then(pl.lit("non_interactive"))
        .otherwise(pl.lit("matched")).alias("outcome"))


def _by_email(systemusers: pl.DataFrame, column: str) -> pl.DataFrame:
    """One system user per lower-cased e-mail in ``column``, the best-ranked when several share it."""
    return (systemusers.filter(pl.col(column).is_not_null())
            .with_columns(pl.col(column).str.strip_chars().str.to_lowercase().alias("_email"),
                          pl.col("outcome").replace_strict(_RANK, return_dtype=pl.Int8).alias("_rank"))
            .sort("_rank", "systemuserid").unique("_email", keep="first", maintain_order=True)
            .select("_email", "systemuserid", "outcome"))


def resolve_owners(users: pl.DataFrame, systemusers: pl.DataFrame, fallback: FallbackOwner | str | None = None
                   ) -> OwnerResolution:
    """Match Sensei ``users`` (``id``, ``email``, ``is_active``) to ``systemusers`` (:func:`fetch_systemusers`).

    ``fallback`` (a :class:`FallbackOwner`, or a systemuserid resolved here against ``systemusers``) owns the
    problem users' records; without one they own nothing and the owner check fails for their rows.
    """
    if isinstance(fallback, str):
        fallback = resolve_fallback(fallback, systemusers)
    classified = _classified(systemusers)
    email = pl.col("email").cast(pl.String).str.strip_chars().str.to_lowercase()
    base = users.select(pl.col("id").cast(pl.String).alias("user_id"), email.alias("_email"))
    primary = _by_email(classified, "internalemailaddress")
    upn = _by_email(classified, "domainname").rename({"systemuserid": "_upn_id", "outcome": "_upn_outcome"})
    joined = (base.join(primary, on="_email", how="left").join(upn, on="_email", how="left")
              .with_columns(pl.coalesce("systemuserid", "_upn_id").alias("systemuserid"),
                            pl.coalesce("outcome", "_upn_outcome", pl.lit("missing")).alias("outcome")))
    is_matched = pl.col("outcome") == "matched"
    fb_id = pl.lit(fallback.id if fallback else None, pl.String)
    fb_type = pl.lit(fallback.type if fallback else None, pl.String)
    owners = joined.select(
        "user_id", "outcome", "systemuserid",
        pl.when(is_matched).then(pl.col("systemuserid")).otherwise(fb_id).alias("owner_id"),
        pl.when(is_matched).then(pl.lit("systemuser")).otherwise(fb_type).alias("owner_type"),
    ).cast(REPORT_SCHEMA)  # type: ignore[arg-type]
    return OwnerResolution(owners, fallback)


def resolve_fallback(value: str, systemusers: pl.DataFrame, client: DataverseClient | None = None) -> FallbackOwner:
    """The configured fallback owner (an e-mail or a systemuserid; a team id when ``client`` can look teams up),
    checked: it must be an enabled interactive user or a team."""
    value = value.strip()
    classified = _classified(systemusers)
    if _GUID.match(value):
        found = classified.filter(pl.col("systemuserid").str.to_lowercase() == value.lower())
        what = value
    else:
        lowered = value.lower()
        found = classified.filter((pl.col("internalemailaddress").str.to_lowercase() == lowered)
                                  | (pl.col("domainname").str.to_lowercase() == lowered))
        what = "the configured e-mail"
    if found.height:
        best = found.sort(pl.col("outcome").replace_strict(_RANK, return_dtype=pl.Int8)).row(0, named=True)
        if best["outcome"] != "matched":
            raise FallbackOwnerInvalid(f"fallback owner {best['systemuserid']} is {best['outcome']}: pick an enabled "
                                       "interactive user or a team")
        return FallbackOwner(best["systemuserid"], "systemuser")
    if client is not None and _GUID.match(value):
        teams = list(client.query("teams", ["teamid"], filter=f"teamid eq {value}"))
        if teams:
            return FallbackOwner(teams[0]["teamid"], "team")
    raise FallbackOwnerInvalid(f"fallback owner {what} is neither a system user nor a team in this environment")


def with_owners(frame: pl.DataFrame, resolution: OwnerResolution) -> pl.DataFrame:
    """``frame`` plus ``_owner_id``/``_owner_type`` (systemuser or team) per row from its ``_owner_user_id``; rows
    naming a user the extract lacks get the fallback too. Rows without a Sensei user keep null (default owner)."""
    fb = resolution.fallback
    owners = resolution.owners.select(pl.col("user_id").alias(OWNER_COLUMN), pl.col("owner_id").alias("_owner_id"),
                                      pl.col("owner_type").alias("_owner_type"), pl.lit(True).alias("_known_user"))
    joined = frame.with_columns(pl.col(OWNER_COLUMN).cast(pl.String)).join(owners, on=OWNER_COLUMN, how="left")
    unknown = pl.col(OWNER_COLUMN).is_not_null() & pl.col("_known_user").is_null()
    return joined.with_columns(
        pl.when(unknown).then(pl.lit(fb.id if fb else None, pl.String)).otherwise("_owner_id").alias("_owner_id"),
        pl.when(unknown).then(pl.lit(fb.type if fb else None, pl.String)).otherwise("_owner_type")
        .alias("_owner_type")).drop("_known_user")


def owner_problems(frame: pl.DataFrame, resolution: OwnerResolution) -> pl.DataFrame:
    """Per Sensei user whose rows in ``frame`` would get no owner: ``user_id``, ``outcome``, ``rows``."""
    if OWNER_COLUMN not in frame.columns:
        return pl.DataFrame(schema={"user_id": pl.String, "outcome": pl.String, "rows": pl.UInt32})
    used = (frame.select(pl.col(OWNER_COLUMN).cast(pl.String).alias("user_id")).drop_nulls()
            .group_by("user_id").len("rows"))
    fallback = resolution.fallback.id if resolution.fallback else None
    return (used.join(resolution.owners.select("user_id", "outcome", "owner_id"), on="user_id", how="left")
            .with_columns(pl.col("outcome").fill_null("unknown_user"),
                          pl.col("owner_id").fill_null(pl.lit(fallback, pl.String)))
            .filter(pl.col("owner_id").is_null())
            .select("user_id", "outcome", "rows").sort("user_id"))
