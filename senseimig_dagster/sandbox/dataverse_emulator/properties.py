"""One property of a record, and related records through single-valued navigation properties
(Microsoft's "Retrieve a table row using the Web API" and "Update and delete table rows using the Web API"):

- ``GET <set>(<id>)/<column>`` -> ``{"@odata.context", "value"}`` (204 when the value is null, as OData answers
  a null property); ``PUT`` with ``{"value": ...}`` sets it, ``DELETE`` clears it (both 204);
- ``GET <set>(<id>)/<navigation property>`` -> the related record, with ``$select``;
- ``$expand`` of single-valued navigation properties on a retrieve: ``nav($select=a,b)`` nests the related record,
  ``nav/$ref`` its ``@odata.id`` (and, as Microsoft's example shows, the lookup's ``_<attribute>_value``).
  Collection-valued navigation properties expand to their related records (``navigation.py``).

File columns and note bodies have their own routes (``file_columns.py``, ``files.py``), tried first.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from senseimig_dagster.sandbox.dataverse_emulator import navigation, odata
from senseimig_dagster.sandbox.dataverse_emulator.errors import DataverseError
from senseimig_dagster.sandbox.dataverse_emulator.metadata import LOOKUP_TYPES, Lookup, Table
from senseimig_dagster.sandbox.dataverse_emulator.store import StoredRecord, not_found

if TYPE_CHECKING:
    from senseimig_dagster.sandbox.dataverse_emulator.app import DataverseEmulator, Response

BASE_PATH = "/api/data/v9.2"
JSON_TYPE = "application/json; odata.metadata=minimal"
_PATH = re.compile(rf"^{re.escape(BASE_PATH)}/(?P<set>[A-Za-z_][A-Za-z0-9_]*)\((?P<key>[^()]*)\)/(?P<prop>[A-Za-z_]"
                   r"[A-Za-z0-9_]*)$")


def route(app: DataverseEmulator, environ: dict) -> Response | None:
    match = _PATH.match(environ.get("PATH_INFO", ""))
    if match is None:
        return None
    table = app.catalog.table_by_entity_set(match["set"])
    if table is None:
        return None
    resource = odata.parse_resource(f"/{match['set']}({match['key']})")
    name, method = match["prop"], environ.get("REQUEST_METHOD", "GET")
    lookup = table.lookups.get(name)
    if lookup is not None and method == "GET":
        record = _record(app, table, resource)
        related = _related(app, lookup, record)
        if related is None:
            return 204, [], b""
        params = _params(environ)
        target = app.catalog.table(related.table)
        select = odata.parse_select(params.get("$select"))
        context = f"{app._base(environ)}/$metadata#{target.entity_set}{_columns(select)}/$entity"
        body = {"@odata.context": context, **app._shape(environ, target, related, select)}
        return 200, [("Content-Type", JSON_TYPE)], json.dumps(body).encode()
    column = table.columns.get(name)
    if column is None or column.type in LOOKUP_TYPES:
        return None
    record = _record(app, table, resource)
    if method == "GET":
        value = record.values.get(column.logical_name)
        if value is None:
            return 204, [], b""
        context = f"{app._base(environ)}/$metadata#{table.entity_set}({record.id})/{column.logical_name}"
        return 200, [("Content-Type", JSON_TYPE)], json.dumps({"@odata.context": context, "value": value}).encode()
    if method == "PUT":
        body = odata.read_json(environ)
        if not isinstance(body, dict) or set(body) != {"value"}:
            raise odata.bad_request("A single-property PUT takes {\"value\": ...}.")
        app.store.update(table.logical_name, record.id, {column.logical_name: body["value"]})
        return 204, [], b""
    if method == "DELETE":
        app.store.update(table.logical_name, record.id, {column.logical_name: None})
        return 204, [], b""
    raise DataverseError(405, "0x80040203", f"The HTTP method '{method}' is not allowed here.")


def expand(app: DataverseEmulator, environ: dict, table: Table, record: StoredRecord, text: str | None, *,
           in_collection: bool = False, page: int | None = None) -> dict[str, Any]:
    """The properties ``$expand=text`` adds to ``record``'s representation (``in_collection``: a row of a query;
    ``page``: the page size applied to expanded collections, as Dataverse does when the query nests an $expand)."""
    out: dict[str, Any] = {}
    for item in odata.split_expand(text):
        name, nested = odata.parse_expand_item(item)
        as_reference = name.endswith("/$ref")
        name = name.removesuffix("/$ref")
        lookup = table.lookups.get(name)
        collection = app.catalog.collection(table, name) if lookup is None else None
        if collection is not None and not as_reference:
            def deeper(target: Table, row: StoredRecord, text: str | None = nested.get("$expand")) -> dict[str, Any]:
                return expand(app, environ, target, row, text)
            out[name] = navigation.expand(app, environ, record, collection, nested, deeper)[:page]
            if in_collection:
                # Documented for queries: each expanded collection comes with the link that retrieves it alone.
                out[f"{name}@odata.nextLink"] = navigation.link(app, environ, table, record, name, nested)
            continue
        if lookup is None:
            raise DataverseError(400, "0x80060888", f"Could not find a navigation property named '{name}' on type "
                                 f"'Microsoft.Dynamics.CRM.{table.logical_name}'.")
        related = _related(app, lookup, record)
        if as_reference:
            out[f"_{lookup.attribute}_value"] = record.values.get(lookup.attribute)
            out[name] = None if related is None else {
                "@odata.id": f"{app._base(environ)}/{app.catalog.table(related.table).entity_set}({related.id})"}
            continue
        if related is None:
            out[name] = None
            continue
        target = app.catalog.table(related.table)
        # Nested $expand applies to single-valued navigation properties, to any depth (L/webapi/multi-level-expand).
        out[name] = {**app._shape(environ, target, related, odata.parse_select(nested.get("$select"))),
                     **expand(app, environ, target, related, nested.get("$expand"))}
    return out


def _related(app: DataverseEmulator, lookup: Lookup, record: StoredRecord) -> StoredRecord | None:
    rid = record.values.get(lookup.attribute)
    if rid is None:
        return None
    return next((r for t in lookup.targets if t in app.catalog.tables
                 for r in [app.store.retrieve(t, rid)] if r is not None), None)


def _record(app: DataverseEmulator, table: Table, resource: odata.Resource) -> StoredRecord:
    record = app._locate(table, resource)
    if record is None:
        raise not_found(table.logical_name, resource.id or "")
    return record


def _params(environ: dict) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}


def _columns(select: list[str] | None) -> str:
    return f"({','.join(select)})" if select else ""
