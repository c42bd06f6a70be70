"""Encrypting a store made before a key was set (``senseimig store upgrade``): an unencrypted DuckDB file is copied
into an encrypted one with ``COPY FROM DATABASE`` (https://duckdb.org/docs/stable/sql/statements/copy#copy-from-database--to),
the copy is checked table by table (row counts), and only then replaces the unencrypted file. Until that moment
the unencrypted store is untouched, so a failed or interrupted upgrade loses nothing.

The old file is deleted, not overwritten: on a journaling file system or an SSD an overwrite does not reach the old
blocks, so the disk itself should be encrypted too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from senseimig_dagster.privacy.encryption import is_plaintext, load_strong_crypto

_PLAIN, _ENCRYPTED = "plain_store", "encrypted_store"


class StoreUpgradeError(Exception):
    """The store could not be encrypted; the unencrypted store is kept as it was. Never carries the key."""


@dataclass(frozen=True)
class Upgraded:
    path: Path
    rows: dict[str, int]  # schema.table -> rows, the same in the unencrypted store and its encrypted copy


def encrypt_store(path: str | Path, key: str, *, allow_unsafe_crypto: bool = False,
                  after_copy: Callable[[duckdb.DuckDBPyConnection], None] | None = None) -> Upgraded:
    """Replace the unencrypted store at ``path`` by an encrypted copy under ``key``. ``after_copy`` runs on the
    encrypted copy (its default catalog) once the copy is verified, before it replaces the original."""
    path = Path(path)
    if not is_plaintext(path):
        raise StoreUpgradeError(f"{path} is not an unencrypted DuckDB store (absent, or already encrypted)")
    copy = path.with_name(path.name + ".encrypting")
    _remove(copy)  # a copy left by an interrupted upgrade
    conn = duckdb.connect()
    try:
        load_strong_crypto(conn, allow_unsafe_crypto)
        conn.execute("SET temp_file_encryption = true")
        conn.execute(f"ATTACH '{_literal(path)}' AS {_PLAIN}")
        # ATTACH takes no bound parameters; quotes doubled so the key can never break out of its literal.
        conn.execute(f"ATTACH '{_literal(copy)}' AS {_ENCRYPTED} (ENCRYPTION_KEY '" + key.replace("'", "''") + "')")
        conn.execute(f"COPY FROM DATABASE {_PLAIN} TO {_ENCRYPTED}")
        rows, copied = _row_counts(conn, _PLAIN), _row_counts(conn, _ENCRYPTED)
        differ = sorted(t for t, n in rows.items() if copied.get(t) != n)
        if differ:
            raise StoreUpgradeError(f"the encrypted copy of {path} differs in {', '.join(differ)}: the unencrypted "
                                    "store is kept as it was")
        if after_copy is not None:
            conn.execute(f"USE {_ENCRYPTED}")
            after_copy(conn)
        conn.execute(f"CHECKPOINT {_PLAIN}")  # its write-ahead log folded in: nothing of it is left beside the file
        conn.execute(f"CHECKPOINT {_ENCRYPTED}")
    except duckdb.Error as exc:
        conn.close()
        _remove(copy)
        raise StoreUpgradeError(f"cannot encrypt {path} ({type(exc).__name__}): is it in use by a run or the UI?"
                                ) from None
    except BaseException:
        conn.close()
        _remove(copy)
        raise
    conn.close()
    if path.with_name(path.name + ".wal").exists():  # never pair the encrypted file with the old file's log
        _remove(copy)
        raise StoreUpgradeError(f"{path} still has a write-ahead log: is it in use by a run or the UI?")
    os.replace(copy, path)
    return Upgraded(path, rows)


def _row_counts(conn: duckdb.DuckDBPyConnection, catalog: str) -> dict[str, int]:
    tables = conn.execute("SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ? "
                          "AND NOT temporary ORDER BY ALL", [catalog]).fetchall()
    return {f"{schema}.{table}": conn.execute(f'SELECT count(*) FROM {catalog}."{schema}"."{table}"').fetchone()[0]
            for schema, table in tables}


def _remove(path: Path) -> None:
    for leftover in (path, path.with_name(path.name + ".wal")):
        leftover.unlink(missing_ok=True)


def _literal(path: Path) -> str:
    return str(path).replace("'", "''")
