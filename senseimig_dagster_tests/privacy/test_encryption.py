"""The local stores encrypted at rest: DuckDB's encryption with OpenSSL from PyPI's httpfs package, loaded offline
by path; one shared instance per file within a process; a key required for a real environment unless the
test-tenant opt-out is spelled out (and then loudly logged); the sandbox's key kept beside the data."""

from __future__ import annotations

import stat
from pathlib import Path

import duckdb
import pytest

from senseimig_dagster.privacy.encryption import (
    KEY_ENV,
    OPT_OUT_ENV,
    OPT_OUT_VALUE,
    StoreKeyError,
    connection,
    digest_key,
    httpfs_extension,
    key_beside,
    usable_key,
)
from senseimig_dagster.resources import build_resources

PHI = "Quillfeather-Zebediah"
KEY = "a-test-key~'with a quote"


def test_httpfs_comes_from_the_installed_package_and_loads_without_network() -> None:
    path = httpfs_extension()
    assert path is not None and path.exists(), "duckdb-ext-httpfs for this DuckDB version is not installed"
    with duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}) as conn:
        conn.execute(f"LOAD '{path}'")
        assert conn.execute("SELECT loaded FROM duckdb_extensions() WHERE extension_name = 'httpfs'").fetchone()[0]


def test_an_encrypted_store_holds_no_plaintext_and_opens_only_with_its_key(tmp_path: Path) -> None:
    path = tmp_path / "store.duckdb"
    with connection(path, KEY, alias="s") as conn:  # strong crypto: no unsafe fallback allowed
        conn.execute("CREATE SCHEMA staging; CREATE TABLE staging.patient AS SELECT ? AS last_name "
                     "FROM range(1000)", [PHI])
        with connection(path, KEY, alias="s") as other:  # a second user in the process shares the instance
            assert other.execute("SELECT count(*) FROM staging.patient").fetchone()[0] == 1000
        conn.execute("CHECKPOINT")
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert PHI.encode() not in data
    with pytest.raises(duckdb.Error, match="encrypt"):
        duckdb.connect(str(path))
    with pytest.raises(StoreKeyError) as caught, connection(path, "Xq9-not-the-key", alias="s", read_only=True):
        pass
    assert "Xq9" not in str(caught.value) and KEY not in str(caught.value)
    with connection(path, KEY, alias="s", read_only=True) as conn:
        assert conn.execute("SELECT DISTINCT last_name FROM staging.patient").fetchone()[0] == PHI


def test_a_real_environment_refuses_a_store_without_a_key_naming_the_variable() -> None:
    with pytest.raises(StoreKeyError, match=KEY_ENV):
        usable_key(None, required=True, opted_out=False, store="migration store", warn=print)
    assert usable_key(None, required=False, opted_out=False, store="x", warn=print) is None  # the sandbox
    assert usable_key("k", required=True, opted_out=False, store="x", warn=print) == "k"


def test_the_opt_out_is_explicit_and_loud() -> None:
    said: list[str] = []
    for _ in range(2):
        assert usable_key(None, required=True, opted_out=True, store="opt-out store", warn=said.append) is None
    assert len(said) == 1 and "UNENCRYPTED" in said[0] and OPT_OUT_ENV in said[0]


def test_resources_for_a_real_environment_require_the_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATAVERSE_URL", "https://org.crm.dynamics.com")
    for name in (KEY_ENV, OPT_OUT_ENV, "SENSEIMIG_AUDIT_KEY"):
        monkeypatch.delenv(name, raising=False)
    resources = build_resources(str(tmp_path / "db.duckdb"))
    for key in ("store", "audit"):
        with pytest.raises(StoreKeyError, match=KEY_ENV), resources[key].connect():
            pass
    assert not (tmp_path / "db.duckdb").exists()  # refused before anything was written
    monkeypatch.setenv(OPT_OUT_ENV, "yes")  # only the spelled-out value opts out
    with pytest.raises(StoreKeyError), build_resources(str(tmp_path / "db.duckdb"))["store"].connect():
        pass
    monkeypatch.setenv(OPT_OUT_ENV, OPT_OUT_VALUE)
    with build_resources(str(tmp_path / "db.duckdb"))["store"].connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    monkeypatch.setenv(KEY_ENV, KEY)
    store = build_resources(str(tmp_path / "enc.duckdb"))["store"]
    assert KEY not in repr(store)
    with store.process_config_and_initialize().connect() as conn:
        conn.execute(f"CREATE TABLE t AS SELECT '{PHI}' AS v")
    assert PHI.encode() not in (tmp_path / "enc.duckdb").read_bytes()


def test_the_sandbox_key_is_made_once_owner_only_beside_the_data(tmp_path: Path) -> None:
    key = key_beside(tmp_path)
    assert key == key_beside(tmp_path) and len(key) >= 32
    assert stat.S_IMODE((tmp_path / "store.key").stat().st_mode) == 0o600
    assert digest_key(key) != digest_key(key + "x") and len(digest_key(key)) == 32
