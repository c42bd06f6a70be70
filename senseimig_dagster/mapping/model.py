"""The field map in memory: what :mod:`.mapfile` parses, :mod:`.validate` checks and staging applies.

Everything here is immutable and plain; ``line`` fields point back into the YAML file for error messages.
``content()`` methods return exactly what affects written data, in an order-free form (reordering a value map
changes nothing written); the hashes in :mod:`.digest` are taken over them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from senseimig_dagster.objects import LOCATION

Transform = Literal["direct", "picklist", "date", "datetime", "concat", "split", "lookup", "constant", "skip"]
Status = Literal["proposed", "accepted", "rejected"]
TRANSFORMS: tuple[str, ...] = ("direct", "picklist", "date", "datetime", "concat", "split", "lookup", "constant",
                               "skip")
STATUSES: tuple[str, ...] = ("proposed", "accepted", "rejected")
# date/datetime: the zone the source value is in (Dataverse gets UTC): the row's practice location's zone (the map says
# ``location``, the registry's location object), or UTC.
LOCAL_TIME = LOCATION.name
TIME_ZONES = (LOCAL_TIME, "utc")
# Placeholders in targets: a merged object's slot name (``{Slot}`` capitalised, for navigation properties such as
# ``smig_{Slot}CarrierId``) and a routed object's table.
SLOT, SLOT_CAPITALISED, TABLE = "{slot}", "{Slot}", "{table}"


def value_key(value: Any) -> str:
    """Picklist map keys as text: YAML ``true`` and the raw column's ``True`` both become ``"true"``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class FieldMap:
    """How one source field becomes Dataverse data.

    ``targets``: column logical names; for ``lookup`` the navigation property (case-sensitive, e.g.
    ``parentcustomerid_account``, ``smig_PatientId``); for ``split`` the parts in order; for the value transforms
    several targets mean "the same value into each".
    """

    name: str
    transform: Transform
    targets: tuple[str, ...] = ()
    status: Status = "accepted"
    confidence: float | None = None
    reasons: tuple[str, ...] = ()
    reason: str = ""  # why a field is skipped
    values: tuple[tuple[str, Any], ...] = ()  # picklist: source value -> option value (None: leave empty)
    time_zone: str | None = None  # date/datetime
    lookup: str | None = None  # lookup: the registry object whose row is bound (by its alternate key)
    sources: tuple[str, ...] = ()  # concat: the source fields joined, in order
    separator: str | None = None  # concat / split
    value: Any = None  # constant
    via: str | None = None  # read the value from this field of the row this (reference) field points at
    line: int = 0

    @property
    def written(self) -> bool:
        """Staging writes the field unless it is skipped or the reviewer rejected it."""
        return self.transform != "skip" and self.status != "rejected"

    def content(self) -> dict[str, Any]:
        if not self.written:
            return {"transform": "skip"}
        out: dict[str, Any] = {"transform": self.transform, "targets": list(self.targets)}
        optional = {"values": sorted([list(v) for v in self.values], key=str), "time_zone": self.time_zone, "lookup": self.lookup,
                    "sources": list(self.sources), "separator": self.separator, "value": self.value, "via": self.via}
        out.update({k: v for k, v in optional.items() if v not in (None, [])})
        return out


@dataclass(frozen=True)
class Merge:
    """An object without rows of its own: its values become columns of the row of ``into``.

    ``via``: this object's field that references ``into`` (``patient_id``) or ``<into>.<field>`` when ``into``
    references this object (``patient_policy.insurance_plan_id``). ``slot_by`` picks the column set per row
    (``coverage_order``: Primary -> ``{slot}`` = primary); rows with another value are not merged. ``latest_by``:
    when several rows land in one slot, the one with the greatest value wins.
    """

    into: str
    via: str
    slot_by: str | None = None
    slots: tuple[tuple[str, str], ...] = ()
    latest_by: str | None = None
    line: int = 0

    def content(self) -> dict[str, Any]:
        return {"into": self.into, "via": self.via, "slot_by": self.slot_by, "slots": sorted(list(s) for s in self.slots),
                "latest_by": self.latest_by}


@dataclass(frozen=True)
class Route:
    """Rows go to one of several tables by a field's value (communications: Call -> phonecall, Email -> email)."""

    by: str
    tables: tuple[tuple[str, str], ...]
    line: int = 0

    def content(self) -> dict[str, Any]:
        return {"by": self.by, "tables": sorted(list(t) for t in self.tables)}


@dataclass(frozen=True)
class ObjectMap:
    """One Sensei object: its target table and how each of its fields is written.

    ``mode``: ``upsert`` (rows written by alternate key), ``match`` (rows only looked up by ``match_on``, never
    written: Sensei users -> systemuser by e-mail) or ``skip`` (object not migrated, ``reason`` says why).
    """

    name: str
    table: str
    fields: dict[str, FieldMap]
    mode: Literal["upsert", "match", "skip"] = "upsert"
    match_on: str | None = None
    reason: str = ""
    constants: tuple[tuple[str, Any], ...] = ()
    merge: Merge | None = None
    route: Route | None = None
    line: int = 0
    constant_lines: dict[str, int] = field(default_factory=dict, compare=False)

    @property
    def tables(self) -> tuple[str, ...]:
        """Every table rows of this object are written to."""
        return tuple(dict.fromkeys(t for _, t in self.route.tables)) if self.route else (self.table,)

    def content(self) -> dict[str, Any]:
        """Object-level settings (not the fields) that affect written data."""
        return {"table": self.table, "mode": self.mode, "match_on": self.match_on,
                "constants": sorted([list(c) for c in self.constants], key=str),
                "merge": self.merge.content() if self.merge else None,
                "route": self.route.content() if self.route else None}


@dataclass(frozen=True)
class Confirmation:
    by: str
    at: str  # ISO 8601 UTC
    hash: str  # "sha256:<hex>" over the whole map's content
    digests: dict[str, str] = field(default_factory=dict)  # "object" / "object.field" -> short digest


@dataclass(frozen=True)
class FieldMapFile:
    version: int
    prefix: str
    objects: dict[str, ObjectMap]
    confirmation: Confirmation | None = None
    path: str = "<map>"
