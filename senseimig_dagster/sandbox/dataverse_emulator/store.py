"""Persistent record store of the emulator: one SQLite file, records as JSON, plus an alternate-key index.

Every write is validated against the catalog (``validate_write``) and applied under one lock in one transaction,
so concurrent requests see Dataverse's all-or-nothing single-record semantics.

Text compares as Dataverse's SQL database compares it under the collation of an English (1033) environment,
``_CI_AI``: case- and accent-insensitive (https://learn.microsoft.com/power-platform/admin/language-collations).
That holds for alternate-key values (``ABC``, ``abc`` and ``àbc`` are one key; a second record with any of them is
a duplicate) and ``eq`` filters. Values are stored and returned as written.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from senseimig_dagster.sandbox.dataverse_emulator import (
    activity_parties,
    deep_insert,
    errors,
    files,
    sql_filters,
)
from senseimig_dagster.sandbox.dataverse_emulator.errors import DataverseError, not_found
from senseimig_dagster.sandbox.dataverse_emulator.metadata import AlternateKey, Catalog, Table
from senseimig_dagster.sandbox.dataverse_emulator.odata import AnyOf
from senseimig_dagster.sandbox.dataverse_emulator.sql_filters import fold
from senseimig_dagster.sandbox.dataverse_emulator.validation import (
    BindTarget,
    apply_state_rules,
    check_location_urls,
    check_owner,
    validate_write,
)

DUPLICATE_KEY = "0x80060892"  # DuplicateRecordEntityKey [doc], 412 [community]
DUPLICATE_RECORD = "0x80040237"  # DuplicateRecord: same primary key [doc]
NOT_FOUND = errors.NOT_FOUND
KEY_NOT_FOUND = "0x80060891"  # no record with these key values [community]
KEY_NOT_DEFINED = "0x80060890"  # not a defined key [doc]
# ConcurrencyVersionMismatch, code=-2147088254 = 0x80060882 (L/optimistic-concurrency, verified); status 412 [doc].
VERSION_MISMATCH = "0x80060882"

# The key index holds folded values (:func:`fold`) since version 1; an older file's index is rebuilt on open.
_INDEX_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    tbl TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL,
    createdon TEXT NOT NULL, modifiedon TEXT NOT NULL, versionnumber INTEGER NOT NULL,
    PRIMARY KEY (tbl, id));
CREATE TABLE IF NOT EXISTS key_index (
    tbl TEXT NOT NULL, keyname TEXT NOT NULL, keyvalue TEXT NOT NULL, id TEXT NOT NULL,
    PRIMARY KEY (tbl, keyname, keyvalue));
CREATE INDEX IF NOT EXISTS key_index_by_id ON key_index (tbl, id);
CREATE TABLE IF NOT EXISTS keys_built (tbl TEXT NOT NULL, keyname TEXT NOT NULL, PRIMARY KEY (tbl, keyname));
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS schema_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, change TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    tbl TEXT NOT NULL, id TEXT NOT NULL, col TEXT NOT NULL, fileid TEXT NOT NULL, name TEXT NOT NULL,
    data BLOB NOT NULL, PRIMARY KEY (tbl, id, col));
"""


