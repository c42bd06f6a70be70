"""Who owns what in Dataverse: the owner map the writers bind ``ownerid`` and lookups to users with, from the
owner resolution (``staging/owners.py``, table ``staging.owners``) and the raw users' e-mails."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl

SYSTEMUSER = "systemuser"


@dataclass(frozen=True)
class OwnerMap:
    """Who owns what: Sensei user id -> owner (a systemuserid, or a whole ``/systemusers(..)``/``/teams(..)``
    reference), and lower-cased e-mail -> systemuserid for lookups to users (staged as e-mails)."""

    by_user_id: Mapping[str, str]
    by_email: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_resolution(cls, owners: pl.DataFrame, users: pl.DataFrame) -> OwnerMap:
        """From ``OwnerResolution.owners`` (user_id, owner_id, owner_type) and the raw users (id, email)."""
        matched = owners.filter((pl.col("owner_type") == SYSTEMUSER) & pl.col("owner_id").is_not_null())
        by_user = dict(matched.select("user_id", "owner_id").iter_rows())
        emails = users.select(pl.col("id").cast(pl.String).alias("user_id"),
                              pl.col("email").cast(pl.String).str.strip_chars().str.to_lowercase().alias("email"))
        by_email = dict(emails.join(matched, on="user_id").select("email", "owner_id").drop_nulls().iter_rows())
        return cls(by_user, by_email)

    @classmethod
    def from_owners_table(cls, owners: pl.DataFrame, users: pl.DataFrame) -> OwnerMap:
        """From ``staging.owners`` (user_id, systemuserid, owner_id, owner_type: the fallback included) and the raw
        users (id, email): owners as whole references (``/systemusers(..)`` or ``/teams(..)``), so a team can own;
        lookups to users only where the Sensei user matched a system user (never the fallback)."""
        owned = owners.filter(pl.col("owner_id").is_not_null() & pl.col("owner_type").is_in([SYSTEMUSER, "team"]))
        by_user = {u: f"/{'teams' if t == 'team' else 'systemusers'}({o})"
                   for u, o, t in owned.select("user_id", "owner_id", "owner_type").iter_rows()}
        emails = users.select(pl.col("id").cast(pl.String).alias("user_id"),
                              pl.col("email").cast(pl.String).str.strip_chars().str.to_lowercase().alias("email"))
        matched = owners.filter(pl.col("systemuserid").is_not_null()).select("user_id", "systemuserid")
        by_email = dict(emails.join(matched, on="user_id").select("email", "systemuserid").drop_nulls().iter_rows())
        return cls(by_user, by_email)
