"""How each registry field type travels: in the REST API's JSON, in the CSV Data Export, and in Polars/DuckDB.

One table of conventions shared by the simulator (which writes them) and the client (which reads them), so the two
paths produce the same typed frames.

| type     | REST JSON                     | CSV export                  | Polars                 |
|----------|-------------------------------|-----------------------------|------------------------|
| uuid/str/text | string                   | text (RFC 4180 quoted)      | String                 |
| int      | number                        | digits                      | Int64                  |
| decimal  | string "125.00" (exact money) | "125.00", "-80.00"          | Decimal(12, 2)         |
| bool     | true / false                  | "Yes" / "No" (as the UI)    | Boolean                |
| date     | "2025-05-06"                  | "05/06/2025" (US, as the UI)| Date                   |
| datetime | "2025-05-06T15:00:00Z" (UTC)  | same ISO 8601 UTC           | Datetime(us, UTC)      |
| json     | array / object                | JSON text                   | String (JSON text)     |

Null is JSON null in the API and an empty field in the export.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import orjson
import polars as pl

from senseimig_dagster.objects import FieldType, SenseiObject

MONEY = pl.Decimal(12, 2)

POLARS_TYPES: dict[FieldType, pl.DataType] = {
    "uuid": pl.String(),
    "str": pl.String(),
    "text": pl.String(),
    "int": pl.Int64(),
    "decimal": MONEY,
    "bool": pl.Boolean(),
    "date": pl.Date(),
    "datetime": pl.Datetime("us", "UTC"),
    "json": pl.String(),
}

DUCKDB_TYPES: dict[FieldType, str] = {
    "uuid": "VARCHAR",  # kept as text: a malformed source id must land (and be reported), not fail a cast
    "str": "VARCHAR",
    "text": "VARCHAR",
    "int": "BIGINT",
    "decimal": "DECIMAL(12,2)",
    "bool": "BOOLEAN",
    "date": "DATE",
    "datetime": "TIMESTAMPTZ",
    "json": "JSON",
}

CSV_TRUE, CSV_FALSE = "Yes", "No"
CSV_DATE_FORMAT = "%m/%d/%Y"
DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def polars_schema(obj: SenseiObject) -> dict[str, pl.DataType]:
    return {f.name: POLARS_TYPES[f.type] for f in obj.fields}


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


def to_csv_value(type_: FieldType, value: Any) -> str:
    """A native Python value as the CSV Data Export writes it (before RFC 4180 quoting)."""
    if value is None:
        return ""
    if type_ == "decimal":
        return f"{Decimal(value):.2f}"
    if type_ == "bool":
        return CSV_TRUE if value else CSV_FALSE
    if type_ == "date":
        return value.strftime(CSV_DATE_FORMAT)
    if type_ == "datetime":
        return format_datetime(value)
    if type_ == "json":
        return orjson.dumps(value).decode()
    return str(value)


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
