"""The columns a proposal may choose from: per table, value columns and lookups (navigation properties) with their
kind, maximum length, display name and option labels.

Offline: the schema plan plus the client-side copy of the standard tables (labels of standard choices from
:mod:`.vocabulary`). Online (:func:`from_dataverse`): the same, plus every column the environment's
``EntityDefinitions`` lists that the plan does not know, so custom columns a customer already has are candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from senseimig_dagster.dataverse.schema import SchemaPlan
from senseimig_dagster.dataverse.standard_tables import standard_tables
from senseimig_dagster.mapping import vocabulary
from senseimig_dagster.mapping.schema_plan import default_plan
from senseimig_dagster.mapping.targets import TargetCatalog, TargetColumn, TargetLookup

# System lookups a migrated field never sets.
_SYSTEM_LOOKUPS = ("createdby", "createdonbehalfby", "modifiedby", "modifiedonbehalfby", "owningbusinessunit",
                   "owningteam", "owninguser", "masterid", "transactioncurrencyid", "sla", "stageid", "processid",
                   "slainvokedid", "descriptionblobid", "activityid", "correlatedactivityid", "receivingmailboxid",
                   "sendermailboxid", "templateid", "parentactivityid", "acceptingentityid", "sendersaccount",
                   "msa_", "preferredsystemuserid")
_VALUE_KINDS = frozenset({"String", "Memo", "Integer", "BigInt", "Decimal", "Double", "Money", "Boolean", "DateOnly",
                          "DateTime", "Picklist", "State", "Status", "Uniqueidentifier"})
_READ_ONLY = frozenset({"statuscode", "importsequencenumber", "traversedpath", "timezoneruleversionnumber",
                        "utcconversiontimezonecode", "owneridtype", "parentcustomeridtype", "regardingobjecttypecode",
                        "objecttypecode", "objectidtypecode", "stageid", "processid", "subscriptionid"})


@dataclass(frozen=True)
class Candidate:
    table: str
    name: str  # column logical name, or a lookup's navigation property; may hold {slot}/{Slot}/{table}
    kind: str  # Dataverse attribute type, DateOnly for date-only DateTime; "Lookup" for navigation properties
    display: str = ""
    max_length: int | None = None
    options: tuple[tuple[Any, str], ...] = ()  # (value, label)
    lookup_targets: tuple[str, ...] = ()
    known: bool = True  # in the plan or the standard copy (False: found only in the environment)

    @property
    def is_lookup(self) -> bool:
        return self.kind == "Lookup"


@dataclass
class CandidateCatalog:
    prefix: str
    tables: dict[str, dict[str, Candidate]] = field(default_factory=dict)
    extra_columns: list[Candidate] = field(default_factory=list)  # environment-only, for the validation catalog

    def columns(self, table: str) -> list[Candidate]:
        return list(self.tables.get(table, {}).values())

    def add(self, c: Candidate) -> None:
        self.tables.setdefault(c.table, {})[c.name] = c

    def target_catalog(self) -> TargetCatalog:
        """The validation catalog, with the environment-only columns added (so a map using them validates)."""
        return _EnvironmentCatalog(default_plan(self.prefix), self.extra_columns)


class _EnvironmentCatalog(TargetCatalog):
    """The plan's catalog plus columns found only in the environment."""

    def __init__(self, plan: SchemaPlan, extra: list[Candidate]):
        super().__init__(plan)
        for c in extra:
            if c.is_lookup:
                self._lookups[c.table, c.name] = TargetLookup(c.table, c.name, c.name.lower(), c.lookup_targets)
            else:
                self._columns[c.table, c.name] = TargetColumn(c.table, c.name, c.kind, tuple(v for v, _ in c.options))
        self.tables = frozenset(t for t, _ in self._columns)


def offline(plan: SchemaPlan | None = None) -> CandidateCatalog:
    plan = plan or default_plan()
    catalog = CandidateCatalog(plan.prefix)
    for table, raw in standard_tables().items():
        for name, col in raw["columns"].items():
            if col["kind"] not in _VALUE_KINDS or name in _READ_ONLY or name.endswith("id") and \
                    col["kind"] == "Uniqueidentifier":
                continue
            labels = vocabulary.STANDARD_OPTION_LABELS.get(name, ())
            catalog.add(Candidate(table, name, col["kind"], options=labels))
        for nav, lk in raw["lookups"].items():
            if nav.lower().startswith(_SYSTEM_LOOKUPS):
                continue
            catalog.add(Candidate(table, nav, "Lookup", lookup_targets=tuple(lk["targets"])))
    for t in plan.tables:
        for c in [*t.columns, *([t.primary_name] if t.primary_name else [])]:
            catalog.add(Candidate(t.logical_name, c.logical_name, c.kind, c.display_name, c.max_length, c.options))
        for lk in t.lookups:
            catalog.add(Candidate(t.logical_name, lk.schema_name, "Lookup", lk.display_name,
                                  lookup_targets=(lk.target,)))
        if t.custom:
            catalog.add(Candidate(t.logical_name, "overriddencreatedon", "DateTime", "Record Created On"))
    return catalog


def _label_text(label: Any) -> str:
    if isinstance(label, dict):
        user = label.get("UserLocalizedLabel") or {}
        if user.get("Label"):
            return str(user["Label"])
        labels = label.get("LocalizedLabels") or []
        return str(labels[0].get("Label", "")) if labels else ""
    return ""


def from_attributes(catalog: CandidateCatalog, table: str, attributes: dict[str, dict[str, Any]]) -> None:
    """Add the environment's columns the catalog lacks (``DataverseMetadata.columns(table)``)."""
    known = catalog.tables.get(table, {})
    known_lower = {n.lower() for n in known}
    for logical, row in attributes.items():
        kind = str(row.get("AttributeType", ""))
        if logical in known_lower or row.get("IsValidForCreate") is False or row.get("AttributeOf"):
            continue
        display = _label_text(row.get("DisplayName"))
        if kind == "Lookup":
            schema = str(row.get("SchemaName") or logical)  # custom lookups: SchemaName is the navigation property
            if schema.lower() in known_lower or logical.startswith(_SYSTEM_LOOKUPS):
                continue
            c = Candidate(table, schema, "Lookup", display, lookup_targets=tuple(row.get("Targets") or ()),
                          known=False)
        elif kind in _VALUE_KINDS:
            fmt = str(row.get("Format") or "")
            behavior = (row.get("DateTimeBehavior") or {}).get("Value") if isinstance(
                row.get("DateTimeBehavior"), dict) else None
            if kind == "DateTime" and (fmt == "DateOnly" or behavior == "DateOnly"):
                kind = "DateOnly"
            c = Candidate(table, logical, kind, display, row.get("MaxLength"), known=False)
        else:
            continue
        catalog.add(c)
        catalog.extra_columns.append(c)


def from_dataverse(metadata: Any, tables: list[str], plan: SchemaPlan | None = None) -> CandidateCatalog:
    """The offline catalog plus each table's columns as the environment lists them (``EntityDefinitions``).
    Option labels of environment-only choice columns are not read (that needs ``$expand=OptionSet``; code
    unverified against the emulator), so such columns are candidates for direct values only."""
    catalog = offline(plan)
    for table in tables:
        from_attributes(catalog, table, metadata.columns(table))
    return catalog
