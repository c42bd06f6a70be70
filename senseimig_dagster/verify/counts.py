"""Counts and conservation of one Dataverse asset: every staged row is in Dataverse, and every extracted row is
accounted for from Sensei to Dataverse. Pure: no Dagster.

Counting pages the table's ``smig_sourcesystemid`` values (``$select`` of the key and the primary id, 5000 a page)
instead of ``$count``: Dataverse caps ``$count`` at 5000, and a per-id answer names what is missing.
One :class:`DataverseIndex` per run caches each table's ``source id -> Dataverse id``, which the field check also
uses to resolve lookups (the parent's id through its alternate key).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import polars as pl

from senseimig_dagster.dataverse.standard_tables import primary_id
from senseimig_dagster.load.frames import SOURCE_ID, TABLE
from senseimig_dagster.load.payload import SOURCE_KEY
from senseimig_dagster.staging.pipeline import COUNT_COLUMNS

if TYPE_CHECKING:
    from senseimig_dagster.dataverse.client import DataverseClient

FAILED = "failed"  # the load journal's outcome of a row Dataverse refused


@dataclass
class DataverseIndex:
    """``source id -> Dataverse id`` per table, read once per table and kept for the run."""

    client: DataverseClient
    entity_sets: Mapping[str, str]
    _ids: dict[str, dict[str, str]] = field(default_factory=dict)

    def ids(self, table: str) -> dict[str, str]:
        if table not in self._ids:
            key = primary_id(table)
            rows = self.client.query(self.entity_sets[table], [SOURCE_KEY, key])
            self._ids[table] = {str(r[SOURCE_KEY]): str(r[key]) for r in rows if r.get(SOURCE_KEY) is not None}
        return self._ids[table]

    def forget(self, table: str | None = None) -> None:
        """Drop the cache (after a re-run wrote to ``table``)."""
        if table is None:
            self._ids.clear()
        else:
            self._ids.pop(table, None)


def staged_ids_by_table(frame: pl.DataFrame, tables: Sequence[str]) -> dict[str, list[str]]:
    """Staged source ids per Dataverse table (``_table`` for routed objects)."""
    if frame.is_empty():
        return {}
    if TABLE in frame.columns and len(tables) > 1:
        parts = frame.select(pl.col(TABLE), pl.col(SOURCE_ID).cast(pl.String)).group_by(TABLE).agg(SOURCE_ID)
        return {t: sorted(ids) for t, ids in parts.iter_rows()}
    return {tables[0]: sorted(frame.get_column(SOURCE_ID).cast(pl.String).to_list())}


@dataclass(frozen=True)
class CountResult:
    object: str
    staged: int
    present: int
    missing: list[str]  # staged source ids Dataverse does not hold, sorted
    per_table: dict[str, tuple[int, int]]  # table -> (staged, present)

    @property
    def passed(self) -> bool:
        return not self.missing


def count_rows(object_name: str, frame: pl.DataFrame, tables: Sequence[str], index: DataverseIndex) -> CountResult:
    """Staged rows of ``object_name`` vs the rows with those source ids in Dataverse."""
    missing: list[str] = []
    per_table: dict[str, tuple[int, int]] = {}
    for table, ids in staged_ids_by_table(frame, tables).items():
        there = index.ids(table)
        gone = [s for s in ids if s not in there]
        missing += gone
        per_table[table] = (len(ids), len(ids) - len(gone))
    staged = sum(s for s, _ in per_table.values())
    return CountResult(object_name, staged, staged - len(missing), sorted(missing), per_table)


@dataclass(frozen=True)
class Conservation:
    """``extracted = in Dataverse + merged + collapsed + quarantined + not written`` for one object; ``failed``
    (staged, refused by Dataverse) and ``missing`` (staged, not found) explain a gap, they never close it."""

    object: str
    extracted: int
    in_dataverse: int
    merged: int
    collapsed: int
    quarantined: int
    not_written: int
    failed: int
    missing: int

    @property
    def gap(self) -> int:
        """Extracted rows accounted for nowhere: 0 when conserved."""
        return self.extracted - (self.in_dataverse + self.merged + self.collapsed + self.quarantined
                                 + self.not_written)

    @property
    def passed(self) -> bool:
        return self.gap == 0

    def markdown(self) -> str:
        names = ("extracted", "in_dataverse", "merged", "collapsed", "quarantined", "not_written", "failed", "missing")
        return ("| " + " | ".join(names) + " |\n|" + "---|" * len(names) + "\n| "
                + " | ".join(str(getattr(self, n)) for n in names) + " |")


def conservation(counts: pl.DataFrame, result: CountResult, load_journal: pl.DataFrame | None = None
                 ) -> Conservation:
    """From staging's conservation counts (``object`` + ``staging.pipeline.COUNT_COLUMNS``), the count check's
    result and the load journal (rows with ``outcome == "failed"``)."""
    row = counts.filter(pl.col("object") == result.object)
    if row.is_empty():
        raise ValueError(f"no staging conservation counts for {result.object}")
    c = row.row(0, named=True)
    failed = 0
    if load_journal is not None and "outcome" in load_journal.columns:
        failed = load_journal.filter(pl.col("outcome") == FAILED).height
    return Conservation(result.object, int(c["extracted"]), result.present, int(c["merged"]), int(c["collapsed"]),
                        int(c["quarantined"]), int(c["not_written"]), failed, len(result.missing))


_CELL = re.compile(r"\s*\|\s*")


def counts_from_markdown(text: str) -> pl.DataFrame:
    """Staging's ``conservation`` metadata (a Markdown table of ``object`` + COUNT_COLUMNS + ``conserved``, as
    ``assets/staging.py`` writes it) back into a frame: the staging asset keeps the counts nowhere else."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip().startswith("|")]
    if len(lines) < 2:
        return pl.DataFrame(schema={"object": pl.String, **dict.fromkeys(COUNT_COLUMNS, pl.Int64)})
    header = [h for h in _CELL.split(lines[0].strip("|").strip())]
    rows = [dict(zip(header, _CELL.split(ln.strip("|").strip()), strict=False)) for ln in lines[2:]]
    return pl.DataFrame([{"object": r["object"], **{k: int(r[k]) for k in COUNT_COLUMNS}} for r in rows],
                        schema={"object": pl.String, **dict.fromkeys(COUNT_COLUMNS, pl.Int64)})


__all__ = ["Conservation", "CountResult", "DataverseIndex", "conservation", "count_rows", "counts_from_markdown",
           "staged_ids_by_table"]
