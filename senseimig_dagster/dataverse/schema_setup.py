"""Bring a Dataverse environment's schema up to a :class:`~.schema.SchemaPlan` idempotently.

Order: the tier check (before any write), publisher, solution, custom tables, columns, lookups, alternate keys
(waiting for each index to be Active), column security. Each step reads what exists first, so a second run creates
nothing and a half-made schema is completed, not duplicated. Every step yields a :class:`SchemaChange`
("created", "exists", "updated", "conflict") for the audit trail and for rollback.

Metadata writes go through :class:`~.metadata.DataverseMetadata` with ``MSCRM.SolutionUniqueName`` so everything
lands in the migration's solution.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from senseimig_dagster.dataverse import metadata as md
from senseimig_dagster.dataverse.schema import TIER_CUSTOM_TABLE_LIMITS, ColumnSpec, SchemaPlan, TableSpec

if TYPE_CHECKING:
    from senseimig_dagster.dataverse.metadata import DataverseMetadata

Outcome = Literal["created", "exists", "updated", "conflict"]
ChangeKind = Literal["publisher", "solution", "table", "column", "lookup", "key", "column_security",
                     "field_security_profile", "field_permission"]
PROFILE_NAME = "senseimig PHI readers"
ALLOWED = 4  # fieldpermission: 0 = Not Allowed, 4 = Allowed (FieldPermission table)
# AttributeType names as Dataverse reports them, per planned kind.
_ATTRIBUTE_TYPE = {"String": "String", "Memo": "Memo", "Integer": "Integer", "Decimal": "Decimal",
                   "Boolean": "Boolean", "DateOnly": "DateTime", "DateTime": "DateTime", "Picklist": "Picklist"}


@dataclass(frozen=True)
class SchemaChange:
    kind: ChangeKind
    table: str | None
    name: str
    outcome: Outcome
    detail: str = ""
    at: str = ""


class SchemaRefused(Exception):
    """The plan can't be applied; nothing was written."""


class SchemaConflict(Exception):
    """Existing schema contradicts the plan (e.g. a column of another type); the listed items need a person."""


def attribute_body(column: ColumnSpec) -> dict[str, Any]:
    """The attribute definition to POST for ``column`` (the metadata API's attribute types)."""
    name, display, kind = column.schema_name, column.display_name, column.kind
    if kind == "String":
        return md.string_attribute(name, column.max_length or 100, display)
    if kind == "Memo":
        return md.memo_attribute(name, column.max_length or 2000, display)
    if kind in ("DateOnly", "DateTime"):
        # Source times are UTC instants and dates are calendar dates: neither may shift with a user's time zone.
        return md.datetime_attribute(name, display, date_only=kind == "DateOnly",
                                     behavior="DateOnly" if kind == "DateOnly" else "TimeZoneIndependent")
    if kind == "Integer":
        return md.integer_attribute(name, display)
    if kind == "Decimal":
        return md.decimal_attribute(name, display, precision=2)
    if kind == "Boolean":
        return md.boolean_attribute(name, display)
    return md.picklist_attribute(name, display, dict(column.options))


