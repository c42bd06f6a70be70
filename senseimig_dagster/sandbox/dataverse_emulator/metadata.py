"""Table metadata of the emulator: Microsoft's standard tables plus custom ones added through the metadata API.

Standard tables come from ``standard_tables.json`` (Microsoft's entity reference, copied unchanged) with the
appointment/phonecall navigation names from ``navigation_overlay``. Custom tables, columns, lookups and keys follow
L/webapi/create-update-entity-definitions-using-web-api and L/define-alternate-keys-entity.

Timing: a column carries ``visible_after`` (wall-clock seconds) and is hidden from data calls
(:meth:`Catalog.table`, :meth:`Catalog.table_by_entity_set`) until then; a key carries the times its index goes
``InProgress`` and ``Active``. The metadata API (``metadata_api``) sets both from :attr:`Catalog.column_delay` and
:attr:`Catalog.key_delay`; the Python methods default to "visible now" and "Pending until :meth:`set_key_status`".
:meth:`Catalog.definition` is the metadata view (every column). Every customization is passed to
:attr:`Catalog.journal` as a JSON-able change, which :meth:`Catalog.apply` replays (persistence across restarts).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any, Literal

from senseimig_dagster.sandbox.dataverse_emulator import errors
from senseimig_dagster.sandbox.dataverse_emulator.errors import DataverseError

# EntityKeyIndexStatus (L/webapi/reference/entitykeyindexstatus: Pending 0, InProgress 1, Active 2, Failed 3).
KeyStatus = Literal["Pending", "InProgress", "Active", "Failed"]
_METADATA_NS = uuid.UUID("0b1e6c52-7f0e-4f55-9a3c-2f6d8e1c4b77")  # stable MetadataIds across restarts
LOOKUP_TYPES = frozenset({"Lookup", "Customer", "Owner", "PartyList"})
# Allowed key column types, at most 16 columns and 10 keys per table (L/define-alternate-keys-entity).
KEY_COLUMN_TYPES = frozenset({"String", "Integer", "Decimal", "DateTime", "Lookup", "Picklist"})
MAX_KEY_COLUMNS, MAX_KEYS = 16, 10


@dataclass(frozen=True)
class Column:
    logical_name: str
    schema_name: str
    type: str
    max_length: int | None = None
    required: str = "None"
    valid_for_create: bool = True
    valid_for_update: bool = True
    options: tuple[int, ...] = ()
    targets: tuple[str, ...] = ()
    datetime_behavior: str | None = None
    min: float | None = None
    max: float | None = None
    is_secured: bool = False  # column security (IsSecured), set by PUT of the attribute definition
    visible_after: float = 0.0  # time.time() from which data calls may use it (metadata propagation lag)
    display_name: str | None = None
    format: str | None = None  # String FormatName / DateTime Format / Memo Format as created
    option_labels: tuple[str, ...] = ()  # labels of ``options``, same order (custom picklists)
    is_custom: bool = False
    max_size_kb: int | None = None  # File columns: FileAttributeMetadata.MaxSizeInKB
    precision: int | None = None  # Double/Decimal/Money: decimal places a value is stored with

    @property
    def writable(self) -> bool:
        return self.valid_for_create or self.valid_for_update


@dataclass(frozen=True)
class Lookup:
    """A single-valued navigation property: ``<navigation_property>@odata.bind`` sets ``attribute``."""

    navigation_property: str
    attribute: str
    targets: tuple[str, ...]


@dataclass(frozen=True)
class OneToMany:
    """A collection-valued navigation property (the relationship's SchemaName, as Dataverse names it): the records
    of ``referencing`` whose ``attribute`` points here, set through their ``lookup`` navigation property."""

    navigation_property: str
    referencing: str
    attribute: str
    lookup: str


@dataclass(frozen=True)
class AlternateKey:
    schema_name: str
    attributes: tuple[str, ...]
    status: KeyStatus = "Pending"  # index built asynchronously: Pending -> InProgress -> Active [doc]
    in_progress_at: float | None = None  # time.time() of the timed steps; None: only set_key_status moves it
    active_at: float | None = None

    @property
    def timed(self) -> bool:
        """Still waiting for a timed step."""
        return self.active_at is not None and self.status in ("Pending", "InProgress")

    def at(self, now: float) -> AlternateKey:
        if not self.timed:
            return self
        if now >= self.active_at:  # type: ignore[operator]
            return replace(self, status="Active")
        if self.in_progress_at is not None and now >= self.in_progress_at and self.status == "Pending":
            return replace(self, status="InProgress")
        return self


@dataclass(frozen=True)
class Table:
    logical_name: str
    schema_name: str
    entity_set: str
    primary_id: str
    primary_name: str | None
    ownership: str | None
    columns: dict[str, Column]
    lookups: dict[str, Lookup] = field(default_factory=dict)  # by navigation property (case-sensitive)
    keys: tuple[AlternateKey, ...] = ()
    is_custom: bool = False
    display_name: str | None = None
    object_type_code: int | None = None
    collections: dict[str, OneToMany] = field(default_factory=dict)  # by navigation property (case-sensitive)


@dataclass(frozen=True)
class Relationship:
    """A 1:N relationship created through the metadata API (its lookup lives on ``referencing``)."""

    schema_name: str
    referenced: str
    referencing: str
    attribute: str
    navigation_property: str


def metadata_id(*parts: str) -> str:
    """A stable MetadataId for a table, column, key or relationship (same after a restart)."""
    return str(uuid.uuid5(_METADATA_NS, "/".join(parts)))


def plural(logical_name: str) -> str:
    """An English plural for a new table's EntitySetName (the server derives it; clients must read it back)."""
    if logical_name.endswith("y") and logical_name[-2:-1] not in set("aeiou"):
        return logical_name[:-1] + "ies"
    if logical_name.endswith(("s", "x", "z", "ch", "sh")):
        return logical_name + "es"
    return logical_name + "s"


def _invalid(message: str) -> DataverseError:
    # Microsoft gives no code for prefix/duplicate-name failures: INVALID_ARGUMENT is unverified.
    return DataverseError(400, errors.INVALID_ARGUMENT, message)


class Catalog:
    """All tables by logical name and by entity set; custom additions enforce the publisher prefix.

    ``column_delay``/``key_delay`` (seconds) are what the metadata API gives a new column before data calls see it
    and a new key before its index is Active (0 = at once). ``journal`` receives every customization as a dict.
    """

    def __init__(self, tables: dict[str, Table], *, prefix: str = "smig_", column_delay: float = 1.0,
                 key_delay: float = 2.0) -> None:
        self.prefix = prefix.lower()
        self.column_delay, self.key_delay = column_delay, key_delay
        self.journal: Callable[[dict[str, Any]], None] | None = None
        self._tables = dict(tables)
        self._relationships: dict[str, Relationship] = {}  # by lower-cased SchemaName
        self._timed: set[str] = set()  # tables with a hidden column or a timed key
        self._lock = threading.RLock()

    @classmethod
    def load(cls, *, prefix: str = "smig_", column_delay: float = 1.0, key_delay: float = 2.0) -> Catalog:
        from senseimig_dagster.sandbox.dataverse_emulator.standard_tables import (
            collections_from_json,
            table_from_json,
        )

        raw_tables = json.loads(resources.files(__package__).joinpath("standard_tables.json").read_text("utf-8"))
        tables = {name: table_from_json(name, raw) for name, raw in raw_tables.items()}
        for name, navs in collections_from_json(raw_tables).items():
            tables[name] = replace(tables[name], collections=navs)
        return cls(tables, prefix=prefix, column_delay=column_delay, key_delay=key_delay)

    @property
    def tables(self) -> dict[str, Table]:
        return dict(self._tables)

    @property
    def relationships(self) -> dict[str, Relationship]:
        return dict(self._relationships)

    def table(self, logical_name: str) -> Table:
        """The table as data calls see it: columns still propagating are left out, keys at their current status."""
        try:
            table = self._tables[logical_name]
        except KeyError:
            raise DataverseError(
                404, "0x80040217", f"Could not find entity with logical name '{logical_name}'."
            ) from None
        return self._as_of_now(table) if logical_name in self._timed else table

    def collection(self, table: Table, name: str) -> OneToMany | None:
        """``table``'s collection-valued navigation property ``name``: a standard one, or the referenced side of a
        1:N relationship created through the metadata API (named, as Dataverse defaults it, by its SchemaName)."""
        if name in table.collections:
            return table.collections[name]
        found = self._relationships.get(name.lower())
        if found is None or found.schema_name != name or found.referenced != table.logical_name:
            return None
        return OneToMany(name, found.referencing, found.attribute, found.navigation_property)

    def table_by_entity_set(self, entity_set: str) -> Table | None:
        table = next((t for t in self._tables.values() if t.entity_set == entity_set), None)
        return None if table is None else self.table(table.logical_name)

    def definition(self, logical_name: str) -> Table:
        """The table as the metadata API sees it: every column, keys at their current status."""
        self.table(logical_name)  # 404 when absent; advances timed keys
        return self._tables[logical_name]

    def _as_of_now(self, table: Table) -> Table:
        now = time.time()
        with self._lock:
            table = self._tables[table.logical_name]
            keys = tuple(k.at(now) for k in table.keys)
            if keys != table.keys:
                table = self._put(replace(table, keys=keys))
            hidden = {name for name, c in table.columns.items() if c.visible_after > now}
            if not hidden and not any(k.timed for k in keys):
                self._timed.discard(table.logical_name)
        if not hidden:
            return table
        return replace(
            table,
            columns={n: c for n, c in table.columns.items() if n not in hidden},
            lookups={nav: lk for nav, lk in table.lookups.items() if lk.attribute not in hidden},
        )

    # -- customization ------------------------------------------------------------------------------
    def _check_name(self, schema_name: str, what: str, prefix: str | None = None) -> str:
        # Documented: the SchemaName must start with the publisher's customization prefix plus "_".
        prefix = (prefix or self.prefix).lower()
        if not schema_name.lower().startswith(prefix) or len(schema_name) <= len(prefix):
            raise _invalid(f"The {what} SchemaName '{schema_name}' must start with the prefix '{prefix}'.")
        if not schema_name.replace("_", "").isalnum() or not schema_name.isascii():
            raise _invalid(f"The {what} SchemaName '{schema_name}' contains invalid characters.")
        return schema_name.lower()  # LogicalName is the lower-cased SchemaName

    def _put(self, table: Table) -> Table:
        self._tables[table.logical_name] = table
        if any(c.visible_after > time.time() for c in table.columns.values()) or any(k.timed for k in table.keys):
            self._timed.add(table.logical_name)
        return table

    def _record(self, op: str, **args: Any) -> None:
        if self.journal is not None:
            self.journal({"op": op, **args})

    def apply(self, change: dict[str, Any]) -> None:
        """Replay one journaled change (without journaling it again)."""
        args = dict(change)
        op = args.pop("op")
        journal, self.journal = self.journal, None
        try:
            if op == "add_custom_table":
                self.add_custom_table(args.pop("schema_name"), **args)
            elif op == "add_column":
                self.add_column(args.pop("table"), args.pop("schema_name"), args.pop("type"), **args)
            elif op == "add_lookup":
                self.add_lookup(args.pop("table"), args.pop("schema_name"), args.pop("target"), **args)
            elif op == "add_alternate_key":
                self.add_alternate_key(args.pop("table"), args.pop("schema_name"), args.pop("attributes"), **args)
            elif op == "set_key_status":
                self.set_key_status(args["table"], args["schema_name"], args["status"])
            elif op == "update_column":
                self.update_column(args.pop("table"), args.pop("column"), **args)
            else:
                raise ValueError(f"unknown schema change {op!r}")
        finally:
            self.journal = journal

    def add_custom_table(
        self,
        schema_name: str,
        *,
        primary_name_schema: str,
        primary_name_max_length: int = 100,
        ownership: str = "UserOwned",
        entity_set: str | None = None,
        prefix: str | None = None,
        display_name: str | None = None,
        primary_name_display: str | None = None,
        primary_name_required: str = "None",
        object_type_code: int | None = None,
    ) -> Table:
        with self._lock:
            logical = self._check_name(schema_name, "table", prefix)
            primary = self._check_name(primary_name_schema, "column", prefix)
            if logical in self._tables:
                raise _invalid(f"An entity with the name '{schema_name}' already exists.")
            entity_set = entity_set or plural(logical)
            if any(t.entity_set == entity_set for t in self._tables.values()):
                raise _invalid(f"An entity with the EntitySetName '{entity_set}' already exists.")
            codes = [t.object_type_code or 0 for t in self._tables.values() if t.is_custom]
            object_type_code = object_type_code or max([9999, *codes]) + 1  # custom codes start at 10000
            table = self._put(_custom_table(
                schema_name, logical, primary_name_schema, primary, primary_name_max_length, ownership, entity_set,
                display_name, primary_name_display, primary_name_required, object_type_code))
            self._record("add_custom_table", schema_name=schema_name, primary_name_schema=primary_name_schema,
                         primary_name_max_length=primary_name_max_length, ownership=ownership,
                         entity_set=entity_set, prefix=prefix, display_name=display_name,
                         primary_name_display=primary_name_display, primary_name_required=primary_name_required,
                         object_type_code=object_type_code)
            return table

    def add_column(self, table: str, schema_name: str, type: str, *, prefix: str | None = None,
                   **attrs: Any) -> Column:
        """Add a column (``max_length``, ``options``, ``required``, ``datetime_behavior``, ``min``, ``max``,
        ``visible_after``, ``display_name``, ``format``, ``option_labels``)."""
        with self._lock:
            current = self.definition(table)
            logical = self._check_name(schema_name, "attribute", prefix)
            if logical in current.columns:
                raise _invalid(f"An attribute with the name '{schema_name}' already exists on entity '{table}'.")
            if type in LOOKUP_TYPES:
                raise _invalid("Attribute of type LookupAttributeMetadata cannot be created through the SDK.")
            attrs["options"] = tuple(attrs.get("options") or ())
            attrs["option_labels"] = tuple(attrs.get("option_labels") or ())
            column = Column(logical, schema_name, type, is_custom=True, **attrs)
            self._put(replace(current, columns={**current.columns, logical: column}))
            self._record("add_column", table=table, schema_name=schema_name, type=type, prefix=prefix,
                         **{k: list(v) if isinstance(v, tuple) else v for k, v in attrs.items()})
            return column

    def add_lookup(
        self, table: str, schema_name: str, target: str, *, navigation_property: str | None = None,
        relationship: str | None = None, prefix: str | None = None, visible_after: float = 0.0,
        required: str = "None", display_name: str | None = None, customer: bool = False,
    ) -> Lookup:
        """A 1:N relationship: the navigation property is the lookup's SchemaName, case kept [memory]. ``customer``:
        one relationship of a Customer column (CreateCustomerRelationships), which each relationship adds a target."""
        with self._lock:
            current = self.definition(table)
            self.table(target)
            logical = self._check_name(schema_name, "attribute", prefix)
            nav = navigation_property or schema_name
            existing = current.columns.get(logical)
            extends = customer and existing is not None and existing.type == "Customer" and target not in existing.targets
            if (logical in current.columns and not extends) or nav in current.lookups:
                raise _invalid(f"An attribute with the name '{schema_name}' already exists on entity '{table}'.")
            if relationship is not None:
                self._check_name(relationship, "relationship", prefix)
                if relationship.lower() in self._relationships:
                    raise _invalid(f"A relationship with the name '{relationship}' already exists.")
            column = Column(logical, schema_name, "Customer" if customer else "Lookup",
                            targets=(*(existing.targets if extends else ()), target), visible_after=visible_after,
                            required=required, display_name=display_name, is_custom=True)
            lookup = Lookup(nav, logical, (target,))
            self._put(replace(current, columns={**current.columns, logical: column},
                              lookups={**current.lookups, nav: lookup}))
            if relationship is not None:
                self._relationships[relationship.lower()] = Relationship(relationship, target, table, logical, nav)
            self._record("add_lookup", table=table, schema_name=schema_name, target=target,
                         navigation_property=navigation_property, relationship=relationship, prefix=prefix,
                         visible_after=visible_after, required=required, display_name=display_name,
                         customer=customer)
            return lookup

    def update_column(self, table: str, column: str, **changes: Any) -> Column:
        """Change ``is_secured``, ``required`` or ``display_name`` of a column (PUT of its definition)."""
        with self._lock:
            current = self.definition(table)
            if column not in current.columns:
                raise _attribute_not_found(table, column)
            updated = replace(current.columns[column], **changes)
            self._put(replace(current, columns={**current.columns, column: updated}))
            self._record("update_column", table=table, column=column, **changes)
            return updated

    def add_alternate_key(self, table: str, schema_name: str, attributes: list[str], *,
                          prefix: str | None = None, in_progress_at: float | None = None,
                          active_at: float | None = None) -> AlternateKey:
        """A key, Pending until :meth:`set_key_status` or, when given, the times its index goes InProgress and
        Active."""
        with self._lock:
            current = self.definition(table)
            self._check_name(schema_name, "key", prefix)
            if any(k.schema_name.lower() == schema_name.lower() for k in current.keys):
                raise DataverseError(
                    400, errors.KEY_NAME_EXISTS, f"An entity key with the name '{schema_name}' already exists."
                )
            if any(set(k.attributes) == set(attributes) for k in current.keys):
                raise DataverseError(
                    400, errors.KEY_ATTRIBUTES_EXIST, "An entity key with the selected attributes already exists."
                )
            if len(current.keys) >= MAX_KEYS or not attributes or len(attributes) > MAX_KEY_COLUMNS:
                raise _invalid(
                    f"An entity can have at most {MAX_KEYS} keys of 1 to {MAX_KEY_COLUMNS} attributes."
                )
            for name in attributes:
                column = current.columns.get(name)
                # L/define-alternate-keys-entity: allowed types only, and no column-secured columns.
                if column is None or column.type not in KEY_COLUMN_TYPES or column.is_secured:
                    raise _invalid(f"Attribute '{name}' of entity '{table}' cannot be part of an entity key.")
            key = AlternateKey(schema_name, tuple(attributes), in_progress_at=in_progress_at, active_at=active_at)
            self._put(replace(current, keys=(*current.keys, key)))
            self._record("add_alternate_key", table=table, schema_name=schema_name, attributes=list(attributes),
                         prefix=prefix, in_progress_at=in_progress_at, active_at=active_at)
            return key.at(time.time())

    def set_key_status(self, table: str, schema_name: str, status: KeyStatus) -> AlternateKey:
        """Move a key's index along Pending -> InProgress -> Active (or Failed) by hand."""
        with self._lock:
            current = self.definition(table)
            for i, key in enumerate(current.keys):
                if key.schema_name == schema_name:
                    new = replace(key, status=status, in_progress_at=None, active_at=None)
                    self._put(replace(current, keys=(*current.keys[:i], new, *current.keys[i + 1 :])))
                    self._record("set_key_status", table=table, schema_name=schema_name, status=status)
                    return new
        raise DataverseError(
            404, errors.INVALID_ARGUMENT, f"Entity key '{schema_name}' not found on '{table}'."
        )


def _attribute_not_found(table: str, column: str) -> DataverseError:
    # Code and text unverified (a metadata 404).
    return DataverseError(404, "0x80040217", f"Could not find attribute '{column}' on entity '{table}'.")


def _custom_table(schema_name: str, logical: str, primary_schema: str, primary: str, primary_max: int,
                  ownership: str, entity_set: str, display_name: str | None, primary_display: str | None,
                  primary_required: str, object_type_code: int) -> Table:
    cols = [
        Column(f"{logical}id", f"{schema_name}Id", "Uniqueidentifier", required="SystemRequired",
               valid_for_update=False),
        Column(primary, primary_schema, "String", max_length=primary_max, required=primary_required,
               display_name=primary_display, format="Text", is_custom=True),
        Column("createdon", "CreatedOn", "DateTime", valid_for_create=False, valid_for_update=False),
        Column("modifiedon", "ModifiedOn", "DateTime", valid_for_create=False, valid_for_update=False),
        Column("createdby", "CreatedBy", "Lookup", valid_for_create=False, valid_for_update=False,
               targets=("systemuser",)),
        Column("modifiedby", "ModifiedBy", "Lookup", valid_for_create=False, valid_for_update=False,
               targets=("systemuser",)),
        Column("overriddencreatedon", "OverriddenCreatedOn", "DateTime", valid_for_update=False),
        Column("versionnumber", "VersionNumber", "BigInt", valid_for_create=False, valid_for_update=False),
        Column("statecode", "statecode", "State", options=(0, 1)),
        Column("statuscode", "statuscode", "Status", options=(1, 2)),
    ]
    lookups = {}
    if ownership == "UserOwned":
        cols.append(Column("ownerid", "OwnerId", "Owner", targets=("systemuser", "team")))
        lookups["ownerid"] = Lookup("ownerid", "ownerid", ("systemuser", "team"))
    return Table(logical, schema_name, entity_set, f"{logical}id", primary, ownership,
                 {c.logical_name: c for c in cols}, lookups, is_custom=True, display_name=display_name,
                 object_type_code=object_type_code)
