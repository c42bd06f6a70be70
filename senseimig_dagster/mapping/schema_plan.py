"""The Dataverse schema the migration needs, derived from the object registry: what ``dataverse/schema`` creates
and what a field map may write to.

Every target table gets ``<prefix>_sourcesystemid`` (the alternate key used for upsert and lookups) plus the source's
creation and modification times. Objects whose target is a custom table get one column per Sensei field and one
lookup per reference; the standard tables get the extension columns the registry declares. A field map may add
columns on top; this plan is what the default map writes to.
"""

from __future__ import annotations

from collections.abc import Iterable

from senseimig_dagster.dataverse.schema import (
    ColumnKind,
    ColumnSpec,
    KeySpec,
    LookupSpec,
    SchemaPlan,
    TableSpec,
    camel_case,
)
from senseimig_dagster.objects import (
    MODIFIED_AT,
    OBJECTS,
    PRIMARY_KEY,
    REGISTRY,
    UNKEYED_TABLES,
    ExtraColumn,
    FieldType,
    SenseiObject,
)

DEFAULT_PREFIX = "smig"
DEFAULT_OPTION_VALUE_PREFIX = 72700  # publisher's option-value prefix: choice values start at 727000000

# Standard tables whose records the migration writes or matches, so custom lookups may point at them. Merged objects
# (policies, plans, referrals) have no row of their own; documents are annotations, which a custom lookup can't target.
_LOOKUP_TARGETS_STANDARD = frozenset({"account", "contact", "systemuser"})
_AUDIT_FIELDS = frozenset({PRIMARY_KEY, "created_at", MODIFIED_AT, "is_deleted"})

# Why Decimal, not Money, for amounts: Money columns bind each row to a transaction currency and an exchange rate,
# which the ledger reconciliation would then have to undo; a Decimal with precision 2 holds the source's cents as is.
_DECIMAL_RANGE = 100_000_000_000.0  # Dataverse Decimal limit, ±10^11 (L/types-of-fields)
_KIND_OF_TYPE: dict[FieldType, ColumnKind] = {
    "uuid": "String", "str": "String", "text": "Memo", "int": "Integer", "decimal": "Decimal", "bool": "Boolean",
    "date": "DateOnly", "datetime": "DateTime", "json": "Memo",
}
_MAX_LENGTH: dict[ColumnKind, int] = {"String": 200, "Memo": 100_000}
_JSON_MAX_LENGTH = 4000


def _label(snake: str) -> str:
    return " ".join(part.capitalize() for part in snake.split("_") if part)


class _Names:
    """Builds names under one publisher prefix."""

    def __init__(self, prefix: str, option_value_prefix: int):
        self.prefix, self.option_base = prefix, option_value_prefix * 10_000

    def column(self, name: str, kind: ColumnKind, *, display: str | None = None, max_length: int | None = None,
               options: Iterable[str] = (), secured: bool = False) -> ColumnSpec:
        if kind in _MAX_LENGTH and max_length is None:
            max_length = _MAX_LENGTH[kind]
        return ColumnSpec(f"{self.prefix}_{camel_case(name)}", kind, display or _label(name), max_length,
                          tuple((self.option_base + i, label) for i, label in enumerate(options)), secured)

    def lookup(self, name: str, target: str) -> LookupSpec:
        return LookupSpec(f"{self.prefix}_{camel_case(name)}", target, _label(name))

    def source_columns(self) -> tuple[ColumnSpec, ...]:
        return (self.column("source_system_id", "String", display="Source System Id", max_length=100),
                self.column("source_created_on", "DateTime"), self.column("source_modified_on", "DateTime"))

    def source_key(self) -> KeySpec:
        return KeySpec(f"{self.prefix}_sourcesystemid_key", (f"{self.prefix}_sourcesystemid",))


def _lookup_target(ref: str, tables_of: dict[str, str], custom: set[str]) -> str | None:
    if OBJECTS[ref].target.merged:
        return None
    target = tables_of[ref]
    return target if target in _LOOKUP_TARGETS_STANDARD or target in custom else None


