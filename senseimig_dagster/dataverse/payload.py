"""Staged rows -> Dataverse Web API bodies.

A staged frame (``staging/shape.py``) names value columns by their Dataverse logical names and lookup columns by
their navigation property, holding the parent's Sensei source id; bookkeeping columns start with ``_``. Here each
row becomes a JSON body: values in Dataverse's wire formats (reference §13: DateTime as ISO 8601 UTC with ``Z``,
DateOnly as ``YYYY-MM-DD``) and lookups as ``<navigation property>@odata.bind`` to the parent addressed by its
alternate key, so a child never needs its parent's GUID (reference §3). ``ownerid`` is bound to a system user or
team by GUID (owner resolution gives GUIDs).
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator, Mapping
from typing import Any

import polars as pl

from senseimig_dagster.dataverse.client import key_segment
from senseimig_dagster.mapping.targets import TargetCatalog

SOURCE_KEY = "smig_sourcesystemid"
OWNER_NAVIGATION = "ownerid"


class PayloadError(ValueError):
    """A staged column this table can't take (names the column, never a value)."""


def _wire(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:  # staging hands over UTC; a naive value is UTC by contract
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)  # Decimal(12,2) columns: a double carries 2 decimals exactly in its shortest repr
    return value


class PayloadBuilder:
    """Bodies for one table; ``entity_sets`` maps every table a lookup may point at to its entity set (custom
    tables' sets come from metadata: never assume a plural)."""

    def __init__(self, table: str, columns: list[str], catalog: TargetCatalog, entity_sets: Mapping[str, str],
                 key_column: str = SOURCE_KEY) -> None:
        self.table, self.key_column = table, key_column
        self._values: list[str] = []
        self._binds: list[tuple[str, str]] = []  # (navigation property, target entity set)
        for name in columns:
            if name.startswith("_"):
                continue
            lookup = catalog.lookup(table, name)
            if lookup is not None:
                if len(lookup.targets) != 1 and name != OWNER_NAVIGATION:
                    raise PayloadError(f"{table}.{name} may point at {', '.join(lookup.targets)}: use the suffixed "
                                       "navigation property of one target (reference §3)")
                target = "systemuser" if name == OWNER_NAVIGATION else lookup.targets[0]
                if target not in entity_sets:
                    raise PayloadError(f"{table}.{name}: no entity set known for {target}")
                self._binds.append((name, entity_sets[target]))
            elif catalog.column(table, name) is not None:
                self._values.append(name)
            else:
                raise PayloadError(f"{table} has no column or navigation property {name!r}")

    def body(self, row: Mapping[str, Any], *, send_nulls: bool = False) -> dict[str, Any]:
        """One row's body. Nulls are left out unless ``send_nulls`` (an update that must clear a value)."""
        out: dict[str, Any] = {}
        for name in self._values:
            value = row.get(name)
            if value is not None or send_nulls:
                out[name] = _wire(value)
        for nav, entity_set in self._binds:
            parent = row.get(nav)
            if parent is None:
                if send_nulls and nav != OWNER_NAVIGATION:
                    out[f"{nav}@odata.bind"] = None  # a PATCH clears a lookup with a null bind [memory]
                continue
            if nav == OWNER_NAVIGATION:
                out[f"{nav}@odata.bind"] = f"/{entity_set}({parent})"  # owner: a systemuser GUID
            else:
                out[f"{nav}@odata.bind"] = f"/{entity_set}{key_segment({self.key_column: str(parent)})}"
        return out

    def bodies(self, frame: pl.DataFrame, *, send_nulls: bool = False, batch_rows: int = 10_000) -> Iterator[dict]:
        """Bodies in row order, converting ``batch_rows`` rows at a time so memory stays bounded."""
        for start in range(0, frame.height, batch_rows):
            for row in frame.slice(start, batch_rows).iter_rows(named=True):
                yield self.body(row, send_nulls=send_nulls)
