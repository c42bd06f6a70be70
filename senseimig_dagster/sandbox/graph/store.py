"""Persistent drive store of the Graph stand-in: SharePoint sites, their document libraries (drives), items
(folders and files with their bytes) and upload sessions, in one SQLite file that survives a restart, as the
Dataverse emulator's store does. All writes run under one lock, one transaction each.

Names are unique per folder without regard to case (SharePoint's rule [memory]); ``name_key`` holds the casefold.
"""

from __future__ import annotations

import base64
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from senseimig_dagster.graph.quickxor import quick_xor_hash

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sites (
    id TEXT PRIMARY KEY, hostname TEXT NOT NULL, path TEXT NOT NULL, web_url TEXT NOT NULL, created REAL NOT NULL,
    UNIQUE (hostname, path));
CREATE TABLE IF NOT EXISTS drives (
    id TEXT PRIMARY KEY, site_id TEXT NOT NULL, name TEXT NOT NULL, web_url TEXT NOT NULL, root_id TEXT NOT NULL,
    created REAL NOT NULL, UNIQUE (site_id, name));
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY, drive_id TEXT NOT NULL, parent_id TEXT, name TEXT NOT NULL, name_key TEXT NOT NULL,
    is_folder INTEGER NOT NULL, size INTEGER NOT NULL, mime TEXT, qxh TEXT, content BLOB, version INTEGER NOT NULL,
    uid TEXT NOT NULL, created REAL NOT NULL, modified REAL NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS items_by_name ON items (drive_id, parent_id, name_key);
