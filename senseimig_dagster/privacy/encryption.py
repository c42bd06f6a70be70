"""Encryption at rest of the migration's local DuckDB stores (the main store and the audit store), and the keyed
digests that live with their key.

DuckDB encrypts a database attached with a key (``ATTACH 'path' AS alias (ENCRYPTION_KEY '...')``, AES-GCM;
https://duckdb.org/docs/stable/sql/statements/attach). Writing securely needs OpenSSL from the ``httpfs``
extension: DuckDB's built-in mbedtls is read-only unless ``force_mbedtls_unsafe``, which DuckDB calls "NOT securely
encrypted". DuckDB downloads extensions from its own site, unreachable from a locked-down machine, so the project
depends on PyPI's ``duckdb-ext-httpfs`` (built for one DuckDB version: pyproject pins both) and loads the extension
from that package's folder by path: no network.

The key is a secret (``SENSEIMIG_STORE_KEY``, taken as Dagster ``EnvVar``): it never reaches a log or an exception;
DuckDB's parser errors quote the statement, so only their class is reported.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

KEY_ENV = "SENSEIMIG_STORE_KEY"
STORE_ALIAS = "senseimig"  # the migration store's catalog name once attached (the audit store's: audit_db)
# Set to this exact value to run a real tenant with plaintext stores (a test tenant only): loudly logged.
OPT_OUT_ENV, OPT_OUT_VALUE = "SENSEIMIG_PLAINTEXT_STORES", "i-accept-plaintext-phi"
_DIGEST_CONTEXT = b"senseimig column digests v1"
UPGRADE_COMMAND = "senseimig store upgrade"


class StoreKeyError(Exception):
    """A store could not be opened, or may not be opened without a key; the message never carries the key."""


def missing_key_message(store: str) -> str:
    return (f"the {store} holds PHI and this migration points at a real Dataverse environment: set {KEY_ENV} to an "
            f"encryption key for the local stores (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            f", kept in your secret store), or, for a test tenant only, {OPT_OUT_ENV}={OPT_OUT_VALUE}")


_WARNED: set[str] = set()


def usable_key(key: str | None, *, required: bool, opted_out: bool, store: str,
               warn: Callable[[str], None]) -> str | None:
    """The key to open ``store`` with: ``key``; None (plaintext) only when no key is ``required`` (a sandbox) or the
    test-tenant opt-out is spelled out, which ``warn`` reports loudly once per process and store."""
    if key or not required:
        return key
    if not opted_out:
        raise StoreKeyError(missing_key_message(store))
    if store not in _WARNED:
        _WARNED.add(store)
        warn(f"PLAINTEXT {store.upper()}: {OPT_OUT_ENV} is set, so the {store} is written UNENCRYPTED although this "
             "migration points at a real Dataverse environment. Use this for a test tenant only.")
    return None


def httpfs_extension() -> Path | None:
    """The ``httpfs`` extension file PyPI's ``duckdb-ext-httpfs`` installed for this DuckDB and platform."""
    spec = importlib.util.find_spec("duckdb_ext")
    if spec is None or not spec.submodule_search_locations:
        return None
    platform = duckdb.execute("PRAGMA platform").fetchone()[0]
    for base in spec.submodule_search_locations:
        path = Path(base) / "extensions" / f"v{duckdb.__version__}" / platform / "httpfs.duckdb_extension"
        if path.exists():
            return path
    return None


def load_strong_crypto(conn: duckdb.DuckDBPyConnection, allow_unsafe: bool = False) -> None:
    """OpenSSL for DuckDB's encryption: ``httpfs`` from the PyPI package (offline), else one installed with
    ``INSTALL httpfs``; ``allow_unsafe`` (tests only) falls back to DuckDB's mbedtls."""
    path = httpfs_extension()
    try:
        conn.execute(f"LOAD '{_literal(str(path))}'" if path else "LOAD httpfs")
        return
    except duckdb.Error:
        if not allow_unsafe:
            raise StoreKeyError("writing an encrypted store needs DuckDB's httpfs extension: install the "
                                "duckdb-ext-httpfs package that matches DuckDB (pyproject pins both)") from None
    conn.execute("SET force_mbedtls_unsafe = 'true'")


