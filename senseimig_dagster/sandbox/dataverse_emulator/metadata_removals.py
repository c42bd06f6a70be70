"""Removals of custom schema (rollback's ``remove_schema``): the catalog only adds definitions, so deletes edit its
state here (under its lock) and journal a ``remove_*`` change that ``restore_custom_schema`` replays. Records lose
the deleted table or column with it."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from senseimig_dagster.sandbox.dataverse_emulator.metadata import Catalog

if TYPE_CHECKING:
    from senseimig_dagster.sandbox.dataverse_emulator.store import RecordStore


def remove_table(catalog: Catalog, store: RecordStore | None, table: str) -> None:
    with catalog._lock:
        catalog._tables.pop(table, None)
        catalog._timed.discard(table)
        for name, rel in list(catalog._relationships.items()):
            if rel.referencing == table:
                del catalog._relationships[name]
        catalog._record("remove_table", table=table)
    if store is not None:
        with store.transaction():
            for sql in ("DELETE FROM records WHERE tbl=?", "DELETE FROM key_index WHERE tbl=?",
                        "DELETE FROM keys_built WHERE tbl=?", "DELETE FROM files WHERE tbl=?"):
                store._conn.execute(sql, (table,))


def remove_column(catalog: Catalog, store: RecordStore | None, table: str, column: str) -> None:
    with catalog._lock:
        current = catalog._tables[table]
        columns = {n: c for n, c in current.columns.items() if n != column}
        lookups = {nav: lk for nav, lk in current.lookups.items() if lk.attribute != column}
        catalog._tables[table] = replace(current, columns=columns, lookups=lookups)
        catalog._record("remove_column", table=table, column=column)
    if store is not None:
        with store.transaction():  # the column's values go with it; record versions are left alone [inference]
            store._conn.execute("UPDATE records SET data=json_remove(data, ?) WHERE tbl=?", (f'$."{column}"', table))


def remove_key(catalog: Catalog, store: RecordStore | None, table: str, key: str) -> None:
    with catalog._lock:
        current = catalog._tables[table]
        catalog._tables[table] = replace(current, keys=tuple(k for k in current.keys if k.schema_name != key))
        catalog._record("remove_key", table=table, schema_name=key)
    if store is not None:
        with store.transaction():
            store._conn.execute("DELETE FROM key_index WHERE tbl=? AND keyname=?", (table, key))
            store._conn.execute("DELETE FROM keys_built WHERE tbl=? AND keyname=?", (table, key))


def remove_relationship(catalog: Catalog, store: RecordStore | None, schema_name: str) -> None:
    """The relationship and its lookup column (and the lookup's values on every record)."""
    with catalog._lock:
        rel = catalog._relationships.pop(schema_name.lower())
        catalog._record("remove_relationship", schema_name=schema_name)
        if rel.referencing in catalog._tables and rel.attribute in catalog._tables[rel.referencing].columns:
            journal, catalog.journal = catalog.journal, None  # one journal entry replays the whole removal
            try:
                remove_column(catalog, store, rel.referencing, rel.attribute)
            finally:
                catalog.journal = journal


def replay_removal(catalog: Catalog, change: dict[str, Any]) -> None:
    journal, catalog.journal = catalog.journal, None  # replayed, not journaled again
    try:
        _apply_removal(catalog, change)
    finally:
        catalog.journal = journal


def _apply_removal(catalog: Catalog, change: dict[str, Any]) -> None:
    op = change["op"]
    if op == "remove_table":
        remove_table(catalog, None, change["table"])
    elif op == "remove_column":
        remove_column(catalog, None, change["table"], change["column"])
    elif op == "remove_key":
        remove_key(catalog, None, change["table"], change["schema_name"])
    elif op == "remove_relationship":
        remove_relationship(catalog, None, change["schema_name"])
    else:
        raise ValueError(f"unknown schema change {op!r}")
