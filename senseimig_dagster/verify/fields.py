"""Field-by-field read-back of one Dataverse asset's rows. Pure: no Dagster.

Which rows: every staged row of a small object (``full_limit`` rows or fewer), otherwise a reproducible random
sample (a seeded hash order of the source ids, as ``mapping/sample.py`` orders patients) of :func:`sample_size`
rows: enough that a clean sample shows, with 99% confidence, a defect rate under 0.1%.

What is compared: every mapped column the staged row carries, through ``mapping.sample.field_diff`` - values in
their wire format, lookups as the parent's Dataverse id resolved through the parent's alternate key (the run's
:class:`~.counts.DataverseIndex`). The staged frame is first shaped as the load sent it (``resolve_users``: lookups to
users as GUIDs); an owner left empty was not sent (Dataverse's default owner applies), so it is not compared.

The diff holds values (PHI): its differences are kept in the store (``verify/differences.py``); results carry
source ids and column names.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from senseimig_dagster.load.frames import SOURCE_ID, resolve_users, split_tables
from senseimig_dagster.load.owners import SYSTEMUSER, OwnerMap
from senseimig_dagster.load.read_back import read_back, readback_columns
from senseimig_dagster.mapping.model import FieldMapFile
from senseimig_dagster.mapping.sample import Readback, field_diff
from senseimig_dagster.mapping.targets import TargetCatalog
from senseimig_dagster.verify.counts import DataverseIndex

if TYPE_CHECKING:
    from senseimig_dagster.dataverse.client import DataverseClient

CONFIDENCE = 0.99
DEFECT_RATE = 0.001
_REFERENCE = r"^/\w+\(([0-9A-Fa-f-]{36})\)$"
FULL_LIMIT = 5000  # objects with at most this many staged rows are compared whole


def sample_size(confidence: float = CONFIDENCE, defect_rate: float = DEFECT_RATE) -> int:
    """Rows to draw so that finding no defect rules out a defect rate of ``defect_rate`` or more.

    If the true rate were ``p``, a sample of ``n`` rows would show no defect with probability ``(1 - p)^n``; asking
    that to be at most ``1 - confidence`` gives ``n >= ln(1 - confidence) / ln(1 - p)``: for 99% and 0.1%,
    ``ln(0.01) / ln(0.999) = 4602.9``, so 4603 rows (a binomial zero-failure bound; the table is large, so drawing
    without replacement only makes it conservative)."""
    if not (0 < confidence < 1 and 0 < defect_rate < 1):
        raise ValueError("confidence and defect_rate must be between 0 and 1")
    return math.ceil(math.log(1 - confidence) / math.log(1 - defect_rate))


def _order_key(seed: int, value: str) -> str:
    return hashlib.sha256(f"{seed}:{value}".encode()).hexdigest()


def rows_to_compare(source_ids: Sequence[str], *, full_limit: int = FULL_LIMIT, seed: int = 0,
                    n: int | None = None) -> list[str]:
    """All ids when there are ``full_limit`` or fewer, else the first ``n`` (default :func:`sample_size`) in a
    seeded hash order: same seed and ids, same sample, whatever order the ids come in."""
    ids = sorted({str(s) for s in source_ids})
    if len(ids) <= full_limit:
        return ids
    return sorted(sorted(ids, key=lambda s: _order_key(seed, s))[:n or sample_size()])


@dataclass(frozen=True)
class FieldResult:
    object: str
    staged: int
    compared_rows: int
    sampled: bool
    diff: pl.DataFrame  # field_diff's rows (PHI: values): only their differences are kept, in the store
    differences: pl.DataFrame  # source_id, column: no values

    @property
    def passed(self) -> bool:
        return self.differences.is_empty()


def _user_columns(tables: Sequence[str], columns: Sequence[str], catalog: TargetCatalog) -> set[str]:
    return {c for c in columns for t in tables if (lk := catalog.lookup(t, c)) is not None
            and (SYSTEMUSER in lk.targets or lk.attribute == "ownerid")}


def compare_fields(client: DataverseClient, object_name: str, frame: pl.DataFrame, fmap: FieldMapFile,
                   catalog: TargetCatalog, entity_sets: Mapping[str, str], index: DataverseIndex, *,
                   owners: OwnerMap | None = None, full_limit: int = FULL_LIMIT, seed: int = 0,
                   n: int | None = None) -> FieldResult:
    """Read back the chosen rows of ``object_name``'s staged ``frame`` and compare every mapped column."""
    tables = fmap.objects[object_name].tables
    sent = resolve_users(frame, tables, catalog, owners)
    users = _user_columns(tables, sent.columns, catalog)
    # Owners may be whole references (``/teams(<id>)``, OwnerMap.from_owners_table); Dataverse reads back the id.
    sent = sent.with_columns(pl.col(c).cast(pl.String).str.replace(_REFERENCE, "$1") for c in sorted(users))
    chosen = rows_to_compare(sent.get_column(SOURCE_ID).cast(pl.String).to_list(), full_limit=full_limit,
                             seed=seed, n=n) if sent.height else []
    sample = sent.filter(pl.col(SOURCE_ID).cast(pl.String).is_in(chosen))
    rows: dict[str, dict] = {}
    ids: dict[tuple[str, str], str] = {}
    for table, part in split_tables(sample, tables, catalog):
        columns = readback_columns(table, part.columns, catalog)
        rows[table] = read_back(client, entity_sets[table], table, part.get_column(SOURCE_ID).cast(pl.String)
                                .to_list(), columns)
        for column in part.columns:  # each lookup's parents, by alternate key, from the run's index
            lookup = catalog.lookup(table, column)
            if lookup is None or SYSTEMUSER in lookup.targets or lookup.attribute == "ownerid":
                continue
            parent = lookup.targets[0]
            wanted = set(part.get_column(column).drop_nulls().cast(pl.String).to_list())
            there = index.ids(parent)
            ids.update({(parent, s): there[s] for s in wanted if s in there})
    diff = field_diff(fmap, {}, {object_name: sample}, Readback(rows=rows, ids=ids), catalog)
    if users and diff.height:  # an empty owner was not sent: Dataverse's default owner is not a difference
        diff = diff.filter(~(pl.col("column").is_in(sorted(users)) & pl.col("staged_value").is_null()))
    differences = (diff.filter(~pl.col("equal")).select("source_id", "column").unique().sort("source_id", "column")
                   if diff.height else pl.DataFrame(schema={"source_id": pl.String, "column": pl.String}))
    return FieldResult(object_name, frame.height, sample.height, sample.height < frame.height, diff, differences)


__all__ = ["CONFIDENCE", "DEFECT_RATE", "FULL_LIMIT", "FieldResult", "compare_fields", "rows_to_compare",
           "sample_size"]
