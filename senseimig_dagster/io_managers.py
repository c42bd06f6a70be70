"""Typed DuckDB IO manager: asset key ``raw/patient`` is table ``raw.patient``.

We write our own type handlers instead of using ``dagster-duckdb-polars`` (whose 0.29 handler calls
``DuckDBPyConnection.arrow``, gone in duckdb 2.x); pyproject pins the DuckDB release whose ``httpfs`` PyPI carries
(encryption at rest, ``privacy/encryption.py``). It builds on Dagster's ``DbIOManager`` (a private module: dagster is
pinned to 1.13.x). Two handlers, each replacing its slice atomically:

- :class:`ExtractionHandler` streams an :class:`Extraction` (batches read lazily from the source) into a landing
  table, committing batch by batch so memory stays bounded at any tenant size, then swaps the landing table into
  the partition window in one transaction. A run that fails part-way leaves the window exactly as it was.
  Rejected rows go to ``raw._rejects`` with their reason and the partition they belong to;
- :class:`PolarsHandler` stores and loads plain Polars frames (inventory, staging and later layers).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import duckdb
import orjson
import polars as pl
from dagster import InputContext, MetadataValue, OutputContext, TableColumn, TableSchema, get_dagster_logger
from dagster._core.storage.db_io_manager import DbIOManager, DbTypeHandler, TableSlice
from dagster_duckdb import DuckDBIOManager
from dagster_duckdb.io_manager import DuckDbClient

from senseimig_dagster import objects
from senseimig_dagster.objects import MODIFIED_AT, PRIMARY_KEY, SenseiObject
from senseimig_dagster.privacy.encryption import STORE_ALIAS, connection, usable_key
from senseimig_dagster.sensei import wire
from senseimig_dagster.sensei.errors import SenseiError
from senseimig_dagster.sensei.records import (
    DUPLICATE_IDENTICAL,
    DUPLICATE_PRIMARY_KEY,
    DUPLICATE_REASONS,
    EXTRA,
    LINEAGE_COLUMNS,
    SOURCE_REF,
    Extraction,
    Reject,
    rejects_frame,
)

REJECTS_TABLE = "raw._rejects"
REJECT_COLUMNS = """object VARCHAR, source_id VARCHAR, source_ref VARCHAR, reason VARCHAR, field VARCHAR,
    message VARCHAR, raw VARCHAR, modified_at TIMESTAMPTZ, partition_at TIMESTAMP, _source VARCHAR,
    _extracted_at TIMESTAMPTZ, _run_id VARCHAR"""
_LAST_MICROSECOND = dt.timedelta(microseconds=1)


def raw_table_ddl(obj: SenseiObject, table: str, *, replace: bool = False) -> str:
    columns = [f'"{f.name}" {wire.DUCKDB_TYPES[f.type]}' for f in obj.fields]
    columns += [f'"{name}" {type_}' for name, type_ in LINEAGE_COLUMNS.items()]
    create = "CREATE OR REPLACE TABLE" if replace else "CREATE TABLE IF NOT EXISTS"
    return f"{create} {table} ({', '.join(columns)})"


class RawTableMismatch(RuntimeError):
    """A raw table made by an older release holds a column in a type this one cannot widen to losslessly."""


def conform_raw_table(connection: duckdb.DuckDBPyConnection, table: str, like: str) -> list[str]:
    """Give ``table`` the column types of ``like`` (the registry's DDL): a store made by an older release keeps its
    old types under ``CREATE TABLE IF NOT EXISTS``, and DuckDB would round into a narrower DECIMAL silently.
    Lossless widenings (a DECIMAL with as many integer and fraction digits or more, a wider integer) and missing
    columns are applied in place; anything else raises :class:`RawTableMismatch`. Returns the changes made."""
    found, expected = _column_types(connection, table), _column_types(connection, like)
    changes = []
    for column, want in expected.items():
        have = found.get(column)
        if have is None:
            connection.execute(f'ALTER TABLE {table} ADD COLUMN "{column}" {want}')
            changes.append(f"{column}: added as {want}")
        elif have != want:
            if not _widens(have, want):
                raise RawTableMismatch(
                    f"{table}.{column} is {have} in the store, but this release lands it as {want}, which is not a "
                    f"lossless widening. Move the store aside and extract again into a new one (or convert the "
                    f"column yourself: ALTER TABLE {table} ALTER COLUMN \"{column}\" TYPE {want})")
            connection.execute(f'ALTER TABLE {table} ALTER COLUMN "{column}" TYPE {want}')
            changes.append(f"{column}: {have} -> {want}")
    return changes


def _column_types(connection: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    schema, name = table.split(".")
    return dict(connection.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = ? AND table_name = ? ORDER BY column_index", [schema, name]).fetchall())


_INTEGER_WIDTH = {"TINYINT": 1, "SMALLINT": 2, "INTEGER": 3, "BIGINT": 4}


def _widens(have: str, want: str) -> bool:
    """Whether every value of type ``have`` is exactly a value of ``want``."""
    if have in _INTEGER_WIDTH and want in _INTEGER_WIDTH:
        return _INTEGER_WIDTH[have] <= _INTEGER_WIDTH[want]
    digits = [_decimal_digits(t) for t in (have, want)]
    if digits[0] is None or digits[1] is None:
        return False
    (whole, fraction), (to_whole, to_fraction) = digits
    return whole <= to_whole and fraction <= to_fraction


def _decimal_digits(type_: str) -> tuple[int, int] | None:
    """(integer digits, fraction digits) of ``DECIMAL(p,s)``; None for any other type."""
    if not (type_.startswith("DECIMAL(") and type_.endswith(")")):
        return None
    precision, scale = (int(part) for part in type_[len("DECIMAL("):-1].split(","))
    return precision - scale, scale


def column_schema(obj: SenseiObject) -> TableSchema:
    return TableSchema(columns=[TableColumn(f.name, wire.DUCKDB_TYPES[f.type], description="PHI" if f.phi else None)
                                for f in obj.fields])


def _window(table_slice: TableSlice) -> tuple[dt.datetime, dt.datetime, str | None]:
    """(start, end, partition expression) of the slice, naive UTC; the whole history when unpartitioned."""
    if not table_slice.partition_dimensions:
        return dt.datetime.min, dt.datetime.max, None
    (dimension,) = table_slice.partition_dimensions
    start, end = dimension.partitions
    return start.replace(tzinfo=None), end.replace(tzinfo=None), dimension.partition_expr


class ExtractionHandler(DbTypeHandler[Extraction]):
    """Streams an extraction into ``<schema>.<object>``; rejects into ``raw._rejects``."""

    @property
    def supported_types(self) -> Sequence[type[object]]:
        return [Extraction]

    def handle_output(self, context: OutputContext, table_slice: TableSlice, obj: Extraction,
                      connection: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        spec = objects.get(obj.object)
        table = f"{table_slice.schema}.{table_slice.table}"
        landing = f"{table_slice.schema}._landing_{table_slice.table}"
        landing_rejects = f"{landing}_rejects"
        start, end, partition_expr = _window(table_slice)
        stamp = {"_source": obj.source, "_extracted_at": dt.datetime.now(dt.UTC), "_run_id": context.run_id}
        connection.execute(raw_table_ddl(spec, table))
        connection.execute(f"CREATE TABLE IF NOT EXISTS {REJECTS_TABLE} ({REJECT_COLUMNS})")
        connection.execute(raw_table_ddl(spec, landing, replace=True))
        if changes := conform_raw_table(connection, table, like=landing):
            context.log.warning(f"{table} was made by an older release; widened in place ({'; '.join(changes)}). "
                                "Rows landed before keep the precision they were stored with: extract their days "
                                "again to see what Sensei sent")
        connection.execute(f"CREATE OR REPLACE TABLE {landing_rejects} ({REJECT_COLUMNS})")
        try:
            landed, unknown_fields, variants = self._land(connection, spec, obj, landing, landing_rejects, stamp,
                                                          start, end)
            in_window = f"{partition_expr} >= '{start}' AND {partition_expr} < '{end}'" if partition_expr else "true"
            landed -= _move_to_rejects(connection, spec, landing, landing_rejects, f"NOT ({in_window})",
                                       "modified_outside_window", start, end,
                                       f"{MODIFIED_AT} falls outside the requested window (a timestamp in the "
                                       "future, or a source that ignored the filter); it lands with its own day")
            (repeated,) = connection.execute(
                f"SELECT count(*) - count(DISTINCT {PRIMARY_KEY}) FROM {landing}").fetchone()
            if repeated:  # the ranking below sorts the whole table: only when some id really came twice
                landed -= _move_to_rejects(connection, spec, landing, landing_rejects, _superseded(spec, True),
                                           DUPLICATE_IDENTICAL, start, end, "was received again in the same "
                                           "extraction, identical: collapsed into the kept copy")
                landed -= _move_to_rejects(connection, spec, landing, landing_rejects, _superseded(spec, False),
                                           DUPLICATE_PRIMARY_KEY, start, end, "was received again in the same "
                                           "extraction with other values; the latest copy was kept")
            # The swap: the window's old rows and rejects out, the new ones in, all or nothing.
            (existing,) = connection.execute(f"SELECT count(*) FROM {table}").fetchone()
            connection.execute("BEGIN TRANSACTION")
            if existing:
                connection.execute(f"DELETE FROM {table} WHERE {in_window}")
                connection.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {landing}")
            else:  # the first load: the landing table becomes the table, no copy of a million rows
                connection.execute(f"DROP TABLE {table}")
                connection.execute(f"ALTER TABLE {landing} RENAME TO {table_slice.table}")
            connection.execute(f"DELETE FROM {REJECTS_TABLE} WHERE object = ? AND partition_at >= ? AND "
                               "partition_at < ?", [spec.name, start, end])
            connection.execute(f"INSERT INTO {REJECTS_TABLE} BY NAME SELECT * FROM {landing_rejects}")
            connection.execute("COMMIT")
            reasons = Counter(dict(connection.execute(
                f"SELECT reason, count(*) FROM {landing_rejects} GROUP BY reason").fetchall()))
        except duckdb.Error as exc:
            _rollback(connection)
            # DuckDB errors may quote the offending value, which may be PHI: keep the type and the place only.
            raise SenseiError(spec.name, "landing in DuckDB", f"{type(exc).__name__} (details withheld: may "
                                                               "quote source values)") from None
        except BaseException:
            _rollback(connection)
            raise
        finally:
            close = getattr(obj.batches, "close", None)
            if close is not None:  # stop the stream's HTTP client and prefetch thread now, not at GC
                close()
            connection.execute(f"DROP TABLE IF EXISTS {landing}")
            connection.execute(f"DROP TABLE IF EXISTS {landing_rejects}")
        received = landed + sum(reasons.values())
        collapsed = reasons.pop(DUPLICATE_IDENTICAL, 0)
        if obj.source_count is not None and obj.source_count != received:
            # The source changed while we paged (or miscounts): visible here; the inventory check decides.
            context.log.warning(f"{spec.name}: the source reported {obj.source_count} rows for the window but "
                                f"{received} were received")
        context.log.info(f"{spec.name}: received {received}, landed {landed}, identical copies collapsed "
                         f"{collapsed}, rejected {sum(reasons.values())} ({dict(reasons) or 'none'}), window "
                         f"{start:%Y-%m-%d}..{end:%Y-%m-%d}")
        return {
            "dagster/row_count": landed,
            "received": received,
            "landed": landed,
            "identical_copies_collapsed": collapsed,
            "rejected": sum(reasons.values()),
            "source_count": obj.source_count if obj.source_count is not None else MetadataValue.null(),
            "rejects_by_reason": MetadataValue.md(_reason_table(reasons)),
            "unknown_fields_kept_in__extra": MetadataValue.json(sorted(unknown_fields)),
            # values read from a rendering other than the wire's own (``$1,234.56``, ``TRUE``, an offset), by
            # field and variant: read exactly, counted so nothing is changed unseen
            "parsed_variants": MetadataValue.json(dict(sorted(variants.items()))),
            "source": obj.source,
        }

    def _land(self, connection: duckdb.DuckDBPyConnection, spec: SenseiObject, obj: Extraction, landing: str,
              landing_rejects: str, stamp: dict[str, Any], start: dt.datetime,
              end: dt.datetime) -> tuple[int, set[str], Counter[str]]:
        """Every batch into the landing table, one commit per batch (bounded memory)."""
        landed, ordinal, unknown_fields, variants = 0, 0, set[str](), Counter[str]()
        for batch in obj.batches:
            variants.update(batch.variants)
            frame = batch.frame.with_columns(
                pl.lit(stamp["_source"]).alias("_source"), pl.lit(stamp["_extracted_at"]).alias("_extracted_at"),
                pl.lit(stamp["_run_id"]).alias("_run_id"),
                (pl.int_range(pl.len(), dtype=pl.Int64) + ordinal).alias("_ordinal"))
            ordinal += frame.height
            if frame.height:
                _insert(connection, landing, frame)
                unknown_fields.update(_extra_keys(frame))
            landed += frame.height
            if batch.rejects:
                _insert(connection, landing_rejects, _reject_rows(batch.rejects, stamp, start, end))
        return landed, unknown_fields, variants

    def load_input(self, context: InputContext, table_slice: TableSlice,
                   connection: duckdb.DuckDBPyConnection) -> Extraction:
        raise TypeError("raw assets load as polars.DataFrame; annotate the input with pl.DataFrame")


def _superseded(spec: SenseiObject, identical: bool) -> str:
    """An id received twice in one extraction (a source that changed while we paged, or holds a row twice): its
    copies but the latest (the last received on a tie), those identical to the kept one (every field and
    ``_extra``) or those that differ."""
    content = ", ".join(f'"{f.name}"' for f in spec.fields) + f", {EXTRA}"
    same = "=" if identical else "<>"
    return (f"_ordinal IN (SELECT _ordinal FROM (SELECT _ordinal, _content, row_number() OVER w AS _rank, "
            f"first_value(_content) OVER w AS _kept FROM (SELECT *, hash({content}) AS _content FROM {{landing}}) "
            f"WINDOW w AS (PARTITION BY {PRIMARY_KEY} ORDER BY {MODIFIED_AT} DESC, _ordinal DESC)) "
            f"WHERE _rank > 1 AND _content {same} _kept)")


def _move_to_rejects(connection: duckdb.DuckDBPyConnection, spec: SenseiObject, landing: str, landing_rejects: str,
                     condition: str, reason: str, start: dt.datetime, end: dt.datetime, cause: str) -> int:
    """Move landed rows matching ``condition`` to the rejects with ``reason``; returns how many."""
    condition = condition.format(landing=landing)
    (count,) = connection.execute(f"SELECT count(*) FROM {landing} WHERE {condition}").fetchone()
    if count:
        connection.execute(
            f"""INSERT INTO {landing_rejects} BY NAME
            SELECT '{spec.name}' AS object, t.{PRIMARY_KEY} AS source_id, t.{SOURCE_REF} AS source_ref,
                   '{reason}' AS reason, '{PRIMARY_KEY if reason in DUPLICATE_REASONS else MODIFIED_AT}' AS field,
                   '{spec.name} ' || t.{SOURCE_REF} || ': id ' || t.{PRIMARY_KEY} || ' {cause}' AS message,
                   to_json(t)::VARCHAR AS raw, t.{MODIFIED_AT} AS modified_at,
                   least(greatest(timezone('UTC', t.{MODIFIED_AT}), ?::TIMESTAMP), ?::TIMESTAMP) AS partition_at,
                   t._source, t._extracted_at, t._run_id
            FROM {landing} t WHERE {condition}""", [start, end - _LAST_MICROSECOND])
        connection.execute(f"DELETE FROM {landing} WHERE {condition}")
    return count


def _reject_rows(rejects: list[Reject], stamp: dict[str, Any], start: dt.datetime, end: dt.datetime
                 ) -> pl.DataFrame:
    """Rejects with the partition they belong to: their ``updated_at`` clamped into this window (no readable
    ``updated_at``: the window's start), so re-running a window replaces exactly its own rejects."""
    frame = rejects_frame(rejects)
    partition_at = (frame.get_column("modified_at").dt.replace_time_zone(None)
                    .clip(start, end - _LAST_MICROSECOND).fill_null(start))
    return frame.with_columns(partition_at.alias("partition_at"), pl.lit(stamp["_source"]).alias("_source"),
                              pl.lit(stamp["_extracted_at"]).alias("_extracted_at"),
                              pl.lit(stamp["_run_id"]).alias("_run_id"))


def _insert(connection: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    connection.register("_frame", frame.to_arrow())
    try:
        connection.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _frame")
    finally:
        connection.unregister("_frame")


def _rollback(connection: duckdb.DuckDBPyConnection) -> None:
    with suppress(duckdb.Error):  # no transaction was open: the failure came before the swap
        connection.execute("ROLLBACK")


class PolarsHandler(DbTypeHandler[pl.DataFrame]):
    """Plain Polars frames: the slice is replaced in one transaction; loaded with the slice's filter."""

    @property
    def supported_types(self) -> Sequence[type[object]]:
        return [pl.DataFrame]

    def handle_output(self, context: OutputContext, table_slice: TableSlice, obj: pl.DataFrame,
                      connection: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        table = f"{table_slice.schema}.{table_slice.table}"
        connection.register("_frame", obj.to_arrow())
        try:
            connection.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM _frame LIMIT 0")
            connection.execute("BEGIN TRANSACTION")
            SenseimigDuckDbClient.delete_slice(table_slice, connection)
            connection.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _frame")
            connection.execute("COMMIT")
        except BaseException:
            _rollback(connection)
            raise
        finally:
            connection.unregister("_frame")
        return {"dagster/row_count": obj.height}

    def load_input(self, context: InputContext, table_slice: TableSlice,
                   connection: duckdb.DuckDBPyConnection) -> pl.DataFrame:
        return connection.sql(DuckDbClient.get_select_statement(table_slice)).pl()


class SenseimigDuckDbClient(DuckDbClient):
    """Dagster's DuckDB client, but: the handlers replace their slice themselves (atomically, after the new data
    is ready) instead of a delete up front; and the connection is closed even when a step fails, so nothing else
    in the process finds the database file still open."""

    @staticmethod
    def delete_table_slice(context: OutputContext, table_slice: TableSlice, connection: Any) -> None:
        return None

    @staticmethod
    def delete_slice(table_slice: TableSlice, connection: duckdb.DuckDBPyConnection) -> None:
        DuckDbClient.delete_table_slice(None, table_slice, connection)  # type: ignore[arg-type]

    @staticmethod
    @contextmanager
    def connect(context: Any, table_slice: TableSlice) -> Iterator[duckdb.DuckDBPyConnection]:
        config = context.resource_config
        key = usable_key(config.get("key"), required=config.get("require_key", False),
                         opted_out=config.get("plaintext_opt_out", False), store="migration store",
                         warn=get_dagster_logger().warning)
        with connection(config["database"], key, alias=STORE_ALIAS,
                        allow_unsafe_crypto=config.get("allow_unsafe_crypto", False), what="migration store") as conn:
            yield conn


def _extra_keys(frame: pl.DataFrame) -> set[str]:
    return {key for text in frame.get_column(EXTRA).drop_nulls().unique() for key in orjson.loads(text)}


def _reason_table(reasons: Counter[str]) -> str:
    if not reasons:
        return "No rejected rows."
    rows = "\n".join(f"| {reason} | {n} |" for reason, n in reasons.most_common())
    return f"| reason | rows |\n|---|---|\n{rows}\n\nRows are in `{REJECTS_TABLE}` with their line/page."


class SenseimigDuckDBIOManager(DuckDBIOManager):
    """DuckDB IO manager for every layer; tables are ``<layer>.<object>``. The store is encrypted with ``key`` when
    given, as the ``store`` resource opens it (``privacy/encryption.py``)."""

    key: str | None = None  # EnvVar("SENSEIMIG_STORE_KEY")
    require_key: bool = False
    plaintext_opt_out: bool = False
    allow_unsafe_crypto: bool = False

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [ExtractionHandler(), PolarsHandler()]

    @staticmethod
    def default_load_type() -> type | None:
        return pl.DataFrame

    def create_io_manager(self, context: Any) -> DbIOManager:
        return DbIOManager(db_client=SenseimigDuckDbClient(), database=self.database, schema=self.schema_,
                           type_handlers=self.type_handlers(), default_load_type=self.default_load_type(),
                           io_manager_name="SenseimigDuckDBIOManager")
