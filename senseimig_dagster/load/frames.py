"""Staged frames made ready for the wire: which rows go to which table, which columns each table takes, lookups to
users and owners bound by GUID, and the ids of tables without the source-id key.

A staged frame (``staging/shape.py``) names value columns by their Dataverse logical names and lookup columns by
their navigation property, holding the parent's Sensei source id; bookkeeping columns start with ``_``
(``_source_id``, ``_table`` on routed objects, ``_owner_user_id`` where a Sensei user owns the row). Lookups to
users hold a Sensei user's e-mail, and ``systemuser`` has no e-mail alternate key: those columns are bound by GUID
when the owner map resolves the e-mail, and left out otherwise.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence

import polars as pl

from senseimig_dagster.load.owners import SYSTEMUSER, OwnerMap
from senseimig_dagster.mapping.targets import TargetCatalog
from senseimig_dagster.objects import UNKEYED_TABLES

SOURCE_ID, TABLE, OWNER_USER = "_source_id", "_table", "_owner_user_id"
CREATE_ONLY_COLUMNS = ("overriddencreatedon",)  # IsValidForUpdate False in Microsoft's metadata
STATE_COLUMNS = ("statecode", "statuscode")  # not valid for create on contact and appointment: sent last
_ID_NAMESPACE = uuid.UUID("6f1f6e1c-58a4-4c1e-9a57-5e6d3c1a0b42")  # senseimig's uuid5 namespace for primary ids


def unkeyed(table: str) -> bool:
    """A table without the source-id key: rows are upserted by a deterministic primary id (:func:`deterministic_id`)."""
    return table in UNKEYED_TABLES


def deterministic_id(table: str, source_id: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"{table}:{source_id}"))


def owner_navigation(table: str, catalog: TargetCatalog) -> str | None:
    """The table's owner lookup: ``ownerid`` (contact, account, custom tables), ``ownerid_<table>`` (activities)."""
    return next((nav for nav in ("ownerid", f"ownerid_{table}") if catalog.lookup(table, nav) is not None), None)


def resolve_users(frame: pl.DataFrame, tables: Sequence[str], catalog: TargetCatalog,
                  owners: OwnerMap | None = None) -> pl.DataFrame:
    """Lookups to users as system user GUIDs (or left out), and the owner lookup from ``_owner_user_id`` when
    ``owners`` is given; see the module docstring. ``field_diff`` should see this frame: it is what is sent."""
    user_columns = [c for c in frame.columns if not c.startswith("_") and any(
        (lk := catalog.lookup(t, c)) is not None and SYSTEMUSER in lk.targets for t in tables)]
    if owners is None:
        return frame.drop(user_columns)
    by_email, by_user = dict(owners.by_email), dict(owners.by_user_id)
    if OWNER_USER in frame.columns:  # the owner comes from the owner map (fallback included), not the e-mail match
        owner_navs = {owner_navigation(t, catalog) for t in tables}
        frame = frame.drop([c for c in user_columns if c in owner_navs])
        user_columns = [c for c in user_columns if c not in owner_navs]
    exprs = [pl.col(c).cast(pl.String).str.strip_chars().str.to_lowercase()
             .replace_strict(by_email, default=None, return_dtype=pl.String).alias(c) for c in user_columns]
    if OWNER_USER in frame.columns:
        owner = pl.col(OWNER_USER).cast(pl.String).replace_strict(by_user, default=None, return_dtype=pl.String)
        for table in tables:
            nav = owner_navigation(table, catalog)
            if nav is None or nav in frame.columns or any(e.meta.output_name() == nav for e in exprs):
                continue
            routed = TABLE in frame.columns and len(tables) > 1
            exprs.append((pl.when(pl.col(TABLE) == table).then(owner) if routed else owner).alias(nav))
    return frame.with_columns(exprs) if exprs else frame


def split_tables(frame: pl.DataFrame, tables: Sequence[str], catalog: TargetCatalog
                 ) -> Iterator[tuple[str, pl.DataFrame]]:
    """Per table, its rows (``_table`` for routed objects) with only the columns that table has; a column another
    table of the route owns is dropped when empty here, and left for the payload to refuse when not."""
    for table in tables:
        part = frame.filter(pl.col(TABLE) == table) if TABLE in frame.columns else frame
        if part.is_empty():
            continue
        foreign = [c for c in part.columns if not c.startswith("_") and catalog.column(table, c) is None
                   and catalog.lookup(table, c) is None and part.get_column(c).null_count() == part.height]
        yield table, part.drop(foreign)
        if TABLE not in frame.columns:
            return


def in_frame_lookups(part: pl.DataFrame, table: str, catalog: TargetCatalog) -> list[str]:
    """Lookups of ``table`` to ``table`` whose values name rows of ``part`` itself."""
    own = part.get_column(SOURCE_ID).cast(pl.String)
    return [c for c in part.columns if not c.startswith("_") and (lk := catalog.lookup(table, c)) is not None
            and lk.targets == (table,) and part.get_column(c).cast(pl.String).is_in(own).any()]
