"""Raw tables made by an older release: a narrower money column is widened in place before anything lands in it
(DuckDB would round into it silently), a missing column is added, and a type that cannot be widened losslessly
is refused with the table, column, both types and what to do."""

from __future__ import annotations

from decimal import Decimal

import duckdb
import pytest

from senseimig_dagster import objects
from senseimig_dagster.io_managers import RawTableMismatch, conform_raw_table, raw_table_ddl

LEDGER = objects.get("ledger_transaction")
TABLE, LANDING = "raw.ledger_transaction", "raw._landing_ledger_transaction"


def _store_with_old_table(amount_type: str, *, drop: str | None = None) -> duckdb.DuckDBPyConnection:
    """A store whose ledger table was created before money became DECIMAL(18,6), and today's landing table."""
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA raw")
    conn.execute(raw_table_ddl(LEDGER, TABLE))
    conn.execute(f"ALTER TABLE {TABLE} ALTER COLUMN amount TYPE {amount_type}")
    if drop:
        conn.execute(f'ALTER TABLE {TABLE} DROP COLUMN "{drop}"')
    conn.execute(f"INSERT INTO {TABLE} (id, amount) VALUES ('t1', 125.50)")
    conn.execute(raw_table_ddl(LEDGER, LANDING, replace=True))
    return conn


def _type(conn: duckdb.DuckDBPyConnection, column: str) -> str:
    return conn.execute("SELECT data_type FROM duckdb_columns() WHERE table_name = 'ledger_transaction' "
                        "AND column_name = ?", [column]).fetchone()[0]


def test_a_narrower_money_column_is_widened_in_place_and_then_keeps_every_decimal() -> None:
    with _store_with_old_table("DECIMAL(12,2)") as conn:
        assert conn.execute(f"INSERT INTO {TABLE} (id, amount) VALUES ('t0', 12.345) RETURNING amount"
                            ).fetchone()[0] == Decimal("12.35")  # what an old store did, silently
        conn.execute(f"DELETE FROM {TABLE} WHERE id = 't0'")
        assert conform_raw_table(conn, TABLE, like=LANDING) == ["amount: DECIMAL(12,2) -> DECIMAL(18,6)"]
        assert _type(conn, "amount") == "DECIMAL(18,6)"
        conn.execute(f"INSERT INTO {TABLE} (id, amount) VALUES ('t2', 12.345)")
        assert dict(conn.execute(f"SELECT id, amount FROM {TABLE}").fetchall()) == {
            "t1": Decimal("125.5"), "t2": Decimal("12.345")}
        assert conform_raw_table(conn, TABLE, like=LANDING) == []  # conformed: nothing more to do


def test_a_column_the_old_table_lacks_is_added() -> None:
    with _store_with_old_table("DECIMAL(18,6)", drop="payment_type") as conn:
        assert conform_raw_table(conn, TABLE, like=LANDING) == ["payment_type: added as VARCHAR"]
        assert _type(conn, "payment_type") == "VARCHAR"


@pytest.mark.parametrize("old", ["DECIMAL(20,8)", "DECIMAL(38,2)", "VARCHAR", "DOUBLE"])
def test_a_type_that_cannot_be_widened_losslessly_is_refused_naming_what_to_do(old: str) -> None:
    with _store_with_old_table(old) as conn:
        with pytest.raises(RawTableMismatch) as raised:
            conform_raw_table(conn, TABLE, like=LANDING)
        message = str(raised.value)
        assert f"{TABLE}.amount is {old}" in message and "as DECIMAL(18,6)" in message
        assert "extract again into a new one" in message and "ALTER TABLE" in message
        assert _type(conn, "amount") == old  # nothing changed