@dataclass(frozen=True)
class StoredRecord:
    table: str
    id: str
    values: dict[str, Any]  # all columns incl. primary key, createdon, modifiedon, versionnumber
    version: int

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'  # documented shape: "@odata.etag":"W/\"123\""


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class RecordStore:
    """Records of every table of ``catalog`` in the SQLite file ``path`` (created if missing)."""

    def __init__(self, path: str | Path, catalog: Catalog) -> None:
        self.catalog = catalog
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._conn.execute(activity_parties.INDEX_SQL)
        self._conn.create_function("fold", 1, fold, deterministic=True)
        if self._conn.execute("PRAGMA user_version").fetchone()[0] < _INDEX_VERSION:
            self._conn.executescript(f"DELETE FROM key_index; DELETE FROM keys_built; "
                                     f"PRAGMA user_version = {_INDEX_VERSION};")
        # The systemuser owning records created without an owner (the caller's application user; seed.py sets it).
        self.default_owner: str | None = None
        self.base_currency: str | None = None  # the organization's transactioncurrency (seed.py sets it)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- custom schema (Catalog.journal; replayed at start by metadata_api.restore_custom_schema) ------------
    def log_schema_change(self, change: dict[str, Any]) -> None:
        with self._lock, self._tx():
            self._conn.execute("INSERT INTO schema_changes(change) VALUES (?)", (json.dumps(change),))

    def schema_changes(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute("SELECT change FROM schema_changes ORDER BY seq").fetchall()
        return [json.loads(row[0]) for row in rows]

    # -- reads ---------------------------------------------------------------------------------------------
    def retrieve(self, table: str, record_id: str) -> StoredRecord | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT data, versionnumber FROM records WHERE tbl=? AND id=?", (table, record_id.lower())
            ).fetchone()
        return None if row is None else StoredRecord(table, record_id.lower(), json.loads(row[0]), row[1])

    def key_for(self, table: str, columns: list[str]) -> AlternateKey:
        """The defined key with exactly these columns, refused when there is none or its index isn't Active."""
        meta = self.catalog.table(table)
        key = next((k for k in meta.keys if set(k.attributes) == set(columns)), None)
        if key is None or len(columns) != len(set(columns)):
            # Documented message for a URL key; code of "not a defined key" (web-service-error-codes).
            t = f"Microsoft.Dynamics.CRM.{meta.logical_name}"
            raise DataverseError(
                400,
                KEY_NOT_DEFINED,
                f"The key in the request URI is not valid for resource '{t}'. Ensure that the names and number "
                f"of key properties match the declared or alternate key properties for the resource '{t}'.",
            )
        if key.status != "Active":
            # Documented: wait for Active before using a key. Status and text unverified.
            raise DataverseError(
                400,
                errors.INVALID_ARGUMENT,
                f"The entity key '{key.schema_name}' of entity '{meta.logical_name}' is not active "
                f"(EntityKeyIndexStatus: {key.status}).",
            )
        return key

    def find_by_key(self, table: str, pairs: dict[str, Any]) -> StoredRecord | None:
        key = self.key_for(table, list(pairs))
        value = json.dumps([fold(pairs[a]) for a in key.attributes])
        with self._lock:
            self._build_key_index(self.catalog.table(table))
            row = self._conn.execute(
                "SELECT id FROM key_index WHERE tbl=? AND keyname=? AND keyvalue=?",
                (table, key.schema_name, value),
            ).fetchone()
        return None if row is None else self.retrieve(table, row[0])

    def query(
        self,
        table: str,
        filters: list[tuple[str, Any]] = (),  # type: ignore[assignment]
        orderby: list[tuple[str, bool]] = (),  # type: ignore[assignment]
        *,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[StoredRecord]:
        """Records matching ``col = value`` filters, ordered (then by id, as Dataverse orders by primary key)."""
        keyed = self._key_lookup(table, filters) if not orderby else None
        if keyed is not None:  # same rows, through the key index instead of a json_extract scan of the table
            keyname, values = keyed
            marks = ", ".join("?" * len(values))
            sql = (f"SELECT r.id, r.data, r.versionnumber FROM key_index k JOIN records r ON r.tbl = k.tbl AND "
                   f"r.id = k.id WHERE k.tbl=? AND k.keyname=? AND k.keyvalue IN ({marks}) ORDER BY {_by_guid('r.id')} "
                   "LIMIT ? OFFSET ?")
            with self._lock:
                self._build_key_index(self.catalog.table(table))
                rows = self._conn.execute(sql, [table, keyname, *(json.dumps([fold(v)]) for v in values),
                                                -1 if limit is None else limit, offset]).fetchall()
            return [StoredRecord(table, r[0], json.loads(r[1]), r[2]) for r in rows]
        where, params = self._where(table, filters)
        order = "".join(f"json_extract(data, ?) {'DESC' if d else 'ASC'}, " for _, d in orderby)
        params += [f'$."{c}"' for c, _ in orderby]
        sql = (f"SELECT id, data, versionnumber FROM records WHERE {where} ORDER BY {order}{_by_guid('id')} "
               "LIMIT ? OFFSET ?")
        with self._lock:
            rows = self._conn.execute(sql, [*params, -1 if limit is None else limit, offset]).fetchall()
        return [StoredRecord(table, r[0], json.loads(r[1]), r[2]) for r in rows]

    def referencing(self, table: str, attribute: str, record_id: str) -> list[StoredRecord]:
        """The records of ``table`` whose lookup ``attribute`` is ``record_id``, in creation order (SQLite rowid)."""
        sql = "SELECT id, data, versionnumber FROM records WHERE tbl=? AND json_extract(data, ?) = ? ORDER BY rowid"
        with self._lock:
            rows = self._conn.execute(sql, (table, f'$."{attribute}"', record_id)).fetchall()
        return [StoredRecord(table, r[0], json.loads(r[1]), r[2]) for r in rows]

    def count(self, table: str, filters: list[tuple[str, Any]] = ()) -> int:  # type: ignore[assignment]
        where, params = self._where(table, filters)
        with self._lock:
            return self._conn.execute(f"SELECT COUNT(*) FROM records WHERE {where}", params).fetchone()[0]

    def _key_lookup(self, table: str, filters: Any) -> tuple[str, tuple[str, ...]] | None:
        """(key name, values) when the filter is one ``eq``/``or`` of strings on a one-column alternate key: the
        read-back by source id, which a json_extract scan made O(rows in the table) per query."""
        if len(filters) != 1:
            return None
        column, value = filters[0]
        values = value.values if isinstance(value, AnyOf) else (value,)
        if not values or not all(isinstance(v, str) for v in values):
            return None
        try:
            meta = self.catalog.table(table)
        except Exception:  # an unknown table: the general path answers as before
            return None
        key = next((k for k in meta.keys if k.attributes == (column,)), None)
        return None if key is None else (key.schema_name, tuple(values))

    @staticmethod
    def _where(table: str, filters: Any) -> tuple[str, list[Any]]:
        return sql_filters.where(table, filters)

    # -- writes --------------------------------------------------------------------------------------------
    def create(self, table: str, body: dict[str, Any]) -> StoredRecord:
        """POST: a new record with a new GUID, or the client's primary key (duplicate id -> 412)."""
        with self._lock, self._tx():
            return deep_insert.create(self, table, body)  # with nested related records and activity parties

    def update(self, table: str, record_id: str, body: dict[str, Any], *, if_match: str | None = "*") -> StoredRecord:
        """PATCH that may only update (If-Match ``*`` or a version): missing -> 404, stale version -> 412."""
        return self.upsert(table, body, id=record_id, if_match=if_match)[0]

    def upsert(
        self,
        table: str,
        body: dict[str, Any],
        *,
        id: str | None = None,
        key: dict[str, Any] | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> tuple[StoredRecord, bool]:
        """PATCH by id or alternate key; returns (record, created). Conditional headers as documented."""
        activity_parties.refuse_nested(table, body, "PATCH")
        with self._lock, self._tx():
            existing = self.retrieve(table, id) if id is not None else self.find_by_key(table, key or {})
            if existing is None:
                if if_match is not None:
                    ref = id if id is not None else ",".join(f"{k}={v}" for k, v in (key or {}).items())
                    raise not_found(table, ref)
                seeded = dict(body)
                if key:  # an upsert by key that creates sets the key columns (L/use-upsert-insert-update-record)
                    seeded = {**key, **seeded}
                return self._create(table, seeded, id), True
            if if_none_match == "*":
                # Documented: 412 with an empty code.
                raise DataverseError(412, "", "A record with matching key values already exists.")
            if if_match not in (None, "*") and if_match != existing.etag:
                raise DataverseError(
                    412,
                    VERSION_MISMATCH,
                    "The version of the existing record doesn't match the RowVersion property provided.",
                )
            return self._update(existing, body), False

    def delete(self, table: str, record_id: str, *, if_match: str | None = None) -> None:
        with self._lock, self._tx():
            existing = self.retrieve(table, record_id)
            if existing is None:
                raise not_found(table, record_id)
            if if_match not in (None, "*") and if_match != existing.etag:
                raise DataverseError(
                    412,
                    VERSION_MISMATCH,
                    "The version of the existing record doesn't match the RowVersion property provided.",
                )
            self._conn.execute("DELETE FROM records WHERE tbl=? AND id=?", (table, existing.id))
            self._conn.execute("DELETE FROM key_index WHERE tbl=? AND id=?", (table, existing.id))
            self._conn.execute("DELETE FROM files WHERE tbl=? AND id=?", (table, existing.id))
            if table in activity_parties.MASKS:
                activity_parties.delete_for(self, existing.id)  # cascade (activitypointer_activity_parties)

    # -- file columns (file_columns.py): the bytes in `files`, the file id and name on the record ------------
    def put_file(self, table: str, record_id: str, column: str, name: str, content: bytes) -> str:
        """Store ``content`` as the record's file in ``column``; returns the new file id. The record then reads
        ``column`` = file id and ``<column>_name`` = name (L/file-column-data "Behavior when retrieving")."""
        file_id = str(uuid.uuid4())
        with self._lock, self._tx():
            self._set_file_columns(table, record_id, {column: file_id, f"{column}_name": name})
            self._conn.execute("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?)",
                               (table, record_id, column, file_id, name, content))
        return file_id

    def get_file(self, table: str, record_id: str, column: str) -> tuple[str, bytes] | None:
        """(name, content) of the record's file in ``column``, or None when it has none."""
        with self._lock:
            row = self._conn.execute("SELECT name, data FROM files WHERE tbl=? AND id=? AND col=?",
                                     (table, record_id, column)).fetchone()
        return None if row is None else (row[0], bytes(row[1]))

    def delete_file(self, table: str, record_id: str, column: str) -> None:
        with self._lock, self._tx():
            self._set_file_columns(table, record_id, {column: None, f"{column}_name": None})
            self._conn.execute("DELETE FROM files WHERE tbl=? AND id=? AND col=?", (table, record_id, column))

    def _set_file_columns(self, table: str, record_id: str, values: dict[str, Any]) -> None:
        existing = self.retrieve(table, record_id)
        if existing is None:
            raise not_found(table, record_id)
        version = self._next_version()
        row = {**existing.values, **values, "modifiedon": _now(), "versionnumber": version}
        self._conn.execute("UPDATE records SET data=?, modifiedon=?, versionnumber=? WHERE tbl=? AND id=?",
                           (json.dumps(row), row["modifiedon"], version, table, existing.id))

    # -- internals -----------------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Hold the lock and one SQLite transaction around several writes (a ``$batch`` change set): the writes
        inside become savepoints of it, and an exception out of the block rolls all of them back."""
        with self._lock, self._tx():
            yield

    def _tx(self) -> _Transaction:
        return _Transaction(self._conn)

    def version(self) -> int:
        """The store's current version counter (the last write's rowversion; 0 before any write)."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM counters WHERE name='version'").fetchone()
        return 0 if row is None else row[0]

    def _next_version(self) -> int:
        # One counter for the whole store, like SQL rowversion: ETags never repeat after a delete.
        self._conn.execute(
            "INSERT INTO counters(name, value) VALUES ('version', 1000) "
            "ON CONFLICT(name) DO UPDATE SET value = value + 1"
        )
        return self._conn.execute("SELECT value FROM counters WHERE name='version'").fetchone()[0]

    def _resolve_binds(self, meta: Table, binds: dict[str, BindTarget | None]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for nav, target in binds.items():
            attribute = meta.lookups[nav].attribute
            if target is None:
                out[attribute] = None
                continue
            if target.id is not None:
                found = self.retrieve(target.table, target.id)
                if found is None:
                    # A bind to a missing record fails [doc]; answered as for a missing id, 404 + this text
                    # (status for a bind unclear).
                    raise not_found(target.table, target.id)
            else:
                pairs = dict(target.alternate_key or ())
                found = self.find_by_key(target.table, pairs)
                if found is None:
                    raise DataverseError(
                        404,
                        KEY_NOT_FOUND,  # message unverified
                        f"A record with the specified key values does not exist in {target.table} entity",
                    )
            column = meta.columns.get(attribute)
            if column is not None and column.type == "Owner":
                check_owner(found.table, found.values)  # enabled users in a business unit, or teams
            out[attribute] = found.id
        return out

    def _platform_rules(self, meta: Table, changes: dict[str, Any], existing: dict[str, Any] | None) -> dict[str, Any]:
        """What the platform adds to a validated write: state/status pairs and closed activities (validation.py),
        the default owner on create, createdby/modifiedby, the note size limit (files.py)."""
        changes = apply_state_rules(meta, changes, existing)
        changes = _full_name(meta, changes, existing)
        changes = self._currency(meta, changes, existing)
        check_location_urls(meta, changes, existing)
        owner = meta.columns.get("ownerid")
        if existing is None and self.default_owner and owner is not None and owner.type == "Owner" \
                and changes.get("ownerid") is None:
            changes = {**changes, "ownerid": self.default_owner}
        if changes.get("ownerid") and "owninguser" in meta.columns:  # owninguser or owningteam follows ownerid
            user = self.retrieve("systemuser", changes["ownerid"]) is not None
            changes = {**changes, "owninguser": changes["ownerid"] if user else None,
                       "owningteam": None if user else changes["ownerid"]}
        if self.default_owner:  # the caller's user: createdby on create, modifiedby on every write
            stamps = {"modifiedby": self.default_owner} | ({"createdby": self.default_owner} if existing is None else {})
            changes = {**changes, **{k: v for k, v in stamps.items() if k in meta.columns}}
        return files.check_document_size(self, meta, changes)

    def _currency(self, meta: Table, changes: dict[str, Any], existing: dict[str, Any] | None) -> dict[str, Any]:
        """A record given a money value without a currency gets the organization's base currency, as Dataverse
        sets ``transactioncurrencyid`` (Microsoft's examples return ``_transactioncurrencyid_value`` with it)."""
        if self.base_currency is None or "transactioncurrencyid" not in meta.columns or \
                (existing or {}).get("transactioncurrencyid") or changes.get("transactioncurrencyid"):
            return changes
        if not any(meta.columns[c].type == "Money" for c in changes if c in meta.columns):
            return changes
        return {**changes, "transactioncurrencyid": self.base_currency}

    def put_system_record(self, table: str, values: dict[str, Any]) -> StoredRecord:
        """Insert, unvalidated, a record the platform ships (organization, business unit, users, teams: seed.py);
        the Web API can't create most of these. ``values`` must hold the primary key."""
        meta = self.catalog.table(table)
        with self._lock, self._tx():
            rid = str(values[meta.primary_id]).lower()
            now, version = _now(), self._next_version()
            row = {**values, meta.primary_id: rid, "createdon": values.get("createdon") or now, "modifiedon": now,
                   "versionnumber": version}
            self._index_keys(meta, rid, row)
            self._conn.execute(
                "INSERT INTO records(tbl, id, data, createdon, modifiedon, versionnumber) VALUES (?,?,?,?,?,?)",
                (table, rid, json.dumps(row), row["createdon"], now, version),
            )
        return StoredRecord(table, rid, row, version)

    def _create(self, table: str, body: dict[str, Any], record_id: str | None) -> StoredRecord:
        meta = self.catalog.table(table)
        if record_id is not None:
            body = {**body, meta.primary_id: record_id}
        record = validate_write(self.catalog, table, body, operation="create")
        values = self._platform_rules(meta, {**record.values, **self._resolve_binds(meta, record.binds)}, None)
        version = self._next_version()
        rid = str(values.get(meta.primary_id) or _sequential_id(version)).lower()
        if self.retrieve(table, rid) is not None:
            raise DataverseError(412, DUPLICATE_RECORD, "Operation failed due to a SQL integrity violation.")
        now = _now()
        created = values.pop("overriddencreatedon", None)
        values.update({meta.primary_id: rid, "createdon": created or now, "modifiedon": now, "versionnumber": version})
        if created:  # L/.../import-data: createdon takes the supplied date, overriddencreatedon the import time
            values["overriddencreatedon"] = now
        self._index_keys(meta, rid, values)
        self._conn.execute(
            "INSERT INTO records(tbl, id, data, createdon, modifiedon, versionnumber) VALUES (?,?,?,?,?,?)",
            (table, rid, json.dumps(values), values["createdon"], now, version),
        )
        return StoredRecord(table, rid, values, version)

    def _update(self, existing: StoredRecord, body: dict[str, Any]) -> StoredRecord:
        meta = self.catalog.table(existing.table)
        record = validate_write(self.catalog, existing.table, body, operation="update")
        changes = {**record.values, **self._resolve_binds(meta, record.binds)}
        changes = self._platform_rules(meta, changes, existing.values)
        values = {**existing.values, **changes}
        version = self._next_version()
        values.update({"modifiedon": _now(), "versionnumber": version})
        self._index_keys(meta, existing.id, values)
        self._conn.execute(
            "UPDATE records SET data=?, modifiedon=?, versionnumber=? WHERE tbl=? AND id=?",
            (json.dumps(values), values["modifiedon"], version, existing.table, existing.id),
        )
        return StoredRecord(existing.table, existing.id, values, version)

    def _build_key_index(self, meta: Table) -> None:
        """Index existing records for keys added after they were written (the server's index job)."""
        for key in meta.keys:
            done = self._conn.execute(
                "SELECT 1 FROM keys_built WHERE tbl=? AND keyname=?", (meta.logical_name, key.schema_name)
            ).fetchone()
            if done:
                continue
            rows = self._conn.execute("SELECT id, data FROM records WHERE tbl=?", (meta.logical_name,))
            for rid, data in rows.fetchall():
                value = _key_value(key, json.loads(data))
                if value is not None:
                    self._conn.execute(
                        "INSERT OR IGNORE INTO key_index VALUES (?,?,?,?)",
                        (meta.logical_name, key.schema_name, value, rid),
                    )
            self._conn.execute("INSERT INTO keys_built VALUES (?,?)", (meta.logical_name, key.schema_name))

    def _index_keys(self, meta: Table, rid: str, values: dict[str, Any]) -> None:
        self._build_key_index(meta)
        self._conn.execute("DELETE FROM key_index WHERE tbl=? AND id=?", (meta.logical_name, rid))
        for key in meta.keys:
            value = _key_value(key, values)
            if value is None:
                continue
            try:
                self._conn.execute(
                    "INSERT INTO key_index VALUES (?,?,?,?)", (meta.logical_name, key.schema_name, value, rid)
                )
            except sqlite3.IntegrityError:
                # DuplicateRecordEntityKey, 412; Microsoft's text goes on after "already exists." (unknown).
                raise DataverseError(
                    412,
                    DUPLICATE_KEY,
                    f"Entity Key {key.schema_name} violated. A record with the same value for "
                    f"{', '.join(key.attributes)} already exists.",
                ) from None


def _full_name(meta: Table, changes: dict[str, Any], existing: dict[str, Any] | None) -> dict[str, Any]:
    """``fullname``, which Dataverse composes from the name parts (read-only to clients) in the organization's
    full-name format; "First Last", the format Microsoft's examples show (``"fullname": "Yvonne McKay (sample)"``)."""
    if "fullname" not in meta.columns or not {"firstname", "lastname"} & changes.keys():
        return changes
    merged = {**(existing or {}), **changes}
    parts = [merged.get("firstname"), merged.get("lastname")]
    return {**changes, "fullname": " ".join(p for p in parts if p) or None}


def _by_guid(column: str) -> str:
    """SQL ordering ``column`` (lower-case GUID text) as SQL Server orders uniqueidentifier: by the bytes of
    .NET's Guid.ToByteArray in the order 10-15, 8-9, 6-7, 4-5, 0-3, where the first three groups are stored
    little-endian. Dataverse's default order is the primary key's, so Microsoft's examples list 915e89f5-29fc-...
    before 03312500-2afc-... (query-data-web-api) and e9a8c72c-... before c206f534-... (join-tables)."""
    def swapped(start: int, length: int) -> str:  # a little-endian group, its bytes reversed
        return " || ".join(f"substr({column}, {start + i}, 2)" for i in range(length - 2, -2, -2))
    return ", ".join([f"substr({column}, 25, 12)", f"substr({column}, 20, 4)", swapped(15, 4), swapped(10, 4),
                      swapped(1, 8)])


def _sequential_id(version: int) -> str:
    """A new primary key that sorts after every earlier one in SQL Server's order (its last group is the store's
    version counter): Dataverse assigns sequential GUIDs, so rows ordered by primary key come back in creation order,
    as Microsoft's ``$batch`` examples show."""
    return str(uuid.UUID(f"{uuid.uuid4().hex[:20]}{version:012x}"))


def _key_value(key: AlternateKey, values: dict[str, Any]) -> str | None:
    parts = [values.get(a) for a in key.attributes]
    return None if any(p is None for p in parts) else json.dumps([fold(p) for p in parts])


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK when the body raises (the caller holds the store lock); inside an
    open transaction (:meth:`RecordStore.transaction`) a SAVEPOINT instead, so one failed write undoes only itself."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._nested = False

    def __enter__(self) -> None:
        self._nested = self._conn.in_transaction
        self._conn.execute("SAVEPOINT write" if self._nested else "BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        if self._nested:
            if exc_type:
                self._conn.execute("ROLLBACK TO write")
            self._conn.execute("RELEASE write")
        else:
            self._conn.execute("ROLLBACK" if exc_type else "COMMIT")
