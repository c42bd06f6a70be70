"""The migration's DuckDB file as the assets read it: which tables exist, the newest raw version of each record,
staged rows, the owner map. One place for these reads, so an asset body wires and never rebuilds them.

Schemas: ``raw`` (landed rows, every version received, plus ``raw._rejects``), ``inventory``, ``staging``
(Dataverse-shaped rows, ``quarantine``, ``owners``...), ``dataverse`` (each writer's run slice), ``load`` (the load
journal, failures, documents). Raw and staged rows hold PHI: they stay in this file.
"""

from __future__ import annotations

import duckdb
import polars as pl

from senseimig_dagster.load.owners import OwnerMap
from senseimig_dagster.objects import MODIFIED_AT, PRIMARY_KEY, STAFF_USER, SenseiObject


def latest_sql(table: str) -> str:
    """The newest received version of each record of a raw table (``raw."patient"``): raw keeps every version a
    window landed (a delta lands a newer copy), and everything downstream reads the newest."""
    return (f"SELECT * FROM {table} QUALIFY row_number() OVER (PARTITION BY {PRIMARY_KEY} "
            f"ORDER BY {MODIFIED_AT} DESC NULLS LAST, _extracted_at DESC NULLS LAST, _ordinal DESC) = 1")


class Store:
    """Reads over one open connection (``StoreResource.open()``)."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn

    def tables(self, schema: str) -> set[str]:
        return {r[0] for r in self.conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [schema]).fetchall()}

    def exists(self, schema: str, table: str) -> bool:
        return table in self.tables(schema)

    def raw(self, obj: SenseiObject | str, columns: str = "*") -> pl.DataFrame | None:
        """The newest version of each record of ``obj`` (``columns``: a SELECT list over it); None before its first
        extraction."""
        name = obj if isinstance(obj, str) else obj.name
        if not self.exists("raw", name):
            return None
        return self.conn.sql(f'SELECT {columns} FROM ({latest_sql(f"raw.{quoted(name)}")})').pl()

    def staged(self, name: str) -> pl.DataFrame:
        """The staged rows of object ``name`` (an empty frame before staging ran)."""
        if not self.exists("staging", name):
            return pl.DataFrame()
        return self.conn.sql(f"SELECT * FROM staging.{quoted(name)}").pl()

    def owner_map(self) -> OwnerMap | None:
        """The writers' owner map: ``staging.owners`` and the Sensei users' e-mails (None before owners ran)."""
        users = self.raw(STAFF_USER, f"CAST({PRIMARY_KEY} AS VARCHAR) AS id, email")
        if users is None or not self.exists("staging", "owners"):
            return None
        return OwnerMap.from_owners_table(self.conn.sql("SELECT * FROM staging.owners").pl(), users)


def quoted(name: str) -> str:
    """A DuckDB identifier, quoted (some object names are SQL keywords)."""
    return '"' + name.replace('"', '""') + '"'