class SchemaSetup:
    """Applies ``plan`` through ``meta``; ``on_change`` sees every change as it happens (write it down at once, so
    a run that dies half-way still leaves a complete record of what it created)."""

    def __init__(self, meta: DataverseMetadata, plan: SchemaPlan, *, tier: str = "professional",
                 on_change: Callable[[SchemaChange], None] | None = None, key_timeout_s: float = 900,
                 column_timeout_s: float = 60, clock: Callable[[], dt.datetime] | None = None) -> None:
        if tier not in TIER_CUSTOM_TABLE_LIMITS:
            raise ValueError(f"dataverse_tier must be one of {', '.join(TIER_CUSTOM_TABLE_LIMITS)}")
        self.meta, self.plan, self.tier = meta, plan, tier
        self.on_change = on_change or (lambda change: None)
        self.key_timeout_s, self.column_timeout_s = key_timeout_s, column_timeout_s
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.changes: list[SchemaChange] = []

    def _note(self, kind: ChangeKind, table: str | None, name: str, outcome: Outcome, detail: str = "") -> None:
        change = SchemaChange(kind, table, name, outcome, detail, self._clock().isoformat(timespec="seconds"))
        self.changes.append(change)
        self.on_change(change)

    # -- the whole run --------------------------------------------------------------------------------------
    def run(self) -> list[SchemaChange]:
        self.check_tier()
        publisher_id = self._ensure_publisher()
        self._ensure_solution(publisher_id)
        entity_sets = {t.logical_name: self._ensure_table(t) for t in self.plan.tables}
        new_columns: list[tuple[str, str]] = []
        for table in self.plan.tables:
            new_columns += self._ensure_columns(table, entity_sets[table.logical_name])
        for entity_set, column in new_columns:  # new columns become usable after a propagation delay
            self.meta.wait_for_column(entity_set, column, self.column_timeout_s)
        keys = [(table.logical_name, key) for table in self.plan.tables for key in self._ensure_keys(table)]
        for table_name, key in keys:  # created together, so their index builds overlap; then wait for each
            # Upsert by key fails until the index is Active: wait here, not in the loaders.
            self.meta.wait_for_key(table_name, key, self.key_timeout_s)
        self._ensure_column_security()
        conflicts = [c for c in self.changes if c.outcome == "conflict"]
        if conflicts:
            raise SchemaConflict("existing schema contradicts the plan: " + "; ".join(
                f"{c.table}.{c.name} ({c.detail})" for c in conflicts))
        return self.changes

    def check_tier(self) -> None:
        """Refuse, before any write, a plan that would take the environment over its tier's custom-table limit."""
        limit = TIER_CUSTOM_TABLE_LIMITS[self.tier]
        if limit is None:
            return
        existing = set(self.meta.custom_tables())
        planned = [t.logical_name for t in self.plan.custom_tables]
        total = existing | set(planned)
        if len(total) > limit:
            new = [t for t in planned if t not in existing]
            raise SchemaRefused(
                f"the plan needs {len(planned)} custom tables ({', '.join(planned)}); with the "
                f"{len(existing - set(planned))} other custom tables already in the environment that makes "
                f"{len(total)}, over the {self.tier} tier's limit of {limit}. Nothing was created; "
                f"{len(new)} table(s) would have been new: {', '.join(new) or 'none'}.")

    # -- steps ----------------------------------------------------------------------------------------------
    def _ensure_publisher(self) -> str:
        plan = self.plan
        found = self.meta.find_record("publishers", f"uniquename eq '{plan.publisher}'",
                                      ["publisherid", "customizationprefix"])
        if found is not None:
            if found.get("customizationprefix") != plan.prefix:
                raise SchemaRefused(f"publisher {plan.publisher} exists with prefix "
                                    f"{found.get('customizationprefix')!r}, not {plan.prefix!r}")
            self._note("publisher", None, plan.publisher, "exists")
            return str(found["publisherid"])
        publisher_id = self.meta.client.create("publishers", {
            "uniquename": plan.publisher, "friendlyname": "senseimig",
            "customizationprefix": plan.prefix, "customizationoptionvalueprefix": plan.option_value_prefix})
        self._note("publisher", None, plan.publisher, "created", publisher_id)
        return publisher_id

    def _ensure_solution(self, publisher_id: str) -> None:
        plan = self.plan
        found = self.meta.find_record("solutions", f"uniquename eq '{plan.solution}'", ["solutionid"])
        if found is not None:
            self._note("solution", None, plan.solution, "exists")
            return
        solution_id = self.meta.client.create("solutions", {
            "uniquename": plan.solution, "friendlyname": "senseimig migration", "version": "1.0.0.0",
            "publisherid@odata.bind": f"/publishers({publisher_id})"})
        self._note("solution", None, plan.solution, "created", solution_id)

    def _ensure_table(self, table: TableSpec) -> str:
        found = self.meta.find_table(table.logical_name)
        if found is None:
            if not table.custom:
                raise SchemaRefused(f"standard table {table.logical_name} is missing from the environment")
            assert table.primary_name is not None
            self.meta.create_table(table.schema_name, table.display_name, table.primary_name.schema_name,
                                   table.primary_name.max_length or 200, "UserOwned", self.plan.solution)
            found = self.meta.find_table(table.logical_name)
            if found is None:
                raise SchemaRefused(f"table {table.logical_name} was created but can't be read back")
            self._note("table", table.logical_name, table.schema_name, "created")
        elif table.custom:
            self._note("table", table.logical_name, table.schema_name, "exists")
        return str(found["EntitySetName"])

    def _ensure_columns(self, table: TableSpec, entity_set: str) -> list[tuple[str, str]]:
        """Create missing columns and lookups; returns (entity set, column) of the new ones."""
        existing = {name.lower(): attr for name, attr in self.meta.columns(table.logical_name).items()}
        new: list[tuple[str, str]] = []
        for column in table.columns:
            attr = existing.get(column.logical_name)
            if attr is None:
                self.meta.create_column(table.logical_name, attribute_body(column), self.plan.solution)
                self._note("column", table.logical_name, column.schema_name, "created", column.kind)
                new.append((entity_set, column.logical_name))
            elif attr.get("AttributeType") != _ATTRIBUTE_TYPE[column.kind]:
                self._note("column", table.logical_name, column.schema_name, "conflict",
                           f"is {attr.get('AttributeType')}, plan says {_ATTRIBUTE_TYPE[column.kind]}")
            else:
                self._note("column", table.logical_name, column.schema_name, "exists")
        for lookup in table.lookups:
            attr = existing.get(lookup.logical_name)
            if attr is None:
                self.meta.create_lookup(table.logical_name, lookup.target, lookup.schema_name,
                                        lookup.relationship_name(table.logical_name), self.plan.solution)
                self._note("lookup", table.logical_name, lookup.schema_name, "created", f"-> {lookup.target}")
                new.append((entity_set, f"_{lookup.logical_name}_value"))
            elif attr.get("AttributeType") != "Lookup":
                self._note("lookup", table.logical_name, lookup.schema_name, "conflict",
                           f"is {attr.get('AttributeType')}, plan says Lookup")
            else:
                self._note("lookup", table.logical_name, lookup.schema_name, "exists")
        return new

    def _ensure_keys(self, table: TableSpec) -> list[str]:
        """Create missing keys; returns the SchemaNames of the plan's keys to wait for."""
        existing = {str(k.get("SchemaName", "")).lower(): k for k in self.meta.keys(table.logical_name)}
        wait_for = []
        for key in table.keys:
            found = existing.get(key.schema_name.lower())
            if found is None:
                self.meta.create_key(table.logical_name, key.schema_name, list(key.columns), self.plan.solution)
                self._note("key", table.logical_name, key.schema_name, "created", ",".join(key.columns))
            elif sorted(found.get("KeyAttributes") or ()) != sorted(key.columns):
                self._note("key", table.logical_name, key.schema_name, "conflict",
                           f"covers {','.join(found.get('KeyAttributes') or ())}")
                continue
            else:
                self._note("key", table.logical_name, key.schema_name, "exists")
            wait_for.append(key.schema_name)
        return wait_for

    def _ensure_column_security(self) -> None:
        secured = self.plan.secured_columns
        if not secured:
            return
        profile = self.meta.find_record("fieldsecurityprofiles", f"name eq '{PROFILE_NAME}'",
                                        ["fieldsecurityprofileid"])
        if profile is None:
            profile_id = self.meta.client.create("fieldsecurityprofiles", {
                "name": PROFILE_NAME, "description": "May read and write the SSN last four of migrated patients."})
            self._note("field_security_profile", None, PROFILE_NAME, "created", profile_id)
        else:
            profile_id = str(profile["fieldsecurityprofileid"])
            self._note("field_security_profile", None, PROFILE_NAME, "exists")
        for table, column in secured:
            attr = self.meta.columns(table).get(column.logical_name) or {}
            if attr.get("IsSecured"):
                self._note("column_security", table, column.schema_name, "exists")
            else:
                self.meta.secure_column(table, column.logical_name)
                self._note("column_security", table, column.schema_name, "updated", "IsSecured=true")
            permission = self.meta.find_record(
                "fieldpermissions", f"entityname eq '{table}' and attributelogicalname eq '{column.logical_name}' "
                f"and _fieldsecurityprofileid_value eq {profile_id}", ["fieldpermissionid"])
            if permission is None:
                permission_id = self.meta.client.create("fieldpermissions", {
                    "entityname": table, "attributelogicalname": column.logical_name,
                    "cancreate": ALLOWED, "canread": ALLOWED, "canupdate": ALLOWED,
                    "fieldsecurityprofileid@odata.bind": f"/fieldsecurityprofiles({profile_id})"})
                self._note("field_permission", table, column.schema_name, "created", permission_id)
            else:
                self._note("field_permission", table, column.schema_name, "exists")


