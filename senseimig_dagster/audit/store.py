"""The local audit store: its own DuckDB file (``settings.audit_path()``), encrypted at rest with the stores' key
(``SENSEIMIG_STORE_KEY``, or ``SENSEIMIG_AUDIT_KEY`` for a key of its own), resolved through Dagster's ``EnvVar``
by the ``AuditStore`` resource and never logged. How DuckDB encrypts, and where its OpenSSL comes from:
``privacy/encryption.py``. The audit file is separate from the migration's store, so its before-images can be kept
(and their key held) apart.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from senseimig_dagster.privacy.encryption import StoreKeyError, open_store

ALIAS = "audit_db"
KEY_ENV = "SENSEIMIG_AUDIT_KEY"
AuditStoreError = StoreKeyError  # the audit store could not be opened; the message never carries the key


def open_audit(path: str | Path, key: str | None = None, *, read_only: bool = False,
               allow_unsafe_crypto: bool = False) -> duckdb.DuckDBPyConnection:
    """A connection whose default database is the audit file (so ``audit.writes`` resolves there)."""
    return open_store(path, key, alias=ALIAS, read_only=read_only, allow_unsafe_crypto=allow_unsafe_crypto,
                      what="audit store")
