"""Build ``Table`` objects from ``standard_tables.json``.

That file is Microsoft's published metadata (extracted from the entity reference at
MicrosoftDocs/powerapps-docs) copied unchanged; the appointment/phonecall navigation property names it lacks are
added here from ``navigation_overlay`` rather than by patching the copy.
"""

from __future__ import annotations

from typing import Any

from senseimig_dagster.sandbox.dataverse_emulator.metadata import Column, Lookup, OneToMany, Table
from senseimig_dagster.sandbox.dataverse_emulator.navigation_overlay import navigation_property

# Validity overrides where the JSON's new-format pages only say "writable" (docs win):
# overriddencreatedon is IsValidForUpdate=False on every table (L/reference/entities/contact, annotation, appointment);
# statecode is IsValidForCreate=False on contact (L/reference/entities/contact).
_CREATE_ONLY = {"overriddencreatedon"}
_NOT_ON_CREATE = {("contact", "statecode")}


def _column(table: str, name: str, raw: dict[str, Any]) -> Column:
    writable = bool(raw.get("writable"))
    create = raw.get("valid_for_create")
    update = raw.get("valid_for_update")
    create = writable if create is None else bool(create)
    update = writable if update is None else bool(update)
    if name in _CREATE_ONLY:
        update = False
    if (table, name) in _NOT_ON_CREATE:
        create = False
    listed = (raw.get("states") if raw["type"] == "State" else raw.get("options")) or ()
    options = tuple(o["value"] for o in listed)
    labels = tuple(o.get("label") or str(o["value"]) for o in listed)
    return Column(
        logical_name=name,
        schema_name=raw["schema_name"],
        type=raw["type"],
        max_length=raw.get("max_length"),
        required=raw.get("required") or "None",
        valid_for_create=create,
        valid_for_update=update,
        options=options,
        targets=tuple(raw.get("targets") or ()),
        datetime_behavior=raw.get("datetime_behavior"),
        min=raw.get("min"),
        max=raw.get("max"),
        precision=raw.get("precision"),
        option_labels=labels,
    )


def table_from_json(name: str, raw: dict[str, Any]) -> Table:
    columns = {c: _column(name, c, col) for c, col in raw["columns"].items()}
    targets: dict[str, tuple[str, list[str]]] = {}
    for row in raw.get("lookups") or ():
        nav = row.get("navigation_property") or navigation_property(
            name, row["attribute"], row["referenced_entity"]
        )
        if nav is None:
            continue
        attribute, seen = targets.setdefault(nav, (row["attribute"], []))
        column = columns.get(attribute)
        # "owner" is the abstract principal: the column's own targets (systemuser, team) are the real ones.
        refs = (
            list(column.targets)
            if row["referenced_entity"] == "owner" and column
            else [row["referenced_entity"]]
        )
        seen.extend(r for r in refs if r not in seen)
    lookups = {nav: Lookup(nav, attr, tuple(t)) for nav, (attr, t) in targets.items()}
    return Table(
        logical_name=name,
        schema_name=raw["schema_name"],
        entity_set=raw["entity_set"],
        primary_id=raw["primary_id"],
        primary_name=raw.get("primary_name"),
        ownership=raw.get("ownership"),
        columns=columns,
        lookups=lookups,
    )


def collections_from_json(raw_tables: dict[str, Any]) -> dict[str, dict[str, OneToMany]]:
    """The collection-valued navigation properties each referenced table gets from the other tables' lookups.

    Dataverse names the referenced side of a standard 1:N relationship after the relationship's SchemaName
    (``contact_customer_accounts``, ``Account_Tasks``); only the reference pages that list relationship names
    (the "new" format) give them, and only targets the emulator has are kept."""
    out: dict[str, dict[str, OneToMany]] = {}
    for name, raw in raw_tables.items():
        for row in raw.get("lookups") or ():
            referenced, relationship, nav = row["referenced_entity"], row.get("relationship"), row.get("navigation_property")
            if referenced in raw_tables and relationship and nav:
                out.setdefault(referenced, {})[relationship] = OneToMany(relationship, name, row["attribute"], nav)
    return out
