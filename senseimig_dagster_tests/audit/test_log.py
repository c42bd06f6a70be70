"""The audit log: append-only (no statement ever updates or deletes a row), outcome = latest row, export to CSV and
Parquet, and the audit store encrypted at rest with DuckDB's own encryption."""

from __future__ import annotations

import csv
import stat
from pathlib import Path
from typing import Any

import duckdb
import pytest

from senseimig_dagster.audit.log import COLUMNS, AuditLog, AuditOutcome, before_image
from senseimig_dagster.audit.store import AuditStoreError, open_audit
from senseimig_dagster.privacy import encryption
from senseimig_dagster.resources import AuditStore

PHI = "Zebediah-Quillfeather"  # a before-image value that must never be readable from the file without the key


class Recording:
    """A connection proxy that records every SQL statement the log sends."""

    def __init__(self, conn: duckdb.DuckDBPyConnection):
        self.conn, self.statements = conn, []

    def execute(self, sql: str, *args: Any) -> Any:
        self.statements.append(sql)
        return self.conn.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> Any:
        self.statements.append(sql)
        return self.conn.executemany(sql, *args)


def _fill(log: AuditLog) -> None:
    batch = log.intend("run-1", "dataverse/patient", "contact", "contacts",
                       [("p1", "create"), ("p2", "create"), (None, "update", "0f6c1a2e-0000-4000-8000-000000000001",
                                                             {"lastname": PHI})])
    log.record(batch, [AuditOutcome("p1", "0f6c1a2e-0000-4000-8000-000000000002", "create", "ok", after_version="7"),
                       AuditOutcome("p2", None, "create", "failed", "0x80044331")])


def test_the_log_only_ever_inserts_and_row_counts_only_grow() -> None:
    conn = Recording(duckdb.connect())
    log = AuditLog(conn)  # type: ignore[arg-type]
    counts = [log.count()]
    for _ in range(3):
        _fill(log)
        log.writes()
        log.undone()
        log.source_ids("contact", "dataverse/patient")
        counts.append(log.count())
    assert counts == sorted(counts) and len(set(counts)) == 4
    written = [s.upper() for s in conn.statements]
    assert not any(s.lstrip().startswith(("UPDATE", "DELETE", "TRUNCATE", "DROP")) or " SET " in s for s in written)
    public = {name for name in dir(AuditLog) if not name.startswith("_")}
    assert public == {"intend", "record", "writes", "created", "updated", "undone", "count", "export", "source_ids"}


def test_a_writes_state_is_its_latest_row_and_an_intent_without_outcome_stays_pending() -> None:
    log = AuditLog(duckdb.connect())
    _fill(log)
    by_source = {w.source_id: w for w in log.writes()}
    assert by_source["p1"].outcome == "ok" and by_source["p1"].after_version == "7"
    assert by_source["p2"].outcome == "failed" and by_source["p2"].error_code == "0x80044331"
    assert by_source[None].outcome == "pending" and by_source[None].before == {"lastname": PHI}
    assert [w.source_id for w in log.created("contact")] == ["p1"]  # the failed create is not ours to undo
    assert [w.dataverse_id for w in log.updated("contact")] == ["0f6c1a2e-0000-4000-8000-000000000001"]
    assert PHI not in repr(AuditOutcome("p", None, "update", "ok", before={"lastname": PHI}))
    with pytest.raises(ValueError, match="unknown operation"):
        log.record(log.intend("r", "a", "contact", "contacts", []), [AuditOutcome("p", None, "upsert", "ok")])  # type: ignore[arg-type]


def test_before_image_restores_plain_columns_and_lookups_as_binds() -> None:
    current = {"firstname": "Pat", "_smig_preferreddentistid_value": None, "_parentcustomerid_value": "abc"}
    changes = {"firstname": "Patricia", "smig_PreferredDentistId@odata.bind": "/contacts(x)",
               "parentcustomerid_account@odata.bind": "/accounts(y)"}
    lookups = {"smig_PreferredDentistId@odata.bind": ("_smig_preferreddentistid_value", "contacts"),
               "parentcustomerid_account@odata.bind": ("_parentcustomerid_value", "accounts")}
    assert before_image(current, changes, lookups) == {
        "firstname": "Pat", "smig_PreferredDentistId@odata.bind": None,
        "parentcustomerid_account@odata.bind": "/accounts(abc)"}


@pytest.mark.parametrize("format", ["csv", "parquet"])
def test_export_writes_every_row_in_order(tmp_path: Path, format: str) -> None:
    log = AuditLog(duckdb.connect())
    _fill(log)
    target = tmp_path / f"audit.{format}"
    assert log.export(target, format) == 5  # type: ignore[arg-type]
    reader = "read_csv" if format == "csv" else "read_parquet"
    rows = duckdb.sql(f"SELECT * FROM {reader}('{target}')")
    assert tuple(rows.columns) == COLUMNS
    seqs = [r[0] for r in rows.fetchall()]
    assert len(seqs) == 5 and seqs == sorted(seqs)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # PHI: owner-only


def test_the_csv_export_writes_formula_cells_as_text(tmp_path: Path) -> None:
    log = AuditLog(duckdb.connect())
    log.intend("run-1", "dataverse/patient", "contact", "contacts", [("=HYPERLINK(1)", "create"), ("+61", "create")])
    target = tmp_path / "audit.csv"
    log.export(target)
    with target.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["source_id"] for r in rows] == ["'=HYPERLINK(1)", "'+61"]
    assert [r["operation"] for r in rows] == ["create", "create"]


def test_the_store_is_encrypted_at_rest_and_opens_only_with_its_key(tmp_path: Path) -> None:
    path = tmp_path / "audit.duckdb"
    store = AuditStore(path=str(path), key="k'3y-Value~not-logged")  # OpenSSL from the httpfs package
    with store.connect() as conn:
        _fill(AuditLog(conn))
        conn.execute("CHECKPOINT")
    assert PHI.encode() not in path.read_bytes()
    with pytest.raises(duckdb.Error, match="encrypted"):
        duckdb.connect(str(path))
    for key in (None, "wrong-key"):
        with pytest.raises(AuditStoreError) as caught:
            open_audit(path, key, read_only=True)
        assert "k'3y" not in str(caught.value)
    with store.connect(read_only=True) as conn:
        assert AuditLog(conn).writes()[-1].before == {"lastname": PHI}


def test_an_unencrypted_store_is_plain_duckdb_and_an_encrypted_write_needs_strong_crypto(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with AuditStore(path=str(tmp_path / "plain.duckdb")).connect() as conn:
        _fill(AuditLog(conn))
    assert duckdb.connect(str(tmp_path / "plain.duckdb")).sql("SELECT count(*) FROM audit.writes").fetchone() == (5,)
    monkeypatch.setattr(encryption, "httpfs_extension", lambda: None)  # as without the duckdb-ext-httpfs package
    # ... and without an httpfs installed in DuckDB's own folder (~/.duckdb/extensions), whatever this machine has
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(duckdb.Error, match="httpfs"):
        duckdb.connect().execute("LOAD httpfs")
    with pytest.raises(AuditStoreError, match="httpfs"):
        open_audit(tmp_path / "enc.duckdb", "a-key")
