"""The schema changes the migration made, in the DuckDB store's ``audit.schema_changes``: recorded by
``dataverse/schema`` as each happens, read by rollback to remove exactly what a run created (``--remove-schema``)."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

CHANGES_TABLE = "audit.schema_changes"


def ensure_changes_table(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("CREATE SCHEMA IF NOT EXISTS audit")
    conn.execute(f"""CREATE TABLE IF NOT EXISTS {CHANGES_TABLE} (
        run_id VARCHAR NOT NULL, changed_at VARCHAR NOT NULL, kind VARCHAR NOT NULL, "table" VARCHAR,
        name VARCHAR NOT NULL, outcome VARCHAR NOT NULL, detail VARCHAR)""")


@dataclass(frozen=True)
class SchemaChangeRow:
    """One row of ``audit.schema_changes``."""

    run_id: str
    changed_at: str
    kind: str
    table: str | None
    name: str
    outcome: str
    detail: str | None


def read_schema_changes(conn: duckdb.DuckDBPyConnection) -> list[SchemaChangeRow]:
    """Every recorded schema change, oldest first (none when the schema asset never ran)."""
    exists = conn.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'audit' "
                          "AND table_name = 'schema_changes'").fetchone()
    if not exists or not exists[0]:
        return []
    rows = conn.execute('SELECT run_id, changed_at, kind, "table", name, outcome, detail '
                        "FROM audit.schema_changes ORDER BY changed_at, rowid").fetchall()
    return [SchemaChangeRow(*row) for row in rows]