CREATE TABLE IF NOT EXISTS sessions (
    token TEXT PRIMARY KEY, drive_id TEXT NOT NULL, parent_id TEXT NOT NULL, name TEXT NOT NULL,
    conflict TEXT NOT NULL, total INTEGER, received INTEGER NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS fragments (
    token TEXT NOT NULL, start INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (token, start));
"""

_MIME = {".pdf": "application/pdf", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
         ".tif": "image/tiff", ".tiff": "image/tiff", ".dcm": "application/dicom", ".txt": "text/plain",
         ".zip": "application/zip", ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}


@dataclass(frozen=True)
class Site:
    id: str
    hostname: str
    path: str
    web_url: str
    created: float


@dataclass(frozen=True)
class Drive:
    id: str
    site_id: str
    name: str
    web_url: str
    root_id: str
    created: float


@dataclass(frozen=True)
class Item:
    id: str
    drive_id: str
    parent_id: str | None  # None for a drive's root folder
    name: str
    is_folder: bool
    size: int
    mime: str | None
    qxh: str | None
    version: int
    uid: str  # the list item's GUID, as in SharePoint's eTag "{GUID},version"
    created: float
    modified: float


@dataclass(frozen=True)
class Session:
    token: str
    drive_id: str
    parent_id: str
    name: str
    conflict: str
    total: int | None  # fixed by the first fragment's Content-Range
    received: int  # bytes [0, received) are in; fragments must arrive in order
    expires: float


class NameTaken(Exception):
    """An item of that name (any case) is already in the folder."""

    def __init__(self, existing: Item):
        super().__init__(existing.id)
        self.existing = existing


def new_item_id() -> str:
    # SharePoint drive item ids look like "01" + 32 base32 characters [observed in Microsoft's examples].
    return "01" + base64.b32encode(secrets.token_bytes(20)).decode("ascii")[:32]


def mime_type(name: str) -> str:
    dot = name.rfind(".")
    return _MIME.get(name[dot:].lower(), "application/octet-stream") if dot > 0 else "application/octet-stream"


class DriveStore:
    """Sites, drives, items and upload sessions in the SQLite file ``path`` (created if missing)."""

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # -- sites and drives -------------------------------------------------------------------------------------
    def ensure_site(self, hostname: str, path: str, libraries: tuple[str, ...]) -> Site:
        """The site at ``hostname`` + server-relative ``path`` with these document libraries, created if missing
        (ids are kept across restarts)."""
        hostname, path = hostname.lower(), "/" + path.strip("/")
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM sites WHERE hostname=? AND path=?", (hostname, path)).fetchone()
            if row is None:
                site_id = f"{hostname},{uuid.uuid4()},{uuid.uuid4()}"  # Graph's "host,siteGuid,webGuid"
                row = (site_id, hostname, path, f"https://{hostname}{path}", self.clock())
                conn.execute("INSERT INTO sites VALUES (?,?,?,?,?)", row)
            site = Site(*row)
            for library in libraries:
                if conn.execute("SELECT 1 FROM drives WHERE site_id=? AND name=?", (site.id, library)).fetchone():
                    continue
                # Document library drive ids are "b!" + 64 base64url characters [observed in Microsoft's examples].
                drive_id = "b!" + base64.urlsafe_b64encode(secrets.token_bytes(48)).decode("ascii")
                url_name = "Shared Documents" if library == "Documents" else library
                root = new_item_id()
                now = self.clock()
                conn.execute("INSERT INTO drives VALUES (?,?,?,?,?,?)",
                             (drive_id, site.id, library, f"{site.web_url}/{quote(url_name)}", root, now))
                conn.execute("INSERT INTO items VALUES (?,?,NULL,'root','root',1,0,NULL,NULL,NULL,1,?,?,?)",
                             (root, drive_id, str(uuid.uuid4()).upper(), now, now))
        return site

    def site_by_path(self, hostname: str, path: str) -> Site | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM sites WHERE hostname=? AND path=?",
                                     (hostname.lower(), "/" + path.strip("/"))).fetchone()
        return None if row is None else Site(*row)

    def site(self, site_id: str) -> Site | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM sites WHERE id=?", (site_id,)).fetchone()
        return None if row is None else Site(*row)

    def drives(self, site_id: str) -> list[Drive]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM drives WHERE site_id=? ORDER BY created, name",
                                      (site_id,)).fetchall()
        return [Drive(*r) for r in rows]

    def drive(self, drive_id: str) -> Drive | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM drives WHERE id=?", (drive_id,)).fetchone()
        return None if row is None else Drive(*row)

    # -- items --------------------------------------------------------------------------------------------------
    _ITEM_COLS = "id, drive_id, parent_id, name, is_folder, size, mime, qxh, version, uid, created, modified"

    def _item_row(self, row: tuple | None) -> Item | None:
        if row is None:
            return None
        return Item(row[0], row[1], row[2], row[3], bool(row[4]), row[5], row[6], row[7], row[8], row[9], row[10],
                    row[11])

    def item(self, drive_id: str, item_id: str) -> Item | None:
        with self._lock:
            return self._item_row(self._conn.execute(
                f"SELECT {self._ITEM_COLS} FROM items WHERE drive_id=? AND id=?", (drive_id, item_id)).fetchone())

    def child(self, drive_id: str, parent_id: str, name: str) -> Item | None:
        with self._lock:
            return self._item_row(self._conn.execute(
                f"SELECT {self._ITEM_COLS} FROM items WHERE drive_id=? AND parent_id=? AND name_key=?",
                (drive_id, parent_id, name.casefold())).fetchone())

    def children(self, drive_id: str, parent_id: str) -> list[Item]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {self._ITEM_COLS} FROM items WHERE drive_id=? AND parent_id=? ORDER BY name_key",
                (drive_id, parent_id)).fetchall()
        return [self._item_row(r) for r in rows]  # type: ignore[misc]

    def child_count(self, drive_id: str, item_id: str) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM items WHERE drive_id=? AND parent_id=?",
                                      (drive_id, item_id)).fetchone()[0]

    def path_of(self, item: Item) -> list[str]:
        """Names from the root's child down to ``item`` (empty for the root)."""
        names: list[str] = []
        current: Item | None = item
        while current is not None and current.parent_id is not None:
            names.append(current.name)
            current = self.item(current.drive_id, current.parent_id)
        return names[::-1]

    def content(self, item_id: str) -> bytes:
        with self._lock:
            row = self._conn.execute("SELECT content FROM items WHERE id=?", (item_id,)).fetchone()
        return b"" if row is None or row[0] is None else bytes(row[0])

    def free_name(self, drive_id: str, parent_id: str, name: str) -> str:
        """``name``, or ``stem 1.ext``, ``stem 2.ext``... the first not taken (conflictBehavior ``rename``)."""
        dot = name.rfind(".")
        stem, ext = (name[:dot], name[dot:]) if dot > 0 else (name, "")
        candidate, n = name, 0
        while self.child(drive_id, parent_id, candidate) is not None:
            n += 1
            candidate = f"{stem} {n}{ext}"
        return candidate

    def create_folder(self, drive_id: str, parent_id: str, name: str) -> Item:
        """A new folder; :class:`NameTaken` when the name (any case) is in use."""
        with self._tx() as conn:
            existing = self.child(drive_id, parent_id, name)
            if existing is not None:
                raise NameTaken(existing)
            item_id, now = new_item_id(), self.clock()
            conn.execute("INSERT INTO items VALUES (?,?,?,?,?,1,0,NULL,NULL,NULL,1,?,?,?)",
                         (item_id, drive_id, parent_id, name, name.casefold(), str(uuid.uuid4()).upper(), now, now))
        return self.item(drive_id, item_id)  # type: ignore[return-value]

    def put_file(self, drive_id: str, parent_id: str, name: str, data: bytes, conflict: str) -> tuple[Item, bool]:
        """Write a file; returns it and whether it was created (False: an existing file's content was replaced).
        ``conflict`` is Graph's conflictBehavior: ``fail`` raises :class:`NameTaken`, ``rename`` picks a free
        name, ``replace`` overwrites a file (a folder of that name is never replaced: :class:`NameTaken`)."""
        with self._tx() as conn:
            existing = self.child(drive_id, parent_id, name)
            if existing is not None and conflict == "rename":
                name, existing = self.free_name(drive_id, parent_id, name), None
            if existing is not None and (conflict == "fail" or existing.is_folder):
                raise NameTaken(existing)
            now, qxh = self.clock(), quick_xor_hash(data)
            if existing is not None:
                conn.execute("UPDATE items SET size=?, qxh=?, content=?, version=version+1, modified=? WHERE id=?",
                             (len(data), qxh, data, now, existing.id))
                item_id = existing.id
            else:
                item_id = new_item_id()
                conn.execute("INSERT INTO items VALUES (?,?,?,?,?,0,?,?,?,?,1,?,?,?)",
                             (item_id, drive_id, parent_id, name, name.casefold(), len(data), mime_type(name), qxh,
                              data, str(uuid.uuid4()).upper(), now, now))
        return self.item(drive_id, item_id), existing is None  # type: ignore[return-value]

    def delete_item(self, drive_id: str, item_id: str) -> bool:
        """Delete an item and, for a folder, everything under it. False when there was no such item."""
        with self._tx() as conn:
            if self.item(drive_id, item_id) is None:
                return False
            doomed, frontier = [item_id], [item_id]
            while frontier:
                marks = ",".join("?" * len(frontier))
                frontier = [r[0] for r in conn.execute(
                    f"SELECT id FROM items WHERE drive_id=? AND parent_id IN ({marks})", (drive_id, *frontier))]
                doomed.extend(frontier)
            for start in range(0, len(doomed), 500):
                part = doomed[start:start + 500]
                conn.execute(f"DELETE FROM items WHERE id IN ({','.join('?' * len(part))})", part)
        return True

    # -- upload sessions ------------------------------------------------------------------------------------------
    def create_session(self, drive_id: str, parent_id: str, name: str, conflict: str, lifetime: float) -> Session:
        token = secrets.token_urlsafe(32)
        with self._tx() as conn:
            conn.execute("INSERT INTO sessions VALUES (?,?,?,?,?,NULL,0,?)",
                         (token, drive_id, parent_id, name, conflict, self.clock() + lifetime))
        return self.session(token)  # type: ignore[return-value]

    def session(self, token: str) -> Session | None:
        """The session, or None when unknown, cancelled, completed or expired (expired ones are purged)."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM sessions WHERE token=?", (token,)).fetchone()
            if row is not None and row[7] <= self.clock():
                self.drop_session(token)
                return None
        return None if row is None else Session(*row)

    def add_fragment(self, token: str, start: int, data: bytes, total: int, lifetime: float) -> Session:
        """Record bytes ``[start, start+len)``; each fragment extends the expiry (Microsoft: "Each fragment
        uploaded during the session extends the expiration time")."""
        with self._tx() as conn:
            conn.execute("INSERT INTO fragments VALUES (?,?,?)", (token, start, data))
            conn.execute("UPDATE sessions SET total=?, received=?, expires=? WHERE token=?",
                         (total, start + len(data), self.clock() + lifetime, token))
        return self.session(token)  # type: ignore[return-value]

    def session_bytes(self, token: str) -> bytes:
        with self._lock:
            rows = self._conn.execute("SELECT data FROM fragments WHERE token=? ORDER BY start", (token,)).fetchall()
        return b"".join(bytes(r[0]) for r in rows)

    def drop_session(self, token: str) -> bool:
        with self._tx() as conn:
            conn.execute("DELETE FROM fragments WHERE token=?", (token,))
            return conn.execute("DELETE FROM sessions WHERE token=?", (token,)).rowcount > 0
