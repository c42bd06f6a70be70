"""Collection-valued navigation properties and references (Microsoft's "Associate and disassociate table rows using
the Web API" and "Retrieve related table records with a query"):

- ``GET <set>(<id>)/<collection>`` -> the related records (``$select``); ``.../<collection>/$ref`` -> their
  ``@odata.id`` (context ``$metadata#Collection($ref)``);
- ``POST <set>(<id>)/<collection>/$ref`` with ``{"@odata.id": url}`` associates (sets the related record's lookup);
  ``DELETE <set>(<id>)/<collection>(<related id>)/$ref`` or ``.../<collection>/$ref?$id=<url>`` disassociates;
- ``PUT <set>(<id>)/<lookup>/$ref`` with ``{"@odata.id": url}`` sets a single-valued navigation property,
  ``DELETE <set>(<id>)/<lookup>/$ref`` clears it.

A collection is the other side of a 1:N relationship (``Catalog.collection``): associating writes the related
record's lookup, as Dataverse does. Standard many-to-many relationships keep pairs (``associations.py``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from senseimig_dagster.sandbox.dataverse_emulator import associations, odata
from senseimig_dagster.sandbox.dataverse_emulator.errors import DataverseError
from senseimig_dagster.sandbox.dataverse_emulator.metadata import OneToMany, Table
from senseimig_dagster.sandbox.dataverse_emulator.store import StoredRecord, not_found

if TYPE_CHECKING:
    from senseimig_dagster.sandbox.dataverse_emulator.app import DataverseEmulator, Response

BASE_PATH = "/api/data/v9.2"
JSON_TYPE = "application/json; odata.metadata=minimal"
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_PATH = re.compile(rf"^{re.escape(BASE_PATH)}/(?P<set>{_NAME})\((?P<key>[^()]*)\)/(?P<nav>{_NAME})"
                   rf"(?:\((?P<related>[^()]*)\))?(?:(?P<ref>/\$ref)|(?P<count>/\$count))?$")
_REFERENCE = re.compile(rf"(?:^|/)(?P<set>{_NAME})\((?P<id>[0-9a-fA-F]{{8}}(?:-[0-9a-fA-F]{{4}}){{3}}-[0-9a-fA-F]{{12}})\)$")


def route(app: DataverseEmulator, environ: dict) -> Response | None:
    match = _PATH.match(environ.get("PATH_INFO", ""))
    table = None if match is None else app.catalog.table_by_entity_set(match["set"])
    if table is None:
        return None
    nav, method, is_ref = match["nav"], environ.get("REQUEST_METHOD", "GET"), bool(match["ref"])
    collection = app.catalog.collection(table, nav)
    if collection is None:
        if is_ref and nav in table.lookups and match["related"] is None:
            return _single_valued(app, environ, table, _record(app, table, match["key"]), nav, method)
        many = associations.find(table.logical_name, nav)
        return None if many is None else _many_to_many(app, environ, _record(app, table, match["key"]), many,
                                                          method, is_ref, match["related"])
    record = _record(app, table, match["key"])
    if method == "GET" and match["count"] and match["related"] is None:
        # Documented: the count alone, "with the UTF-8 byte order mark" (L/webapi/retrieve-entity-using-web-api).
        count = len(related_records(app, record, collection))
        return 200, [("Content-Type", "text/plain")], "\ufeff".encode() + str(count).encode()
    if method == "GET" and match["related"] is None:
        return _list(app, environ, record, collection, as_references=is_ref)
    if method == "POST" and is_ref and match["related"] is None:
        related = _referenced(app, odata.read_json(environ), collection.referencing)
        app.store.update(collection.referencing, related.id, {f"{collection.lookup}@odata.bind":
                                                             f"/{table.entity_set}({record.id})"})
        return 204, [], b""
    if method == "DELETE" and is_ref:
        if match["related"] is not None:
            related_id = match["related"].strip().lower()
        else:
            target = parse_qs(environ.get("QUERY_STRING", "")).get("$id", [""])[-1]
            related_id = _referenced(app, {"@odata.id": target}, collection.referencing).id
        related = app.store.retrieve(collection.referencing, related_id)
        if related is None or related.values.get(collection.attribute) != record.id:
            raise not_found(collection.referencing, related_id)
        app.store.update(collection.referencing, related.id, {f"{collection.lookup}@odata.bind": None})
        return 204, [], b""
    raise DataverseError(405, "0x80040203", f"The HTTP method '{method}' is not allowed here.")


def related_records(app: DataverseEmulator, record: StoredRecord, collection: OneToMany) -> list[StoredRecord]:
    """The records of ``collection`` pointing at ``record``, in creation order: Microsoft's retrieve article lists
    an account's expanded ``Account_Tasks`` that way (neither by id nor by version); its order is otherwise unstated."""
    return app.store.referencing(collection.referencing, collection.attribute, record.id)


