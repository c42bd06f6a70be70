"""What the matcher spills to disk is encrypted: a large tenant's candidate pairs never land in plaintext."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import duckdb

from senseimig_dagster.staging.matching.linkage import connect

MARKER = b"PLAINTEXT-MARKER"


def _spill_files_seen(folder: Path, query: str) -> tuple[set[Path], set[Path]]:
    """Run ``query`` while watching ``folder``: the temporary files seen, and those that held the marker."""
    seen: set[Path] = set()
    leaked: set[Path] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for path in folder.rglob("*"):
                try:
                    if path.is_file():
                        seen.add(path)
                        if MARKER in path.read_bytes():
                            leaked.add(path)
                except OSError:
                    pass  # removed while read
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with connect(folder) as con:
        con.execute("SET memory_limit = '64MB'")
        try:
            con.execute(query).fetchall()
        except duckdb.OutOfMemoryException:
            pass  # it spilled before giving up: what reached the disk is what this test reads
    done.set()
    watcher.join()
    return seen, leaked


def test_the_matcher_spills_only_encrypted_pages(tmp_path: Path) -> None:
    query = (f"SELECT s, count(*) FROM (SELECT '{MARKER.decode()}' || i::VARCHAR || repeat('x', 100) AS s "
             "FROM range(3000000) r(i)) GROUP BY s ORDER BY s LIMIT 1")
    seen, leaked = _spill_files_seen(tmp_path, query)
    assert seen, "the query did not spill: the test proves nothing"
    assert not leaked, f"plaintext in spill files: {sorted(p.name for p in leaked)}"


def test_temp_file_encryption_is_on(tmp_path: Path) -> None:
    with connect(tmp_path) as con:
        assert con.execute("SELECT current_setting('temp_file_encryption')").fetchone()[0] is True