def open_store(path: str | Path, key: str | None, *, alias: str, read_only: bool = False,
               allow_unsafe_crypto: bool = False, what: str = "store") -> duckdb.DuckDBPyConnection:
    """A connection whose default database is the file at ``path`` (so ``schema.table`` resolves there),
    encrypted with ``key`` when one is given; spilled temporary data is encrypted too."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = duckdb.connect()
    options = ["READ_ONLY"] if read_only else []
    try:
        if key:
            # OpenSSL for reads too: DuckDB's built-in mbedtls decrypts a read-only store ~25x slower.
            load_strong_crypto(conn, allow_unsafe_crypto or read_only)
            if not read_only:
                conn.execute("SET temp_file_encryption = true")
            # ATTACH takes no bound parameters; quotes doubled so the key can never break out of its literal.
            options.insert(0, "ENCRYPTION_KEY '" + key.replace("'", "''") + "'")
        suffix = f" ({', '.join(options)})" if options else ""
        conn.execute(f"ATTACH '{_literal(str(path))}' AS {alias}{suffix}")
        conn.execute(f"USE {alias}")
    except StoreKeyError:
        conn.close()
        raise
    except duckdb.Error as exc:
        conn.close()
        if key and is_plaintext(path):
            raise StoreKeyError(f"the {what} {path} is not encrypted, but a key is set: encrypt it once with "
                                f"`{UPGRADE_COMMAND}` (it copies the store into an encrypted file, checks the copy "
                                "and only then removes the unencrypted one)") from None
        raise StoreKeyError(f"cannot open the {what} {path} ({type(exc).__name__}): wrong or missing key, an "
                            "encrypted file without httpfs, or the file is in use") from None
    return conn


def is_plaintext(path: str | Path) -> bool:
    """Whether ``path`` is an unencrypted DuckDB file. DuckDB's main header (``storage_info.hpp``, ``MainHeader``):
    a checksum, the magic ``DUCK`` at byte 8, the storage version, then flags whose bit 0 marks an encrypted file."""
    try:
        with open(path, "rb") as fh:
            header = fh.read(28)
    except OSError:
        return False
    return len(header) == 28 and header[8:12] == b"DUCK" and not int.from_bytes(header[20:28], "little") & 1


@dataclass
class _Shared:
    root: duckdb.DuckDBPyConnection
    alias: str
    read_only: bool
    users: int = 0


_SHARED: dict[str, _Shared] = {}
_LOCK = threading.Lock()


@contextmanager
def connection(path: str | Path, key: str | None, *, alias: str, read_only: bool = False,
               allow_unsafe_crypto: bool = False, what: str = "store",
               attach_plain: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the store at ``path``, encrypted with ``key`` when given, closed on exit.

    Without a key this is ``duckdb.connect(path)``, whose instance cache lets several connections of one process
    share the file (``attach_plain``: attached as ``alias`` instead, for a file whose name is also one of its
    schemas' - ``audit.duckdb`` holds ``audit.writes``). With a key the file is attached to an in-memory instance;
    that instance is shared here (one per file, a cursor per caller, closed with its last user), because two
    instances attaching one file would each take it for their own."""
    if not key:
        conn = (open_store(path, None, alias=alias, read_only=read_only, what=what) if attach_plain
                else duckdb.connect(str(path), read_only=read_only))
        try:
            yield conn
        finally:
            conn.close()
        return
    name = str(Path(path).resolve())
    with _LOCK:
        shared = _SHARED.get(name)
        if shared is not None and shared.read_only and not read_only:
            raise StoreKeyError(f"the {what} {path} is open read-only in this process; close it before writing")
        if shared is None:
            root = open_store(path, key, alias=alias, read_only=read_only, allow_unsafe_crypto=allow_unsafe_crypto,
                              what=what)
            shared = _SHARED[name] = _Shared(root, alias, read_only)
        shared.users += 1
        cursor = shared.root.cursor()
    try:
        cursor.execute(f"USE {shared.alias}")
        yield cursor
    finally:
        cursor.close()
        with _LOCK:
            shared.users -= 1
            if shared.users == 0:
                shared.root.close()
                _SHARED.pop(name, None)


def new_key() -> str:
    return secrets.token_urlsafe(32)


def key_beside(folder: str | Path, name: str = "store.key") -> str:
    """The key kept in ``folder/name`` (owner-only), made on first use: the sandbox's stores are encrypted by
    default with a key that stays beside their data."""
    path = Path(folder) / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(new_key())
    return path.read_text().strip()


def digest_key(key: str) -> bytes:
    """The HMAC key of the load's column digests, derived from the store key: kept with it, never stored."""
    return hmac.new(key.encode("utf-8"), _DIGEST_CONTEXT, hashlib.sha256).digest()


def keyed_digest(data: bytes, key: bytes | None) -> str:
    """The hex digest the load keeps of values it sent: HMAC-SHA256 under ``key`` (:func:`digest_key`), so a short
    value (an SSN's last four, a birth date) cannot be recovered by hashing every candidate; plain SHA-256 without
    a key (a plaintext sandbox store)."""
    return (hmac.new(key, data, hashlib.sha256) if key else hashlib.sha256(data)).hexdigest()


def _literal(text: str) -> str:
    return text.replace("'", "''")
