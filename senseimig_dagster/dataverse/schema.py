"""The shape of a Dataverse schema: tables, columns, lookups and alternate keys as :mod:`.schema_setup` creates
them. Plain data; which tables and columns a migration needs is decided above this package
(``mapping/schema_plan.py``).

Names: a SchemaName is ``<prefix>_`` + the name in CamelCase (``smig_StartAt``); the LogicalName is its lower case
(``smig_startat``). A lookup's SchemaName is also its navigation property, case-sensitive in ``@odata.bind``, so
loaders must take it from the plan, never re-derive it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ColumnKind = Literal["String", "Memo", "Integer", "Decimal", "Boolean", "DateOnly", "DateTime", "Picklist"]
# Custom tables an environment may hold: Dynamics 365 Sales Professional allows 15.
TIER_CUSTOM_TABLE_LIMITS: dict[str, int | None] = {"professional": 15, "enterprise": None}


@dataclass(frozen=True)
class ColumnSpec:
    schema_name: str
    kind: ColumnKind
    display_name: str
    max_length: int | None = None
    options: tuple[tuple[int, str], ...] = ()  # Picklist: (value, label)
    secured: bool = False  # column security (field security: smig_ssnlastfour)

    @property
    def logical_name(self) -> str:
        return self.schema_name.lower()


@dataclass(frozen=True)
class LookupSpec:
    schema_name: str  # also the navigation property name
    target: str  # referenced table's logical name
    display_name: str

    @property
    def logical_name(self) -> str:
        return self.schema_name.lower()

    def relationship_name(self, table: str) -> str:
        """``smig_account_contact_primarycarrierid``: relationship SchemaNames carry the publisher prefix too."""
        prefix, _, column = self.logical_name.partition("_")
        short = [name.removeprefix(f"{prefix}_") for name in (self.target, table)]
        return f"{prefix}_{short[0]}_{short[1]}_{column}"


@dataclass(frozen=True)
class KeySpec:
    schema_name: str
    columns: tuple[str, ...]  # logical names


@dataclass(frozen=True)
class TableSpec:
    logical_name: str
    display_name: str
    custom: bool
    columns: tuple[ColumnSpec, ...] = ()
    lookups: tuple[LookupSpec, ...] = ()
    keys: tuple[KeySpec, ...] = ()
    primary_name: ColumnSpec | None = None  # custom tables only
    sources: tuple[str, ...] = ()  # registry objects written here

    @property
    def schema_name(self) -> str:
        prefix, _, rest = self.logical_name.partition("_")
        return f"{prefix}_{camel_case(rest)}" if self.custom else self.logical_name


@dataclass(frozen=True)
class SchemaPlan:
    prefix: str
    option_value_prefix: int
    tables: tuple[TableSpec, ...]
    publisher: str = "senseimig"
    solution: str = "senseimig"
    extras: dict[str, str] = field(default_factory=dict)

    @property
    def custom_tables(self) -> tuple[TableSpec, ...]:
        return tuple(t for t in self.tables if t.custom)

    def table(self, logical_name: str) -> TableSpec:
        for t in self.tables:
            if t.logical_name == logical_name:
                return t
        raise KeyError(f"the schema plan has no table {logical_name!r}")

    @property
    def secured_columns(self) -> tuple[tuple[str, ColumnSpec], ...]:
        return tuple((t.logical_name, c) for t in self.tables for c in t.columns if c.secured)


def camel_case(snake: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in snake.split("_") if part)
