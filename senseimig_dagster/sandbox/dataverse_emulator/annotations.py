"""Annotations a read returns when asked with ``Prefer: odata.include-annotations="..."`` (Microsoft's "Query data
using the Web API": "Include formatted values" and "Retrieve data about lookup properties"):

- ``<column>@OData.Community.Display.V1.FormattedValue``: money with the record's currency symbol and two decimals
  (``$80,000.00``), whole numbers with thousands separators (``9,500``), the label of a choice, a Yes/No or a state
  or status (``Allow``), a lookup's primary name (``US Dollar``);
- ``_<lookup>_value@Microsoft.Dynamics.CRM.associatednavigationproperty`` and ``...lookuplogicalname``.

The preference is echoed in ``Preference-Applied``. Dates are not formatted here (their format is the user's
settings'; documentation is silent on a default), nor are decimals and floats.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from senseimig_dagster.sandbox.dataverse_emulator import odata
from senseimig_dagster.sandbox.dataverse_emulator.metadata import LOOKUP_TYPES, Table

if TYPE_CHECKING:
    from senseimig_dagster.sandbox.dataverse_emulator.app import DataverseEmulator

FORMATTED = "OData.Community.Display.V1.FormattedValue"
NAVIGATION = "Microsoft.Dynamics.CRM.associatednavigationproperty"
LOGICAL_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"
PREFERENCE = "odata.include-annotations"


def requested(environ: dict) -> str | None:
    """The annotations asked for (``*`` or a comma-separated list, wildcards allowed), or None."""
    return odata.parse_prefer(environ.get("HTTP_PREFER")).get(PREFERENCE)


def applied_header(environ: dict) -> list[tuple[str, str]]:
    wanted = requested(environ)
    return [] if wanted is None else [("Preference-Applied", f'{PREFERENCE}="{wanted}"')]


TOTAL = "Microsoft.Dynamics.CRM.totalrecordcount"
LIMIT_EXCEEDED = "Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"
METADATA_VERSION = "Microsoft.Dynamics.CRM.globalmetadataversion"


def collection(environ: dict, count: int | None, metadata_version: int) -> dict[str, Any]:
    """The annotations of a query's collection (L/webapi/query/count-rows): ``totalrecordcount`` (-1 without
    ``$count=true``, else the count up to 5000), whether that limit was exceeded, and the metadata version (the
    emulator's store version; the articles show a server counter)."""
    asked = requested(environ)
    if asked is None:
        return {}
    values = {TOTAL: -1 if count is None else min(count, odata.MAX_PAGE_SIZE),
              LIMIT_EXCEEDED: count is not None and count > odata.MAX_PAGE_SIZE, METADATA_VERSION: str(metadata_version)}
    return {f"@{name}": value for name, value in values.items() if _wants(asked, name)}


def _wants(asked: str, name: str) -> bool:
    return any(part == "*" or part == name or (part.endswith("*") and name.startswith(part[:-1]))
               for part in (p.strip() for p in asked.split(",")))


def annotate(app: DataverseEmulator, environ: dict, table: Table, out: dict[str, Any]) -> dict[str, Any]:
    """``out`` (a shaped record) with the requested annotations next to the values they describe."""
    asked = requested(environ)
    if asked is None:
        return out
    annotated: dict[str, Any] = {}
    for key, value in out.items():
        column = _column_of(table, key)
        if column is not None and value is not None:
            if column.type in LOOKUP_TYPES:
                target = _target(app, column.targets, value)
                if target is not None and _wants(asked, NAVIGATION):
                    annotated[f"{key}@{NAVIGATION}"] = _navigation(table, column.logical_name, target[0])
                if target is not None and _wants(asked, LOGICAL_NAME):
                    annotated[f"{key}@{LOGICAL_NAME}"] = target[0]
                if target is not None and target[1] is not None and _wants(asked, FORMATTED):
                    annotated[f"{key}@{FORMATTED}"] = target[1]
            elif _wants(asked, FORMATTED):
                text = _formatted(app, table, column, value, out)
                if text is not None:
                    annotated[f"{key}@{FORMATTED}"] = text
        annotated[key] = value
    return annotated


def _column_of(table: Table, key: str) -> Any:
    if key.startswith("_") and key.endswith("_value"):
        return table.columns.get(key[1:-6])
    return table.columns.get(key)


def _target(app: DataverseEmulator, targets: tuple[str, ...], rid: str) -> tuple[str, str | None] | None:
    for name in targets:
        if name in app.catalog.tables:
            record = app.store.retrieve(name, str(rid))
            if record is not None:
                primary = app.catalog.table(name).primary_name
                return name, None if primary is None else record.values.get(primary)
    return None


def _navigation(table: Table, attribute: str, target: str) -> str:
    navs = [nav for nav, lookup in table.lookups.items() if lookup.attribute == attribute]
    for nav in navs:  # a polymorphic lookup has one navigation property per target (parentcustomerid_account)
        if nav.endswith(f"_{target}"):
            return nav
    return navs[0] if navs else attribute


def _formatted(app: DataverseEmulator, table: Table, column: Any, value: Any, out: dict[str, Any]) -> str | None:
    if column.type in ("Picklist", "State", "Status", "Boolean"):
        key = int(value) if isinstance(value, bool) else value
        labels = dict(zip(column.options, column.option_labels, strict=False))
        return labels.get(key)
    if column.type == "Money" and isinstance(value, (int, float)):
        rid = out.get("_transactioncurrencyid_value")
        currency = app.store.retrieve("transactioncurrency", str(rid)) if rid else None
        symbol = (currency.values.get("currencysymbol") if currency else None) or ""
        return f"{symbol}{value:,.2f}"
    if column.type in ("Integer", "BigInt") and isinstance(value, int):
        return f"{value:,}"
    return None
