"""Staged rows -> Dataverse Web API bodies.

A staged frame (``staging/shape.py``) names value columns by their Dataverse logical names and lookup columns by
their navigation property, holding the parent's Sensei source id; bookkeeping columns start with ``_``. Here each
row becomes a JSON body: values in Dataverse's wire formats (DateTime as ISO 8601 UTC with ``Z``,
DateOnly as ``YYYY-MM-DD``) and lookups as ``<navigation property>@odata.bind`` to the parent addressed by its
alternate key, so a child never needs its parent's GUID (Microsoft's 'Associate table rows on create'). The owner (``ownerid``, or
``ownerid_<table>`` on activities) and other lookups to ``systemuser`` are bound by GUID (owner resolution gives
GUIDs; system users have no source-id key); an owner value may also be a whole reference, ``/teams(<id>)`` or
``/systemusers(<id>)``, so a team can own records [memory].
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


# Activity parties (Microsoft's 'ActivityParty table' page: phone calls take Sender 1 and To 2, e-mails 1-4): the
# patient is the regarding contact, the staff member the system user in PARTY_USER (set by the load: the Sensei
# user's matched system user, never the fallback owner). Outbound: staff -> patient; inbound: patient -> staff.
SENDER, TO = 1, 2
PARTY_USER = "_party_user"
ACTIVITY_PARTIES = {"phonecall": "regardingobjectid_contact_phonecall", "email": "regardingobjectid_contact_email"}
# A contact may be a phone call's Sender, not an e-mail's: Microsoft's published metadata gives email.from the targets
# queue and systemuser only (phonecall.from: account, contact, systemuser). An inbound e-mail keeps the patient as its
# regarding record and the staff member as To, with no Sender party.
CONTACT_MAY_SEND = frozenset({"phonecall"})


def parties_key(table: str) -> str:
    """The activity's collection-valued navigation property to its parties (``<table>_activity_parties``)."""
    return f"{table}_activity_parties"


# Every custom table has statecode/statuscode (Active 0/1, Inactive 1/2: L/create-update-entity-definitions), which
# the target catalog does not list (it lists what the schema setup creates).
STATE_COLUMNS = ("statecode", "statuscode")


def _is_custom(catalog: TargetCatalog, table: str) -> bool:
    return any(t.logical_name == table and t.custom for t in catalog.plan.tables)


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
                 key_column: str = SOURCE_KEY, *, parties: bool = False) -> None:
        self.table, self.key_column = table, key_column
        # With ``parties`` an activity's body carries its parties under parties_key(table) (None when it has none).
        self._patient = ACTIVITY_PARTIES.get(table) if parties and ACTIVITY_PARTIES.get(table) in columns else None
        self._party_sets = (entity_sets.get("contact", "contacts"), entity_sets.get("systemuser", "systemusers"))
        self._values: list[str] = []
        self._binds: list[tuple[str, str, bool]] = []  # (navigation property, target entity set, owner)
        for name in columns:
            if name.startswith("_"):
                continue
            lookup = catalog.lookup(table, name)
            if lookup is not None:
                owner = lookup.attribute == OWNER_NAVIGATION  # ownerid, or ownerid_<table> on activities
                if len(lookup.targets) != 1 and not owner:
                    raise PayloadError(f"{table}.{name} may point at {', '.join(lookup.targets)}: use the suffixed "
                                       "navigation property of one target")
                target = "systemuser" if owner else lookup.targets[0]
                if target not in entity_sets:
                    raise PayloadError(f"{table}.{name}: no entity set known for {target}")
                self._binds.append((name, entity_sets[target], owner))
            elif catalog.column(table, name) is not None or (name in STATE_COLUMNS and _is_custom(catalog, table)):
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
        for nav, entity_set, owner in self._binds:
            parent = row.get(nav)
            if parent is None:
                if send_nulls and not owner:
                    out[f"{nav}@odata.bind"] = None  # a PATCH clears a lookup with a null bind [memory]
                continue
            if owner and str(parent).startswith("/"):  # an owner reference: /systemusers(<id>) or /teams(<id>)
                out[f"{nav}@odata.bind"] = str(parent)
            elif owner or entity_set == "systemusers":  # systemuser has no source-id key: owners resolve to GUIDs
                out[f"{nav}@odata.bind"] = f"/{entity_set}({parent})"
            else:
                out[f"{nav}@odata.bind"] = f"/{entity_set}{key_segment({self.key_column: str(parent)})}"
        if self._patient is not None:
            out[parties_key(self.table)] = self._parties(row)
        return out

    def _parties(self, row: Mapping[str, Any]) -> list[dict[str, Any]] | None:
        """Sender and To by ``directioncode`` (missing: outgoing, Dataverse's default), in mask order."""
        patient, user = row.get(self._patient), row.get(PARTY_USER)
        if patient is None and user is None:
            return None
        staff, customer = (SENDER, TO) if row.get("directioncode") is not False else (TO, SENDER)
        contacts, users = self._party_sets
        out = []
        if patient is not None and (customer != SENDER or self.table in CONTACT_MAY_SEND):
            out.append({"partyid_contact@odata.bind": f"/{contacts}{key_segment({self.key_column: str(patient)})}",
                        "participationtypemask": customer})
        if user is not None:
            out.append({"partyid_systemuser@odata.bind": f"/{users}({user})", "participationtypemask": staff})
        return sorted(out, key=lambda p: p["participationtypemask"])

    def bodies(self, frame: pl.DataFrame, *, send_nulls: bool = False, batch_rows: int = 10_000) -> Iterator[dict]:
        """Bodies in row order, converting ``batch_rows`` rows at a time so memory stays bounded."""
        for start in range(0, frame.height, batch_rows):
            for row in frame.slice(start, batch_rows).iter_rows(named=True):
                yield self.body(row, send_nulls=send_nulls)

    def body_key(self, column: str) -> str:
        """The body key a staged column is sent under: the column itself, or ``<nav>@odata.bind``."""
        return f"{column}@odata.bind" if any(nav == column for nav, _, _ in self._binds) else column

    def restore_lookups(self, catalog: TargetCatalog) -> dict[str, tuple[str, str]]:
        """Per bind key: (the ``_<attribute>_value`` column it reads back as, the target entity set), as
        ``audit.log.before_image`` takes it (an owner is read back as a system user's id [memory])."""
        out = {}
        for nav, entity_set, _ in self._binds:
            lookup = catalog.lookup(self.table, nav)
            if lookup is not None:
                out[f"{nav}@odata.bind"] = (f"_{lookup.attribute}_value", entity_set)
        return out
