"""A store encrypted after the fact (``senseimig store upgrade``) keeps a journal of unkeyed digests: the upgrade
marks them, so the first keyed run resends only the records that changed and journals keyed digests for the rest.
Without the mark every record would be resent as an update."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import duckdb
import polars as pl
import pytest

from senseimig_dagster import mapping
from senseimig_dagster.audit.log import AuditLog
from senseimig_dagster.dataverse import DataverseClient
from senseimig_dagster.dataverse.bulk import BulkLoader
from senseimig_dagster.dataverse.metadata import DataverseMetadata
from senseimig_dagster.load.journal import (
    append_outcomes,
    ensure_journal,
    mark_unkeyed_digests,
    previous_entries,
)
from senseimig_dagster.load.writer import WriteContext, write_object
from senseimig_dagster.mapping.targets import TargetCatalog
from senseimig_dagster.privacy.encryption import digest_key
from senseimig_dagster_tests.support.environments import schema_client

PATIENT = mapping.load_valid(mapping.default_map_path()).objects["patient"]
KEY = digest_key("the-stores-key")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[DataverseClient]:
    with schema_client(tmp_path / "dv.sqlite") as c:
        yield c


def _patients(names: list[str]) -> pl.DataFrame:
    ids = [f"p{i}" for i in range(len(names))]
    return pl.DataFrame({"_object": ["patient"] * len(ids), "_source_id": ids, "smig_sourcesystemid": ids,
                         "lastname": names})


def _run(ctx: WriteContext, journal: duckdb.DuckDBPyConnection, frame: pl.DataFrame, run_id: str,
         key: bytes | None) -> dict[str, str]:
    """One writer run over ``frame`` against the journal: outcome per source id."""
    ctx = replace(ctx, run_id=run_id, previous=previous_entries(journal, "patient"), digest_key=key)
    rows = write_object(ctx, PATIENT, frame)
    append_outcomes(journal, rows, run_id)
    return {r.source_id: r.outcome for r in rows}


@pytest.mark.parametrize("marked", [True, False])
def test_the_first_keyed_run_after_the_upgrade_resends_only_what_changed(client: DataverseClient,
                                                                         marked: bool) -> None:
    sets = DataverseMetadata(client).entity_sets(["contact"])
    log = AuditLog(duckdb.connect())
    ctx = WriteContext(BulkLoader([client]), TargetCatalog(), sets, log, "run-1", "dataverse/patient", {})
    with duckdb.connect() as journal:
        ensure_journal(journal)
        frame = _patients(["Ng", "Oh", "Li"])
        assert set(_run(ctx, journal, frame, "plain", None).values()) == {"created"}  # a plaintext store
        if marked:
            mark_unkeyed_digests(journal)  # what the upgrade does
        changed = frame.with_columns(pl.when(pl.col("_source_id") == "p1").then(pl.lit("O'Hara"))
                                     .otherwise(pl.col("lastname")).alias("lastname"))
        sent_before = len(log.writes())
        outcomes = _run(ctx, journal, changed, "keyed-1", KEY)
        if not marked:  # every body looks changed: all resent
            assert outcomes == {"p0": "updated", "p1": "updated", "p2": "updated"}
            return
        assert outcomes == {"p0": "unchanged", "p1": "updated", "p2": "unchanged"}
        assert [w.source_id for w in log.writes()[sent_before:]] == ["p1"]
        # the unchanged records were journaled with keyed digests: the next keyed run compares them as keyed
        assert not any(e.unkeyed for e in previous_entries(journal, "patient").values())
        assert set(_run(ctx, journal, changed, "keyed-2", KEY).values()) == {"unchanged"}
