"""What Dataverse holds after a load, read back by source id: for the writers (ids, versions, before-images), the
verification checks and the sample migration's field diff."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import polars as pl

from senseimig_dagster.dataverse.batch import MAX_REQUESTS, BatchRequest
from senseimig_dagster.dataverse.client import DataverseClient
from senseimig_dagster.dataverse.errors import DataverseError
from senseimig_dagster.dataverse.standard_tables import primary_id
from senseimig_dagster.load.frames import SOURCE_ID, split_tables
from senseimig_dagster.load.payload import SOURCE_KEY
from senseimig_dagster.mapping.model import FieldMapFile
from senseimig_dagster.mapping.sample import READ_AS, Readback
from senseimig_dagster.mapping.targets import TargetCatalog

READ_CHUNK = 50  # source ids per read-back query: keeps the $filter URL well under Dataverse's URL limit
# Read-back queries in flight at once: well under the client's pool and x-ms-dop-hint, so reads never crowd out the
# loader's senders; a read throttled anyway waits out its Retry-After in the client.
READ_PARALLEL = 8


def source_id_filter(source_ids: Sequence[str]) -> str:
    """``smig_sourcesystemid eq 'a' or smig_sourcesystemid eq 'b'`` (quotes doubled inside literals)."""
    return " or ".join(f"{SOURCE_KEY} eq '{s.replace(chr(39), chr(39) * 2)}'" for s in source_ids)


def readback_columns(table: str, columns: Iterable[str], catalog: TargetCatalog) -> list[str]:
    """What to ``$select`` for staged ``columns``: value columns as they are, lookups as ``_<attribute>_value``."""
    out = {primary_id(table), SOURCE_KEY}
    for c in columns:
        if c.startswith("_"):
            continue
        if (lk := catalog.lookup(table, c)) is not None:
            out.add(f"_{lk.attribute}_value")
        elif catalog.column(table, c) is not None:
            out.add(READ_AS.get(c, c))
    return sorted(out)


def read_back(client: DataverseClient, entity_set: str, table: str, source_ids: Sequence[str],
              columns: Sequence[str], *, chunk: int = READ_CHUNK, parallel: int = READ_PARALLEL
              ) -> dict[str, dict[str, Any]]:
    """The rows with these source ids, by source id, ``$select`` ing ``columns`` (see :func:`readback_columns`).

    One ``$filter`` of ``or`` ed ids per ``chunk`` ids, up to ``parallel`` of those queries at a time. A service
    that refuses that filter (400) is asked once per id instead, those queries sent together as one ``$batch``."""
    select = sorted({*columns, SOURCE_KEY, primary_id(table)})
    ids = sorted({str(s) for s in source_ids})
    pieces = [ids[start:start + chunk] for start in range(0, len(ids), chunk)]

    def fetch(piece: list[str]) -> list[dict[str, Any]]:
        try:
            return list(client.query(entity_set, select, filter=source_id_filter(piece)))
        except DataverseError as e:
            if e.status != 400:
                raise
            return _read_one_by_one(client, entity_set, select, piece)

    width = min(parallel, len(pieces), getattr(client, "pool_size", parallel))
    if width <= 1:
        answers: Iterable[list[dict[str, Any]]] = map(fetch, pieces)
    else:  # independent GETs: one at a time they left the writers waiting on round trips, not on Dataverse
        with ThreadPoolExecutor(width, thread_name_prefix="dataverse-read") as pool:
            answers = list(pool.map(fetch, pieces))
    out: dict[str, dict[str, Any]] = {}
    for rows in answers:
        for row in rows:
            out[str(row[SOURCE_KEY])] = row
    return out


def _read_one_by_one(client: DataverseClient, entity_set: str, select: Sequence[str],
                     source_ids: Sequence[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for start in range(0, len(source_ids), MAX_REQUESTS):
        requests = [BatchRequest("GET", f"{entity_set}?$select={','.join(select)}&$filter="
                                        + quote(source_id_filter([s]), safe="'"))
                    for s in source_ids[start:start + MAX_REQUESTS]]
        result = client.batch(requests, continue_on_error=True)
        for response in result.responses:
            if response is None or not response.ok:
                raise DataverseError(response.status if response else 0, response.code if response else None,
                                     None, entity_set, "read back")
            rows.extend((response.json() or {}).get("value") or [])
    return rows


def build_readback(client: DataverseClient, staged: Mapping[str, pl.DataFrame], fmap: FieldMapFile,
                   catalog: TargetCatalog, entity_sets: Mapping[str, str]) -> Readback:
    """Everything the staged rows wrote, read back per table (objects sharing a table read it together)."""
    wanted: dict[str, tuple[set[str], set[str]]] = {}  # table -> (source ids, columns)
    for name, frame in staged.items():
        if name not in fmap.objects or frame.is_empty():
            continue
        for table, part in split_tables(frame, fmap.objects[name].tables, catalog):
            ids, columns = wanted.setdefault(table, (set(), set()))
            ids.update(part.get_column(SOURCE_ID).cast(pl.String).to_list())
            columns.update(readback_columns(table, part.columns, catalog))
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    record_ids: dict[tuple[str, str], str] = {}
    for table, (ids, columns) in sorted(wanted.items()):
        rows[table] = read_back(client, entity_sets[table], table, sorted(ids), sorted(columns))
        for sid, row in rows[table].items():
            record_ids[table, sid] = row[primary_id(table)]
    return Readback(rows=rows, ids=record_ids)
