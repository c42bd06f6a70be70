"""A small subset of FetchXML in ``GET <set>?fetchXml=...`` (Microsoft's "Use FetchXml with the Web API" and the
query data sample's Section 8): one ``entity`` with ``attribute``s, ``order``s, one ``filter`` (``and``/``or``) of
``condition``s with ``eq``/``ne``/``gt``/``ge``/``lt``/``le``/``like``/``not-like``/``null``/``not-null``, and
``count``/``page`` paging. Anything else (link-entity, aggregates, nested filters) is refused with 400, never
guessed at. ``like`` takes SQL wildcards as FetchXML does (``%(sample)%``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from senseimig_dagster.sandbox.dataverse_emulator import odata
from senseimig_dagster.sandbox.dataverse_emulator.metadata import Table

_COMPARE = {"ne": "ne", "gt": "gt", "ge": "ge", "lt": "lt", "le": "le"}


@dataclass(frozen=True)
class Fetch:
    select: list[str]
    filters: list[tuple[str, Any]]
    orderby: list[tuple[str, bool]]
    count: int | None
    page: int


def parse(text: str, table: Table) -> Fetch:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise odata.bad_request(f"The fetchXml parameter is not valid XML: {e}.") from None
    entity = root.find("entity")
    if root.tag != "fetch" or entity is None or entity.get("name") != table.logical_name:
        raise odata.bad_request("The fetch entity name must be the logical name of the entity set's table.")
    unsupported = {child.tag for child in entity} - {"attribute", "order", "filter", "all-attributes"}
    if unsupported or root.get("aggregate") == "true":
        raise odata.bad_request(f"The emulator's FetchXML doesn't support {sorted(unsupported) or 'aggregate'}.")
    select = [a.get("name", "") for a in entity.findall("attribute")] or None
    orderby = [(o.get("attribute", ""), o.get("descending") == "true") for o in entity.findall("order")]
    filters: list[tuple[str, Any]] = []
    for block in entity.findall("filter"):
        if block.find("filter") is not None:
            raise odata.bad_request("The emulator's FetchXML doesn't support nested filters.")
        conditions = [_condition(table, c) for c in block.findall("condition")]
        if block.get("type", "and") == "or":
            filters.append(("", odata.AnyCondition(tuple(conditions))))
        else:
            filters += conditions
    count = int(root.get("count")) if root.get("count") else None
    return Fetch(select or [], filters, orderby, count, int(root.get("page") or 1))


def _condition(table: Table, element: ET.Element) -> tuple[str, Any]:
    column, operator, value = element.get("attribute", ""), element.get("operator", ""), element.get("value")
    if column not in table.columns:
        raise odata.bad_request(f"'{table.logical_name}' entity doesn't contain attribute with Name = '{column}'.")
    if table.columns[column].type not in ("String", "Memo") and value is not None and not odata.is_guid(value):
        value = odata.parse_literal(value)
    if operator == "eq":
        return column, value.lower() if isinstance(value, str) and odata.is_guid(value) else value
    if operator in _COMPARE:
        return column, odata.Compare(_COMPARE[operator], value)
    if operator in ("like", "not-like"):
        return column, (odata.Like if operator == "like" else odata.Unlike)(str(value))
    if operator in ("null", "not-null"):
        return column, None if operator == "null" else odata.Compare("ne", None)
    raise odata.bad_request(f"The emulator's FetchXML doesn't support the condition operator '{operator}'.")
