"""Typed DuckDB IO manager: asset key ``raw/patient`` is table ``raw.patient``.

We write our own type handlers instead of using ``dagster-duckdb-polars`` (whose 0.29 handler calls
``DuckDBPyConnection.arrow``, gone in duckdb 2.x) and still pin ``duckdb>=1.5,<2`` in pyproject until
``dagster-duckdb`` itself is tested on 2.x. Two handlers:

- :class:`ExtractionHandler` streams an :class:`Extraction` (batches read lazily from the source) into the table,
  so memory stays bounded at any tenant size, and lands rejected rows in ``raw._rejects`` with their reason;
- :class:`PolarsHandler` stores and loads plain Polars frames (staging and later layers).

Dagster's ``DbIOManager`` deletes the partition window before the handler writes, so re-running a window neither
duplicates nor loses rows.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence

import duckdb
import orjson
import polars as pl
from dagster import InputContext, MetadataValue, OutputContext, TableColumn, TableSchema
from dagster._core.storage.db_io_manager import DbTypeHandler, TableSlice
from dagster_duckdb import DuckDBIOManager

from senseimig_dagster import objects
from senseimig_dagster.objects import MODIFIED_AT, PRIMARY_KEY, SenseiObject
from senseimig_dagster.sensei import wire
from senseimig_dagster.sensei.records import EXTRA, SOURCE_REF, Extraction, rejects_frame

REJECTS_TABLE = "raw._rejects"
LINEAGE_COLUMNS = {EXTRA: "JSON", SOURCE_REF: "VARCHAR", "_source": "VARCHAR", "_extracted_at": "TIMESTAMPTZ",
                   "_run_id": "VARCHAR", "_ordinal": "BIGINT"}


def raw_table_ddl(obj: SenseiObject, table: str) -> str:
    columns = [f'"{f.name}" {wire.DUCKDB_TYPES[f.type]}' for f in obj.fields]
    columns += [f'"{name}" {type_}' for name, type_ in LINEAGE_COLUMNS.items()]
    return f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(columns)})"


REJECTS_DDL = f"""CREATE TABLE IF NOT EXISTS {REJECTS_TABLE} (
    object VARCHAR, source_id VARCHAR, source_ref VARCHAR, reason VARCHAR, field VARCHAR, message VARCHAR,
    raw VARCHAR, _source VARCHAR, _extracted_at TIMESTAMPTZ, _run_id VARCHAR,
    window_start TIMESTAMP, window_end TIMESTAMP)"""


def column_schema(obj: SenseiObject) -> TableSchema:
    return TableSchema(columns=[TableColumn(f.name, wire.DUCKDB_TYPES[f.type], description="PHI" if f.phi else None)
                                for f in obj.fields])


def _window(table_slice: TableSlice) -> tuple[dt.datetime, dt.datetime]:
    (dimension,) = table_slice.partition_dimensions or [None]
    if dimension is None:  # unpartitioned write: the whole history
        return dt.datetime.min, dt.datetime.max
    start, end = dimension.partitions
    return start.replace(tzinfo=None), end.replace(tzinfo=None)


class ExtractionHandler(DbTypeHandler[Extraction]):
    """Streams an extraction into ``<schema>.<object>``; rejects into ``raw._rejects``."""

    @property
    def supported_types(self) -> Sequence[type[object]]:
        return [Extraction]

    def handle_output(self, context: OutputContext, table_slice: TableSlice, obj: Extraction,
                      connection: duckdb.DuckDBPyConnection) -> dict:
        spec = objects.get(obj.object)
        table = f"{table_slice.schema}.{table_slice.table}"
        start, end = _window(table_slice)
        extracted_at = dt.datetime.now(dt.UTC)
        stamp = {"_source": obj.source, "_extracted_at": extracted_at, "_run_id": context.run_id}
        connection.execute(raw_table_ddl(spec, table))
        connection.execute(REJECTS_DDL)
        landed, reasons, unknown_fields, ordinal = 0, Counter[str](), set[str](), 0
        # Each batch commits on its own: one transaction over a whole extraction would hold every uncommitted row
        # in memory. A failure removes this run's partial rows instead, so the window ends empty (as DbIOManager
        # left it), never half-loaded; re-running it lands everything once.
        try:
            connection.execute(f"DELETE FROM {REJECTS_TABLE} WHERE object = ? AND window_start >= ? AND window_end <= ?",
                               [spec.name, start, end])  # rejects of an earlier extraction of this window
            for batch in obj.batches:
                frame = batch.frame.with_columns(
                    pl.lit(obj.source).alias("_source"), pl.lit(extracted_at).alias("_extracted_at"),
                    pl.lit(context.run_id).alias("_run_id"),
                    (pl.int_range(pl.len(), dtype=pl.Int64) + ordinal).alias("_ordinal"))
                ordinal += frame.height
                if frame.height:
                    connection.register("_batch", frame.to_arrow())
                    connection.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _batch")
                    connection.unregister("_batch")
                    unknown_fields.update(_extra_keys(frame))
                landed += frame.height
                if batch.rejects:
                    self._insert_rejects(connection, batch.rejects, stamp, start, end)
                    reasons.update(r.reason for r in batch.rejects)
            superseded = self._reject_superseded(connection, spec, table, stamp, start, end)
        except BaseException:
            this_run = [context.run_id, extracted_at]
            connection.execute(f"DELETE FROM {table} WHERE _run_id = ? AND _extracted_at = ?", this_run)
            connection.execute(f"DELETE FROM {REJECTS_TABLE} WHERE object = ? AND _run_id = ? AND _extracted_at = ?",
                               [spec.name, *this_run])
            raise
        landed -= superseded
        reasons.update({"duplicate_primary_key": superseded} if superseded else {})
        received = landed + sum(reasons.values())
        if obj.source_count is not None and obj.source_count != received:
            # The source changed while we paged (or miscounts): visible here; the inventory check decides.
            context.log.warning(f"{spec.name}: the source reported {obj.source_count} rows for the window but "
                                f"{received} were received")
        context.log.info(f"{spec.name}: received {received}, landed {landed}, rejected {sum(reasons.values())}"
                         f" ({dict(reasons) or 'none'}), window {start:%Y-%m-%d}..{end:%Y-%m-%d}")
        return {
            "dagster/row_count": landed,
            "received": received,
            "landed": landed,
            "rejected": sum(reasons.values()),
            "source_count": obj.source_count if obj.source_count is not None else MetadataValue.null(),
            "rejects_by_reason": MetadataValue.md(_reason_table(reasons)),
            "unknown_fields_kept_in__extra": MetadataValue.json(sorted(unknown_fields)),
            "source": obj.source,
        }

    @staticmethod
    def _insert_rejects(connection: duckdb.DuckDBPyConnection, rejects: list, stamp: dict,
                        start: dt.datetime, end: dt.datetime) -> None:
        frame = rejects_frame(rejects).with_columns(
            pl.lit(stamp["_source"]).alias("_source"), pl.lit(stamp["_extracted_at"]).alias("_extracted_at"),
            pl.lit(stamp["_run_id"]).alias("_run_id"), pl.lit(start).alias("window_start"),
            pl.lit(end).alias("window_end"))
        connection.register("_rejects", frame.to_arrow())
        connection.execute(f"INSERT INTO {REJECTS_TABLE} BY NAME SELECT * FROM _rejects")
        connection.unregister("_rejects")

    @staticmethod
    def _reject_superseded(connection: duckdb.DuckDBPyConnection, spec: SenseiObject, table: str,
                           stamp: dict, start: dt.datetime, end: dt.datetime) -> int:
        """An id received twice in one extraction (a source that changed while we paged): the latest version
        stays, earlier copies move to the rejects table as ``duplicate_primary_key``."""
        this_run = [stamp["_run_id"], stamp["_extracted_at"]]
        connection.execute(
            f"""CREATE OR REPLACE TEMP TABLE _superseded AS SELECT _ordinal FROM (
                  SELECT _ordinal, row_number() OVER (PARTITION BY {PRIMARY_KEY}
                                                      ORDER BY {MODIFIED_AT} DESC, _ordinal DESC) AS _rank
                  FROM {table} WHERE _run_id = ? AND _extracted_at = ?) WHERE _rank > 1""", this_run)
        (count,) = connection.execute("SELECT count(*) FROM _superseded").fetchone()
        if count:
            connection.execute(
                f"""INSERT INTO {REJECTS_TABLE} BY NAME
                SELECT '{spec.name}' AS object, t.{PRIMARY_KEY} AS source_id, t.{SOURCE_REF} AS source_ref,
                       'duplicate_primary_key' AS reason, '{PRIMARY_KEY}' AS field,
                       '{spec.name} ' || t.{SOURCE_REF} || ': id ' || t.{PRIMARY_KEY} ||
                       ' was received again later in the same extraction; the latest copy was kept' AS message,
                       to_json(t)::VARCHAR AS raw, t._source, t._extracted_at, t._run_id,
                       ?::TIMESTAMP AS window_start, ?::TIMESTAMP AS window_end
                FROM {table} t SEMI JOIN _superseded s ON t._ordinal = s._ordinal
                WHERE t._run_id = ? AND t._extracted_at = ?""", [start, end, *this_run])
            connection.execute(f"DELETE FROM {table} WHERE _run_id = ? AND _extracted_at = ? "
                               f"AND _ordinal IN (SELECT _ordinal FROM _superseded)", this_run)
        connection.execute("DROP TABLE _superseded")
        return count

    def load_input(self, context: InputContext, table_slice: TableSlice,
                   connection: duckdb.DuckDBPyConnection) -> Extraction:
        raise TypeError("raw assets load as polars.DataFrame; annotate the input with pl.DataFrame")


class PolarsHandler(DbTypeHandler[pl.DataFrame]):
    """Plain Polars frames: the whole slice is replaced on write; loaded with the slice's filter."""

    @property
    def supported_types(self) -> Sequence[type[object]]:
        return [pl.DataFrame]

    def handle_output(self, context: OutputContext, table_slice: TableSlice, obj: pl.DataFrame,
                      connection: duckdb.DuckDBPyConnection) -> dict:
        table = f"{table_slice.schema}.{table_slice.table}"
        connection.register("_frame", obj.to_arrow())
        connection.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM _frame LIMIT 0")
        connection.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _frame")
        connection.unregister("_frame")
        return {"dagster/row_count": obj.height}

    def load_input(self, context: InputContext, table_slice: TableSlice,
                   connection: duckdb.DuckDBPyConnection) -> pl.DataFrame:
        from dagster_duckdb.io_manager import DuckDbClient

        return connection.sql(DuckDbClient.get_select_statement(table_slice)).pl()


def _extra_keys(frame: pl.DataFrame) -> set[str]:
    return {key for text in frame.get_column(EXTRA).drop_nulls().unique() for key in orjson.loads(text)}


def _reason_table(reasons: Counter[str]) -> str:
    if not reasons:
        return "No rejected rows."
    rows = "\n".join(f"| {reason} | {n} |" for reason, n in reasons.most_common())
    return f"| reason | rows |\n|---|---|\n{rows}\n\nRows are in `{REJECTS_TABLE}` with their line/page."


class SenseimigDuckDBIOManager(DuckDBIOManager):
    """DuckDB IO manager for every layer; tables are ``<layer>.<object>``."""

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [ExtractionHandler(), PolarsHandler()]

    @staticmethod
    def default_load_type() -> type | None:
        return pl.DataFrame
