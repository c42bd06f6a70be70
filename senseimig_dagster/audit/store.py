"""The local audit store: its own DuckDB file (``settings.audit_path()``), encrypted at rest when a key is configured
(``SENSEIMIG_AUDIT_KEY``, resolved through Dagster's ``EnvVar`` by the ``AuditStore`` resource and never logged).

Encryption is DuckDB's own (``ATTACH 'path' AS audit_db (ENCRYPTION_KEY '...')``, DuckDB >= 1.4, AES-GCM by
default; duckdb.org/docs/stable/sql/statements/attach). DuckDB 1.5 writes encrypted files only with OpenSSL from
the ``httpfs`` extension loaded; its built-in mbedtls module is read-only unless ``force_mbedtls_unsafe`` is set,
which DuckDB itself calls "NOT securely encrypted" (verified here with DuckDB 1.5.6). So :func:`open_audit` loads
``httpfs`` (install it once with ``INSTALL httpfs``) and refuses to write without it unless ``allow_unsafe_crypto``
(sandbox and tests only). The audit file is separate from Dagster's DuckDB store, so the encrypted attach never
meets the ``DuckDBResource`` connection.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

ALIAS = "audit_db"
KEY_ENV = "SENSEIMIG_AUDIT_KEY"


class AuditStoreError(Exception):
    """The audit store could not be opened; the message never carries the key."""


def open_audit(path: str | Path, key: str | None = None, *, read_only: bool = False,
               allow_unsafe_crypto: bool = False) -> duckdb.DuckDBPyConnection:
    """A connection whose default database is the audit file (so ``audit.writes`` resolves there)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = duckdb.connect()
    options = ["READ_ONLY"] if read_only else []
    try:
        if key:
            if not read_only:
                _load_strong_crypto(conn, allow_unsafe_crypto)
            # ATTACH takes no bound parameters; quotes doubled so the key can never break out of its literal.
            options.insert(0, "ENCRYPTION_KEY '" + key.replace("'", "''") + "'")
        suffix = f" ({', '.join(options)})" if options else ""
        conn.execute(f"ATTACH '{_literal(str(path))}' AS {ALIAS}{suffix}")
        conn.execute(f"USE {ALIAS}")
    except duckdb.Error as exc:
        conn.close()
        # DuckDB's parser errors quote the statement (and so the key): only the error class goes out.
        raise AuditStoreError(f"cannot open the audit store {path} ({type(exc).__name__}): wrong or missing key, "
                              "or an encrypted file without httpfs") from None
    return conn


def _load_strong_crypto(conn: duckdb.DuckDBPyConnection, allow_unsafe: bool) -> None:
    try:
        conn.execute("LOAD httpfs")
    except duckdb.Error:
        if not allow_unsafe:
            raise AuditStoreError("writing an encrypted audit store needs DuckDB's httpfs extension (run "
                                  "INSTALL httpfs once) or allow_unsafe_crypto for a sandbox") from None
        conn.execute("SET force_mbedtls_unsafe = 'true'")


def _literal(text: str) -> str:
    return text.replace("'", "''")
