"""Create with related records (Microsoft's "Create a table row using the Web API": "Create related table rows in
one operation" and "Associate table rows on create"), inside the caller's transaction:

- a single-valued navigation property holding an object creates that record first and binds the new one to it;
- a collection-valued navigation property holding an array of objects creates each after the new record, bound
  to it through their lookup; ``<collection>@odata.bind`` with an array of URLs associates existing records.

The response names only the top record (``OData-EntityId``), as documented. A polymorphic lookup given an object
takes its first target, unless the object names its type with ``@odata.type`` (the documentation is silent on
which table such a nested record goes to).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from senseimig_dagster.sandbox.dataverse_emulator import activity_parties, odata
from senseimig_dagster.sandbox.dataverse_emulator.errors import not_found
from senseimig_dagster.sandbox.dataverse_emulator.metadata import Lookup, OneToMany

if TYPE_CHECKING:
    from senseimig_dagster.sandbox.dataverse_emulator.store import RecordStore, StoredRecord

_TYPE_PREFIX = "#Microsoft.Dynamics.CRM."


def create(store: RecordStore, table: str, body: dict[str, Any]) -> StoredRecord:
    """Create ``body`` in ``table`` with its nested records; the caller holds the store lock and a transaction."""
    meta = store.catalog.table(table)
    body, parties = activity_parties.take(table, body)  # an activity's parties, created with it
    flat: dict[str, Any] = {}
    children: list[tuple[OneToMany, bool, list[Any]]] = []
    for name, value in body.items():
        lookup = meta.lookups.get(name)
        if lookup is not None and isinstance(value, dict):
            target = _target(store, lookup, value)
            related = create(store, target, {k: v for k, v in value.items() if k != "@odata.type"})
            flat[f"{name}@odata.bind"] = f"/{store.catalog.table(target).entity_set}({related.id})"
            continue
        is_bind = name.endswith("@odata.bind")
        collection = store.catalog.collection(meta, name.removesuffix("@odata.bind"))
        if collection is not None and isinstance(value, list):
            children.append((collection, is_bind, value))
            continue
        flat[name] = value
    record = store._create(table, flat, None)
    activity_parties.insert(store, record, parties)
    parent = f"/{meta.entity_set}({record.id})"
    for collection, is_bind, items in children:
        for item in items:
            if is_bind:
                related = _bound(store, collection, item)
                store._update(related, {f"{collection.lookup}@odata.bind": parent})
            elif isinstance(item, dict):
                create(store, collection.referencing, {**item, f"{collection.lookup}@odata.bind": parent})
            else:
                raise odata.bad_request(f"The items of '{collection.navigation_property}' must be objects.")
    return record


def _target(store: RecordStore, lookup: Lookup, value: dict[str, Any]) -> str:
    named = str(value.get("@odata.type") or "").removeprefix(_TYPE_PREFIX).removeprefix("Microsoft.Dynamics.CRM.")
    if named and named in lookup.targets:
        return named
    return next(t for t in lookup.targets if t in store.catalog.tables)


def _bound(store: RecordStore, collection: OneToMany, url: Any) -> StoredRecord:
    text = url if isinstance(url, str) else ""
    resource = odata.parse_resource("/" + text.rsplit("/", 1)[-1]) if "(" in text else None
    table = None if resource is None else store.catalog.table_by_entity_set(resource.entity_set)
    if table is None or table.logical_name != collection.referencing or resource.id is None:
        raise odata.bad_request(f"The value '{url}' of '{collection.navigation_property}@odata.bind' is not a valid "
                                "entity reference URL.")
    found = store.retrieve(table.logical_name, resource.id)
    if found is None:
        raise not_found(table.logical_name, resource.id)
    return found
