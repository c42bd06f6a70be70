"""What a map may write to: the schema plan's columns and lookups plus the standard tables' own (client copy).

Kinds are Dataverse attribute types, with DateTime columns of DateOnly behaviour as ``DateOnly``.
"""

from __future__ import annotations

from dataclasses import dataclass

from senseimig_dagster.dataverse.schema import SchemaPlan
from senseimig_dagster.dataverse.standard_tables import standard_tables
from senseimig_dagster.mapping.schema_plan import default_plan

# Every user-owned custom table has these system columns too (not in the plan, which lists what setup creates).
# The owner's navigation property on a custom table is "ownerid", as on contact and account [memory: not verified
# in Microsoft's docs for custom tables; activities use ownerid_<table>].
_CUSTOM_SYSTEM_COLUMNS = {"overriddencreatedon": "DateTime"}
_CUSTOM_SYSTEM_LOOKUPS = {"ownerid": ("ownerid", ("systemuser", "team"))}


@dataclass(frozen=True)
class TargetColumn:
    table: str
    name: str
    kind: str
    options: tuple[int, ...] = ()


@dataclass(frozen=True)
class TargetLookup:
    table: str
    navigation_property: str
    attribute: str  # the column it sets (two navigation properties of a Customer lookup share one)
    targets: tuple[str, ...]


class TargetCatalog:
    def __init__(self, plan: SchemaPlan | None = None):
        self.plan = plan or default_plan()
        self._columns: dict[tuple[str, str], TargetColumn] = {}
        self._lookups: dict[tuple[str, str], TargetLookup] = {}
        for table, raw in standard_tables().items():
            for name, col in raw["columns"].items():
                self._columns[table, name] = TargetColumn(table, name, col["kind"], tuple(col.get("options", ())))
            for nav, lk in raw["lookups"].items():
                self._lookups[table, nav] = TargetLookup(table, nav, lk["attribute"], tuple(lk["targets"]))
        for t in self.plan.tables:
            columns = [*t.columns, *([t.primary_name] if t.primary_name else [])]
            for c in columns:
                self._columns[t.logical_name, c.logical_name] = TargetColumn(
                    t.logical_name, c.logical_name, c.kind, tuple(v for v, _ in c.options))
            for lk in t.lookups:
                self._lookups[t.logical_name, lk.schema_name] = TargetLookup(
                    t.logical_name, lk.schema_name, lk.logical_name, (lk.target,))
            if t.custom:
                for name, kind in _CUSTOM_SYSTEM_COLUMNS.items():
                    self._columns[t.logical_name, name] = TargetColumn(t.logical_name, name, kind)
                for nav, (attr, targets) in _CUSTOM_SYSTEM_LOOKUPS.items():
                    self._lookups[t.logical_name, nav] = TargetLookup(t.logical_name, nav, attr, targets)
        self.tables = frozenset(t for t, _ in self._columns)

    def column(self, table: str, name: str) -> TargetColumn | None:
        return self._columns.get((table, name))

    def lookup(self, table: str, navigation_property: str) -> TargetLookup | None:
        return self._lookups.get((table, navigation_property))

    def lookup_case_insensitive(self, table: str, name: str) -> TargetLookup | None:
        """For the fix hint when a navigation property is written in the wrong case."""
        return next((lk for (t, nav), lk in self._lookups.items() if t == table and nav.lower() == name.lower()),
                    None)