def changes_markdown(changes: list[SchemaChange]) -> str:
    """Per table: the table's own outcome and its columns, lookups and keys created or existing; then every
    change that was a write, and any conflict."""
    if not changes:
        return "No schema changes."
    tables: dict[str, dict[str, list[str]]] = {}
    for c in changes:
        if c.table is not None:
            cell = tables.setdefault(c.table, {})
            cell.setdefault(f"{c.kind}:{c.outcome}", []).append(c.name)

    def n(cell: dict[str, list[str]], kind: str, outcome: str) -> int:
        return len(cell.get(f"{kind}:{outcome}", []))

    lines = ["| table | table | columns created | columns existing | lookups created | lookups existing "
             "| keys created | keys existing |", "|---|---|---|---|---|---|---|---|"]
    for table, cell in tables.items():
        own = "created" if n(cell, "table", "created") else ("exists" if n(cell, "table", "exists") else "standard")
        lines.append(f"| {table} | {own} | {n(cell, 'column', 'created')} | {n(cell, 'column', 'exists')} "
                     f"| {n(cell, 'lookup', 'created')} | {n(cell, 'lookup', 'exists')} "
                     f"| {n(cell, 'key', 'created')} | {n(cell, 'key', 'exists')} |")
    changed = [c for c in changes if c.outcome != "exists"]
    if not changed:
        lines += ["", "Nothing to do: the environment already has the whole schema."]
    else:
        lines += ["", "| kind | table | name | outcome | detail |", "|---|---|---|---|---|"]
        lines += [f"| {c.kind} | {c.table or ''} | {c.name} | {c.outcome} | {c.detail} |" for c in changed]
    return "\n".join(lines)
