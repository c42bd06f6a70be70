"""How each registry field type travels: in the REST API's JSON, in the CSV Data Export, and in Polars/DuckDB.

One table of conventions shared by the simulator (which writes them) and the client (which reads them), so the two
paths produce the same typed frames.

| type          | REST JSON                     | CSV export                   | Polars             | DuckDB        |
|---------------|-------------------------------|------------------------------|--------------------|---------------|
| uuid/str/text | string                        | text (RFC 4180 quoted)       | String             | VARCHAR       |
| int           | number                        | digits                       | Int64              | BIGINT        |
| decimal       | string "125.00" (exact money) | "125.00", "-80.00"           | Decimal(18, 6)     | DECIMAL(18,6) |
| bool          | true / false                  | "Yes" / "No" (as the UI)     | Boolean            | BOOLEAN       |
| date          | "2025-05-06"                  | "05/06/2025" (US, as the UI) | Date               | DATE          |
| datetime      | "2025-05-06T15:00:00Z" (UTC)  | same ISO 8601 UTC            | Datetime(us, UTC)  | TIMESTAMPTZ   |
| json          | array / object                | JSON text                    | String (JSON text) | JSON          |

The sandbox generator writes the API's values with :func:`to_json_value`, the export writer turns them into the
export's with :func:`json_wire_to_csv`; ``records.cast_batch`` types either into the Polars types (through
``values.py``, which also reads the other common renderings of each type), and
``DUCKDB_TYPES`` gives the column types of the landed tables.

Null is JSON null in the API and an empty field in the export.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import orjson
import polars as pl

from senseimig_dagster.objects import FieldType

# Raw decimals hold what was received, exactly: money has two decimals, but a source that sends more is shown as
# it was (staging holds such an amount back with a named reason) instead of being rounded on the way in.
EXACT_DECIMAL = pl.Decimal(18, 6)

DUCKDB_TYPES: dict[FieldType, str] = {
    "uuid": "VARCHAR",  # kept as text: a malformed source id must land (and be reported), not fail a cast
    "str": "VARCHAR",
    "text": "VARCHAR",
    "int": "BIGINT",
    "decimal": "DECIMAL(18,6)",
    "bool": "BOOLEAN",
    "date": "DATE",
    "datetime": "TIMESTAMPTZ",
    "json": "JSON",
}

CSV_TRUE, CSV_FALSE = "Yes", "No"
CSV_DATE_FORMAT = "%m/%d/%Y"
DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def format_datetime(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime(DATETIME_FORMAT)


def to_json_value(type_: FieldType, value: Any) -> Any:
    """A native Python value (str, int, Decimal, bool, date, aware datetime, list/dict) as the API sends it."""
    if value is None:
        return None
    if type_ == "decimal":
        return f"{Decimal(value):.2f}"
    if type_ == "date":
        return value.isoformat()
    if type_ == "datetime":
        return format_datetime(value)
    return value


def json_wire_to_csv(type_: FieldType, value: Any) -> str:
    """An API (JSON wire) value as the CSV export writes it; lets the export be written from the API's records."""
    if value is None:
        return ""
    if type_ == "bool":
        return CSV_TRUE if value else CSV_FALSE
    if type_ == "date":
        return dt.date.fromisoformat(value).strftime(CSV_DATE_FORMAT)
    if type_ == "json":
        return orjson.dumps(value).decode()
    return str(value)