def expand(app: DataverseEmulator, environ: dict, record: StoredRecord, collection: OneToMany,
           nested: dict[str, str], more: Callable[[Table, StoredRecord], dict[str, Any]] | None = None
           ) -> list[dict[str, Any]]:
    """``$expand=<collection>($select=...)``: the related records, shaped, each with the lookup that relates it
    (``_<attribute>_value``, as Microsoft's query examples show) and what ``more`` adds (a nested $expand)."""
    target = app.catalog.table(collection.referencing)
    select = odata.parse_select(nested.get("$select"))
    return [{**app._shape(environ, target, r, select), f"_{collection.attribute}_value": record.id,
             **(more(target, r) if more else {})} for r in related_records(app, record, collection)]


def link(app: DataverseEmulator, environ: dict, table: Table, record: StoredRecord, name: str,
         nested: dict[str, str]) -> str:
    """The URL of ``record``'s collection ``name`` with the expansion's ``$select``."""
    select = f"?$select={nested['$select']}" if nested.get("$select") else ""
    return f"{app._base(environ)}/{table.entity_set}({record.id})/{name}{select}"


def _list(app: DataverseEmulator, environ: dict, record: StoredRecord, collection: OneToMany, *,
          as_references: bool) -> Response:
    target = app.catalog.table(collection.referencing)
    related = related_records(app, record, collection)
    base = app._base(environ)
    if as_references:
        body: dict[str, Any] = {"@odata.context": f"{base}/$metadata#Collection($ref)",
                                "value": [{"@odata.id": f"{base}/{target.entity_set}({r.id})"} for r in related]}
    else:
        params = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}
        select = odata.parse_select(params.get("$select"))
        columns = f"({','.join(select)})" if select else ""
        body = {"@odata.context": f"{base}/$metadata#{target.entity_set}{columns}",
                "value": [app._shape(environ, target, r, select) for r in related]}
    return 200, [("Content-Type", JSON_TYPE)], json.dumps(body).encode()


def _many_to_many(app: DataverseEmulator, environ: dict, record: StoredRecord, many: associations.ManyToMany,
                  method: str, is_ref: bool, related_key: str | None) -> Response:
    other = many.other(record.table)
    if method == "GET" and not is_ref and related_key is None:
        target = app.catalog.table(other)
        params = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}
        ids = associations.related_ids(app.store, many, record)
        filters = [*app._filters(target, odata.resolve_aliases(params.get("$filter"), params)),
                   (target.primary_id, odata.AnyOf(ids))]
        rows = app.store.query(other, filters) if ids else []
        select = odata.parse_select(params.get("$select"))
        columns = f"({','.join(select)})" if select else ""
        body = {"@odata.context": f"{app._base(environ)}/$metadata#{target.entity_set}{columns}",
                "value": [app._shape(environ, target, r, select) for r in rows]}
        return 200, [("Content-Type", JSON_TYPE)], json.dumps(body).encode()
    if method == "POST" and is_ref and related_key is None:
        associations.associate(app.store, many, record, _referenced(app, odata.read_json(environ), other))
        return 204, [], b""
    if method == "DELETE" and is_ref:
        if related_key is not None:
            found = app.store.retrieve(other, related_key.strip().lower())
            if found is None:
                raise not_found(other, related_key)
        else:
            target = parse_qs(environ.get("QUERY_STRING", "")).get("$id", [""])[-1]
            found = _referenced(app, {"@odata.id": target}, other)
        if not associations.disassociate(app.store, many, record, found):
            raise not_found(other, found.id)  # not associated; code and text unverified
        return 204, [], b""
    raise DataverseError(405, "0x80040203", f"The HTTP method '{method}' is not allowed here.")


def _single_valued(app: DataverseEmulator, environ: dict, table: Table, record: StoredRecord, nav: str,
                   method: str) -> Response:
    if method == "PUT":
        body = odata.read_json(environ)
        url = body.get("@odata.id") if isinstance(body, dict) else None
        app.store.update(table.logical_name, record.id, {f"{nav}@odata.bind": _bind_path(url)})
        return 204, [], b""
    if method == "DELETE":
        app.store.update(table.logical_name, record.id, {f"{nav}@odata.bind": None})
        return 204, [], b""
    raise DataverseError(405, "0x80040203", f"The HTTP method '{method}' is not allowed here.")


def _record(app: DataverseEmulator, table: Table, key: str) -> StoredRecord:
    resource = odata.parse_resource(f"/{table.entity_set}({key})")
    record = app._locate(table, resource)
    if record is None:
        raise not_found(table.logical_name, resource.id or key)
    return record


def _bind_path(url: Any) -> str:
    match = _REFERENCE.search(unquote(url)) if isinstance(url, str) else None
    if match is None:
        raise odata.bad_request("The request body must hold \"@odata.id\" with the URL of a table row.")
    return f"/{match['set']}({match['id']})"


def _referenced(app: DataverseEmulator, body: Any, logical_name: str) -> StoredRecord:
    """The record an ``{"@odata.id": url}`` body names; it must belong to ``logical_name``."""
    path = _bind_path(body.get("@odata.id") if isinstance(body, dict) else None)
    match = _REFERENCE.search(path)
    table = app.catalog.table_by_entity_set(match["set"])
    if table is None or table.logical_name != logical_name:
        raise odata.bad_request(f"The entity set '{match['set']}' is not the target of this navigation property.")
    found = app.store.retrieve(logical_name, match["id"].lower())
    if found is None:
        raise not_found(logical_name, match["id"])
    return found
