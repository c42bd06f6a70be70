"""``senseimig store upgrade``: an unencrypted store is copied into an encrypted one, checked table by table, and
only then replaces the unencrypted file; a failure keeps the unencrypted store as it was. Opening a plaintext store
with a key names the command; the command marks the journal's unkeyed digests and leaves encrypted stores alone."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from senseimig_dagster.audit.log import AuditLog
from senseimig_dagster.cli import main
from senseimig_dagster.load.journal import ensure_journal
from senseimig_dagster.privacy.encryption import (
    KEY_ENV,
    UPGRADE_COMMAND,
    StoreKeyError,
    connection,
    is_plaintext,
)
from senseimig_dagster.privacy.upgrade import StoreUpgradeError, encrypt_store
from senseimig_dagster.resources import AuditStore

PHI = "Quillfeather-Zebediah"
KEY = "a-test-key~'with a quote"


def _plaintext_store(path: Path) -> None:
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE SCHEMA raw; CREATE TABLE raw.patient AS SELECT range AS id, ? AS last_name "
                     "FROM range(1000)", [PHI])
        conn.execute("CREATE SCHEMA staging; CREATE TABLE staging.quarantine (source_id VARCHAR)")
        ensure_journal(conn)


def test_an_unencrypted_store_is_replaced_by_a_verified_encrypted_copy(tmp_path: Path) -> None:
    path = tmp_path / "senseimig.duckdb"
    _plaintext_store(path)
    with pytest.raises(StoreKeyError, match=UPGRADE_COMMAND), connection(path, KEY, alias="s"):
        pass  # a key set over a plaintext store: the error says what to run
    done = encrypt_store(path, KEY, after_copy=lambda conn: conn.execute("CREATE TABLE staging.marker (x INT)"))
    assert done.rows["raw.patient"] == 1000 and done.rows["staging.quarantine"] == 0
    assert "load.journal" in done.rows
    assert not is_plaintext(path) and sorted(p.name for p in tmp_path.iterdir()) == ["senseimig.duckdb"]
    assert PHI.encode() not in path.read_bytes()
    with connection(path, KEY, alias="s", read_only=True) as conn:
        assert conn.execute("SELECT count(*), min(last_name) FROM raw.patient").fetchone() == (1000, PHI)
        assert conn.execute("SELECT count(*) FROM staging.marker").fetchone() == (0,)  # after_copy ran on it
    with pytest.raises(StoreUpgradeError, match="already encrypted"):
        encrypt_store(path, KEY)


def test_a_failed_upgrade_keeps_the_unencrypted_store_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "senseimig.duckdb"
    _plaintext_store(path)
    before = path.read_bytes()

    def fail(conn: duckdb.DuckDBPyConnection) -> None:
        conn.execute("SELECT * FROM no_such_table")

    with pytest.raises(StoreUpgradeError, match="cannot encrypt"):
        encrypt_store(path, KEY, after_copy=fail)
    assert is_plaintext(path) and path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["senseimig.duckdb"]  # no copy left behind


def test_the_command_encrypts_both_stores_and_marks_the_unkeyed_digests(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    store, audit = tmp_path / "senseimig.duckdb", tmp_path / "audit.duckdb"
    _plaintext_store(store)
    with AuditStore(path=str(audit)).connect() as conn:
        AuditLog(conn).intend("run-1", "dataverse/patient", "contact", "contacts", [("p1", "create")])
    monkeypatch.delenv(KEY_ENV, raising=False)
    args = ["store", "upgrade", "--duckdb", str(store), "--audit-db", str(audit)]
    assert main(args) == 1 and is_plaintext(store)  # no key: nothing to encrypt with
    assert KEY_ENV in capsys.readouterr().err
    monkeypatch.setenv(KEY_ENV, KEY)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "migration store" in out and "audit store" in out and KEY not in out
    assert not is_plaintext(store) and not is_plaintext(audit)
    with connection(store, KEY, alias="s", read_only=True) as conn:
        assert conn.execute('SELECT count(*) FROM load.unkeyed_digests').fetchone() == (1,)
    with AuditStore(path=str(audit), key=KEY).connect(read_only=True) as conn:
        assert [w.source_id for w in AuditLog(conn).writes()] == ["p1"]
    assert main(args) == 0 and "encrypted already" in capsys.readouterr().out
