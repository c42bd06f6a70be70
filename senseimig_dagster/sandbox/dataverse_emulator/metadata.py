"""Table metadata of the emulator: Microsoft's standard tables plus custom ones added through the metadata API.

Standard tables come from ``standard_tables.json`` (Microsoft's entity reference, copied unchanged) with the
appointment/phonecall navigation names from ``navigation_overlay``. Custom tables, columns, lookups and keys follow
L/webapi/create-update-entity-definitions-using-web-api and L/define-alternate-keys-entity (reference §7).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any, Literal

from senseimig_dagster.sandbox.dataverse_emulator import errors
from senseimig_dagster.sandbox.dataverse_emulator.errors import DataverseError

KeyStatus = Literal["Pending", "Active"]
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
class AlternateKey:
    schema_name: str
    attributes: tuple[str, ...]
    status: KeyStatus = "Pending"  # index built asynchronously: Pending -> Active (reference §7)


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


def plural(logical_name: str) -> str:
    """An English plural for a new table's EntitySetName (the server derives it; clients must read it back)."""
    if logical_name.endswith("y") and logical_name[-2:-1] not in set("aeiou"):
        return logical_name[:-1] + "ies"
    if logical_name.endswith(("s", "x", "z", "ch", "sh")):
        return logical_name + "es"
    return logical_name + "s"


def _invalid(message: str) -> DataverseError:
    # §7 gives no code for prefix/duplicate-name failures: INVALID_ARGUMENT is unverified.
    return DataverseError(400, errors.INVALID_ARGUMENT, message)