def _field_columns(names: _Names, obj: SenseiObject, tables_of: dict[str, str],
                   custom: set[str]) -> tuple[list[ColumnSpec], list[LookupSpec]]:
    columns: list[ColumnSpec] = []
    lookups: list[LookupSpec] = []
    for f in obj.fields:
        if f.name in _AUDIT_FIELDS:
            continue
        target = _lookup_target(f.references, tables_of, custom) if f.references else None
        if target is not None:
            lookups.append(names.lookup(f.name, target))
            continue
        kind = _KIND_OF_TYPE[f.type]
        max_length = _JSON_MAX_LENGTH if f.type == "json" else (100 if f.type == "uuid" else None)
        columns.append(names.column(f.name, kind, max_length=max_length))
    return columns, lookups


def _merge(first: Iterable, second: Iterable) -> tuple:
    """Union by logical name, first wins (two objects writing one table share columns such as patient_id)."""
    seen: dict[str, object] = {}
    for item in [*first, *second]:
        seen.setdefault(item.logical_name, item)
    return tuple(seen.values())


def _extra(n: _Names, column: ExtraColumn) -> ColumnSpec | LookupSpec:
    if column.lookup is not None:
        return n.lookup(column.name, column.lookup)
    return n.column(column.name, column.kind, display=column.display, max_length=column.max_length,  # type: ignore[arg-type]
                    options=column.options, secured=column.secured)


def default_plan(prefix: str = DEFAULT_PREFIX, option_value_prefix: int = DEFAULT_OPTION_VALUE_PREFIX,
                 objects: Iterable[SenseiObject] = REGISTRY) -> SchemaPlan:
    """The schema for ``objects`` under the publisher ``prefix`` (the registry's target names use ``smig``)."""
    objects = tuple(objects)
    n = _Names(prefix, option_value_prefix)

    def rename(table: str) -> str:  # the registry names custom tables with the default prefix
        return f"{prefix}_{table.split('_', 1)[1]}" if table.startswith(f"{DEFAULT_PREFIX}_") else table

    tables_of = {o.name: rename(o.target.table) for o in objects}
    custom = {t for t in tables_of.values() if t.startswith(f"{prefix}_")}
    by_table: dict[str, list[SenseiObject]] = {}
    extensions: dict[str, list[ColumnSpec | LookupSpec]] = {}
    for o in objects:
        if tables_of[o.name] == "systemuser":  # users are matched, never written: nothing to add
            continue
        # Extension columns by the table they land on (a merged object's: its own target, the patient's contact).
        for column in o.target.columns:
            extensions.setdefault(tables_of[o.name], []).append(_extra(n, column))
        if not o.target.merged:
            by_table.setdefault(tables_of[o.name], []).append(o)
    for o in objects:
        for other in o.target.also:  # routed rows (communications by channel) land in these tables too
            if tables_of[o.name] in by_table:
                by_table.setdefault(other, list(by_table[tables_of[o.name]]))
    tables: list[TableSpec] = []
    for logical, sources in by_table.items():
        columns: tuple = n.source_columns()
        lookups: tuple = ()
        if logical in custom:
            for o in sources:
                cols, looks = _field_columns(n, o, tables_of, custom)
                columns, lookups = _merge(columns, cols), _merge(lookups, looks)
        extra = extensions.get(logical, ())
        columns = _merge(columns, [c for c in extra if isinstance(c, ColumnSpec)])
        lookups = _merge(lookups, [c for c in extra if isinstance(c, LookupSpec)])
        is_custom = logical in custom
        # A table the registry declares without the source-id key (annotation: not listed as key-enabled): its rows
        # are found by querying smig_sourcesystemid instead.
        keys = () if logical in UNKEYED_TABLES else (n.source_key(),)
        display = _label(logical.split("_", 1)[1]) if is_custom else logical
        primary = n.column("name", "String", max_length=200) if is_custom else None
        if primary is not None:  # a source field called "name" lands in the primary name column
            columns = tuple(c for c in columns if c.logical_name != primary.logical_name)
        tables.append(TableSpec(logical, display, is_custom, columns, lookups, keys, primary,
                                tuple(o.name for o in sources)))
    # Parents first, so a lookup's target exists before the lookup is created.
    tables.sort(key=lambda t: (t.custom, _depth(t, {x.logical_name: x for x in tables})))
    return SchemaPlan(prefix, option_value_prefix, tuple(tables))


def _depth(table: TableSpec, tables: dict[str, TableSpec], seen: frozenset[str] = frozenset()) -> int:
    parents = [lk.target for lk in table.lookups if lk.target in tables and lk.target != table.logical_name
               and lk.target not in seen]
    return 1 + max((_depth(tables[p], tables, seen | {table.logical_name}) for p in parents), default=0)
