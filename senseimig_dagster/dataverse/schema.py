"""The Dataverse schema the migration needs (DESIGN §4), derived from the object registry.

Every target table gets ``<prefix>_sourcesystemid`` (the alternate key used for upsert and lookups) plus the source's
creation and modification times. Objects whose target is a custom table get one column per Sensei field and one
lookup per reference; the standard tables get the extension columns DESIGN §4 lists. Field mapping (issue 4) may
add columns on top; this plan is what the default map writes to.

Names: a SchemaName is ``<prefix>_`` + the field in CamelCase (``smig_StartAt``); the LogicalName is its lower case
(``smig_startat``). A lookup's SchemaName is also its navigation property, case-sensitive in ``@odata.bind``
(reference §3), so loaders must take it from here, never re-derive it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from senseimig_dagster.objects import MODIFIED_AT, PRIMARY_KEY, REGISTRY, FieldType, SenseiObject

ColumnKind = Literal["String", "Memo", "Integer", "Decimal", "Boolean", "DateOnly", "DateTime", "Picklist"]

DEFAULT_PREFIX = "smig"
DEFAULT_OPTION_VALUE_PREFIX = 72700  # publisher's option-value prefix: choice values start at 727000000 (ref §7)
TIER_CUSTOM_TABLE_LIMITS: dict[str, int | None] = {"professional": 15, "enterprise": None}  # reference §12

# Tables whose records the migration writes (so lookups may point at them). Objects merged into the patient contact
# (policies, plans, referrals) have no row of their own; documents are annotations, which a custom lookup can't target.
_LOOKUP_TARGETS_STANDARD = frozenset({"account", "contact", "systemuser"})
_MERGED_INTO_CONTACT = frozenset({"insurance_plan", "patient_policy", "patient_referral"})
_ALSO_WRITTEN = {"phonecall": ("email",)}  # communications become phonecall or email activities by channel
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


@dataclass(frozen=True)
class ColumnSpec:
    schema_name: str
    kind: ColumnKind
    display_name: str
    max_length: int | None = None
    options: tuple[tuple[int, str], ...] = ()  # Picklist: (value, label)
    secured: bool = False  # column security (DESIGN §4: smig_ssnlastfour)

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
        return f"{prefix}_{_camel(rest)}" if self.custom else self.logical_name


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


def _camel(snake: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in snake.split("_") if part)


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
        return ColumnSpec(f"{self.prefix}_{_camel(name)}", kind, display or _label(name), max_length,
                          tuple((self.option_base + i, label) for i, label in enumerate(options)), secured)

    def lookup(self, name: str, target: str) -> LookupSpec:
        return LookupSpec(f"{self.prefix}_{_camel(name)}", target, _label(name))

    def source_columns(self) -> tuple[ColumnSpec, ...]:
        return (self.column("source_system_id", "String", display="Source System Id", max_length=100),
                self.column("source_created_on", "DateTime"), self.column("source_modified_on", "DateTime"))

    def source_key(self) -> KeySpec:
        return KeySpec(f"{self.prefix}_sourcesystemid_key", (f"{self.prefix}_sourcesystemid",))


def _lookup_target(ref: str, tables_of: dict[str, str], custom: set[str]) -> str | None:
    if ref in _MERGED_INTO_CONTACT:
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


def _standard_extensions(n: _Names) -> dict[str, tuple[ColumnSpec | LookupSpec, ...]]:
    """DESIGN §4's columns on standard tables."""
    policy: list[ColumnSpec | LookupSpec] = []
    for order in ("primary", "secondary"):
        policy += [n.column(f"{order}_subscriber_id", "String", max_length=50),
                   n.column(f"{order}_group_number", "String", max_length=50),
                   n.column(f"{order}_plan_name", "String", max_length=200),
                   n.column(f"{order}_relationship", "Picklist", options=("Self", "Spouse", "Dependent", "Other")),
                   n.column(f"{order}_effective_date", "DateOnly"),
                   n.lookup(f"{order}_carrier_id", "account"),
                   n.lookup(f"{order}_policyholder_id", "contact")]
    return {
        f"{n.prefix}_billingledger": (
            n.column("entry_type", "Picklist",
                     options=("Charge", "Payment", "Adjustment", "Insurance Payment", "Write-off", "Claim")),),
        "account": (n.column("is_insurance_carrier", "Boolean"), n.column("payer_id", "String", max_length=50),
                    n.column("npi", "String", display="NPI", max_length=10)),
        "contact": (
            n.column("contact_type", "Picklist", options=("Patient", "Provider", "Referral")),
            n.column("provider_role", "Picklist",
                     options=("Dentist", "Hygienist", "Assistant", "Specialist", "Referral")),
            n.column("npi", "String", display="NPI", max_length=10),
            n.column("provider_status", "Picklist", options=("Active", "Inactive")),
            n.column("referral_source", "Picklist",
                     options=("Patient", "Doctor", "Website", "Search", "Social Media", "Insurance", "Walk-in",
                              "Event", "Marketing", "Other")),
            n.column("ssn_last_four", "String", display="SSN Last Four", max_length=4, secured=True),
            n.column("patient_number", "String", max_length=50),
            n.column("ethnicity", "String", max_length=100),
            n.column("sms_opt_out", "Boolean", display="SMS Opt Out"),
            n.column("ortho_treatment_status", "String", max_length=100),
            n.column("model_box_number", "String", max_length=50),
            n.lookup("preferred_dentist_id", "contact"),
            n.lookup("preferred_hygienist_id", "contact"),
            *policy,
        ),
    }


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
    for o in objects:
        if o.name not in _MERGED_INTO_CONTACT and tables_of[o.name] != "systemuser":
            by_table.setdefault(tables_of[o.name], []).append(o)
    for table, also in _ALSO_WRITTEN.items():
        for other in also:
            if table in by_table:
                by_table.setdefault(other, list(by_table[table]))
    extensions = _standard_extensions(n)
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
        # Annotation can't carry an alternate key [unverified: annotation is not listed as key-enabled];
        # documents are found by querying smig_sourcesystemid instead (issue 7).
        keys = () if logical == "annotation" else (n.source_key(),)
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