class Catalog:
    """All tables by logical name and by entity set; custom additions enforce the publisher prefix."""

    def __init__(self, tables: dict[str, Table], *, prefix: str = "smig_") -> None:
        self.prefix = prefix.lower()
        self._tables = dict(tables)

    @classmethod
    def load(cls, *, prefix: str = "smig_") -> Catalog:
        from senseimig_dagster.sandbox.dataverse_emulator.standard_tables import table_from_json

        text = resources.files(__package__).joinpath("standard_tables.json").read_text("utf-8")
        return cls(
            {name: table_from_json(name, raw) for name, raw in json.loads(text).items()}, prefix=prefix
        )

    @property
    def tables(self) -> dict[str, Table]:
        return dict(self._tables)

    def table(self, logical_name: str) -> Table:
        try:
            return self._tables[logical_name]
        except KeyError:
            raise DataverseError(
                404, "0x80040217", f"Could not find entity with logical name '{logical_name}'."
            ) from None

    def table_by_entity_set(self, entity_set: str) -> Table | None:
        return next((t for t in self._tables.values() if t.entity_set == entity_set), None)

    # -- customization (reference §7) --------------------------------------------------------------
    def _check_name(self, schema_name: str, what: str) -> str:
        # "The SchemaName must start with the publisher's customization prefix plus _" (§7 Publishers and prefixes).
        if not schema_name.lower().startswith(self.prefix) or len(schema_name) <= len(self.prefix):
            raise _invalid(
                f"The {what} SchemaName '{schema_name}' must start with the prefix '{self.prefix}'."
            )
        if not schema_name.replace("_", "").isalnum() or not schema_name.isascii():
            raise _invalid(f"The {what} SchemaName '{schema_name}' contains invalid characters.")
        return schema_name.lower()  # LogicalName is the lower-cased SchemaName

    def _put(self, table: Table) -> Table:
        self._tables[table.logical_name] = table
        return table

    def add_custom_table(
        self,
        schema_name: str,
        *,
        primary_name_schema: str,
        primary_name_max_length: int = 100,
        ownership: str = "UserOwned",
        entity_set: str | None = None,
    ) -> Table:
        logical = self._check_name(schema_name, "table")
        primary = self._check_name(primary_name_schema, "column")
        if logical in self._tables:
            raise _invalid(f"An entity with the name '{schema_name}' already exists.")
        entity_set = entity_set or plural(logical)
        if self.table_by_entity_set(entity_set):
            raise _invalid(f"An entity with the EntitySetName '{entity_set}' already exists.")
        cols = [
            Column(
                f"{logical}id",
                f"{schema_name}Id",
                "Uniqueidentifier",
                required="SystemRequired",
                valid_for_update=False,
            ),
            Column(primary, primary_name_schema, "String", max_length=primary_name_max_length),
            Column("createdon", "CreatedOn", "DateTime", valid_for_create=False, valid_for_update=False),
            Column("modifiedon", "ModifiedOn", "DateTime", valid_for_create=False, valid_for_update=False),
            Column(
                "createdby",
                "CreatedBy",
                "Lookup",
                valid_for_create=False,
                valid_for_update=False,
                targets=("systemuser",),
            ),
            Column(
                "modifiedby",
                "ModifiedBy",
                "Lookup",
                valid_for_create=False,
                valid_for_update=False,
                targets=("systemuser",),
            ),
            Column("overriddencreatedon", "OverriddenCreatedOn", "DateTime", valid_for_update=False),
            Column(
                "versionnumber", "VersionNumber", "BigInt", valid_for_create=False, valid_for_update=False
            ),
            Column("statecode", "statecode", "State", options=(0, 1)),
            Column("statuscode", "statuscode", "Status", options=(1, 2)),
        ]
        lookups = {}
        if ownership == "UserOwned":
            cols.append(Column("ownerid", "OwnerId", "Owner", targets=("systemuser", "team")))
            lookups["ownerid"] = Lookup("ownerid", "ownerid", ("systemuser", "team"))
        table = Table(
            logical,
            schema_name,
            entity_set,
            f"{logical}id",
            primary,
            ownership,
            {c.logical_name: c for c in cols},
            lookups,
            is_custom=True,
        )
        return self._put(table)

    def add_column(self, table: str, schema_name: str, type: str, **attrs: Any) -> Column:
        """Add a column (``max_length``, ``options``, ``required``, ``datetime_behavior``, ``min``, ``max``)."""
        current = self.table(table)
        logical = self._check_name(schema_name, "attribute")
        if logical in current.columns:
            raise _invalid(f"An attribute with the name '{schema_name}' already exists on entity '{table}'.")
        if type in LOOKUP_TYPES:
            raise _invalid("Attribute of type LookupAttributeMetadata cannot be created through the SDK.")
        attrs["options"] = tuple(attrs.get("options") or ())
        column = Column(logical, schema_name, type, **attrs)
        self._put(replace(current, columns={**current.columns, logical: column}))
        return column

    def add_lookup(
        self, table: str, schema_name: str, target: str, *, navigation_property: str | None = None
    ) -> Lookup:
        """A 1:N relationship: the navigation property is the lookup's SchemaName, case kept (reference §3)."""
        current = self.table(table)
        self.table(target)
        logical = self._check_name(schema_name, "attribute")
        nav = navigation_property or schema_name
        if logical in current.columns or nav in current.lookups:
            raise _invalid(f"An attribute with the name '{schema_name}' already exists on entity '{table}'.")
        column = Column(logical, schema_name, "Lookup", targets=(target,))
        lookup = Lookup(nav, logical, (target,))
        self._put(
            replace(
                current,
                columns={**current.columns, logical: column},
                lookups={**current.lookups, nav: lookup},
            )
        )
        return lookup

    def add_alternate_key(self, table: str, schema_name: str, attributes: list[str]) -> AlternateKey:
        current = self.table(table)
        self._check_name(schema_name, "key")
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
            if column is None or column.type not in KEY_COLUMN_TYPES:
                raise _invalid(f"Attribute '{name}' of entity '{table}' cannot be part of an entity key.")
        key = AlternateKey(schema_name, tuple(attributes))
        self._put(replace(current, keys=(*current.keys, key)))
        return key

    def set_key_status(self, table: str, schema_name: str, status: KeyStatus) -> AlternateKey:
        """Move a key's index along Pending -> Active (the server decides when)."""
        current = self.table(table)
        for i, key in enumerate(current.keys):
            if key.schema_name == schema_name:
                new = replace(key, status=status)
                self._put(replace(current, keys=(*current.keys[:i], new, *current.keys[i + 1 :])))
                return new
        raise DataverseError(
            404, errors.INVALID_ARGUMENT, f"Entity key '{schema_name}' not found on '{table}'."
        )
