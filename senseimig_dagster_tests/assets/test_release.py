"""Reviewing and releasing what was quarantined, end to end through Dagster against the HTTPS emulator: a ledger
entry whose patient id was mistyped at the source is quarantined by the migration; a person corrects it in the
corrections file; the ``release`` job re-stages, sends exactly that record, and the reconciliation shows its amount
moved from "quarantined" to "Dataverse"."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import orjson
import polars as pl
import pytest
from dagster import DagsterInstance, materialize

from senseimig_dagster import mapping
from senseimig_dagster.assets.dataverse_schema import dataverse_schema
from senseimig_dagster.assets.go_live import GO_LIVE_KEY, go_live_ready
from senseimig_dagster.assets.owners import staging_owners
from senseimig_dagster.assets.partitions import range_tags
from senseimig_dagster.assets.raw import raw_assets
from senseimig_dagster.assets.release import RELEASE_TAG
from senseimig_dagster.assets.staging import staging_assets
from senseimig_dagster.assets.writers import dataverse_assets
from senseimig_dagster.audit.corrections import corrections_trail
from senseimig_dagster.objects import REGISTRY
from senseimig_dagster.resources import AuditStore
from senseimig_dagster.staging.pipeline import stage_tenant
from senseimig_dagster_tests.support.constants import SEED_TEAM as TEAM
from senseimig_dagster_tests.support.environments import sandbox
from senseimig_dagster_tests.support.maps import confirmed_map
from senseimig_dagster_tests.support.tenants import read_object

LEDGER = "ledger_transaction"
EVERYTHING = [dataverse_schema, staging_assets, staging_owners, *dataverse_assets, go_live_ready]
MISTYPED = "00000000-0000-0000-0000-00000000beef"


def _pick_entry(tenant: Path) -> dict:
    """A charge that stages cleanly and that no other entry corrects: the one a person will mistype."""
    raw = {o.name: read_object(tenant, o.name) for o in REGISTRY}
    staged = stage_tenant(raw, mapping.load_valid(mapping.default_map_path())).staged[LEDGER]
    referenced = set(raw[LEDGER].get_column("corrects_transaction_id").drop_nulls().cast(pl.String))
    rows = [orjson.loads(line) for line in (tenant / "ledger_transactions.jsonl").read_bytes().splitlines()]
    good = set(staged.get_column("_source_id"))
    return next(r for r in rows if r["txn_type"] == "Charge" and r["id"] in good and r["id"] not in referenced
                and not r.get("is_deleted") and float(r["amount"]) > 0)


def _location_row(markdown: str, location: str, measure: str) -> dict[str, str]:
    """One measure's row of one location's reconciliation table (column -> amount text)."""
    section = next(s for s in markdown.split("### ") if s and f"({location})" in s.splitlines()[0])
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == measure:
            return dict(zip(header, cells, strict=True))
    raise AssertionError(f"no {measure} row for {location}")


def _cents(text: str) -> int:
    return int(text.replace(",", "").replace(".", ""))


@pytest.mark.slow
def test_a_corrected_quarantined_ledger_entry_is_released_into_dataverse(generated, tmp_path: Path) -> None:
    tenant = tmp_path / "tenant"
    shutil.copytree(generated(30, 5), tenant)
    entry = _pick_entry(tenant)
    path = tenant / "ledger_transactions.jsonl"
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    path.write_bytes(b"\n".join(orjson.dumps(r | {"patient_id": MISTYPED} if r["id"] == entry["id"] else r)
                                for r in lines) + b"\n")
    database, work = tmp_path / "db.duckdb", tmp_path
    with sandbox(work, tenant=tenant, graph=True, fallback_owner=TEAM) as served, DagsterInstance.ephemeral() as instance:
        resources = served.resources(database, mapping=confirmed_map(work / "mapping.yaml"))
        assert materialize(raw_assets, resources=resources, instance=instance, tags=range_tags()).success
        first = materialize(EVERYTHING, resources=resources, instance=instance)
        assert first.success
        with duckdb.connect(str(database), read_only=True) as conn:
            held = conn.execute("SELECT DISTINCT rule FROM staging.quarantine WHERE source_id = ?",
                                [entry["id"]]).fetchall()
            sent = conn.execute("SELECT count(*) FROM load.journal WHERE source_id = ?", [entry["id"]]).fetchone()
        assert held == [("orphan_reference",)] and sent == (0,)
        before = _reconciliation(first)

        (work / "corrections.yaml").write_text(
            "corrections:\n"
            f"  - {{object: {LEDGER}, record_id: {entry['id']}, field: patient_id, value: {entry['patient_id']},\n"
            "     by: Jane Doe, why: patient id mistyped at the front desk (receipt 1182)}\n")
        writes = served.wire.writes
        release = materialize(EVERYTHING, resources=resources, instance=instance, tags={RELEASE_TAG: "test"})
        assert release.success
        assert served.wire.writes - writes == 1  # exactly the corrected record
        with duckdb.connect(str(database), read_only=True) as conn:
            journal = conn.execute("SELECT outcome FROM load.journal WHERE source_id = ?", [entry["id"]]).fetchall()
            held = conn.execute("SELECT count(*) FROM staging.quarantine WHERE source_id = ?",
                                [entry["id"]]).fetchone()
            outcomes = conn.execute("SELECT object, record_id, field, outcome FROM staging.corrections").fetchall()
        assert journal == [("created",)] and held == (0,)
        assert outcomes == [(LEDGER, entry["id"], "patient_id", "applied")]
        with AuditStore(path=str(resources["audit"].path)).connect(read_only=True) as conn:
            trail = corrections_trail(conn)
        assert trail.select("by", "outcome", "before", "after").rows() == [
            ("Jane Doe", "applied", MISTYPED, entry["patient_id"])]
        staging_meta = next(e.materialization.metadata for e in release.get_asset_materialization_events()
                            if e.asset_key.path == ["staging", LEDGER])
        assert staging_meta["corrections"].value == {LEDGER: {"applied": 1}}
        after = _reconciliation(release)

    cents = round(float(entry["amount"]) * 100)
    row_before = _location_row(before, entry["location_id"], "Charge")
    row_after = _location_row(after, entry["location_id"], "Charge")
    assert _cents(row_before["quarantined"]) - _cents(row_after["quarantined"]) == cents
    assert _cents(row_after["Dataverse"]) - _cents(row_before["Dataverse"]) == cents
    assert _cents(row_after["Sensei all"]) == _cents(row_before["Sensei all"])
    assert row_after["within 0.01%"] == "yes"


def _reconciliation(result) -> str:
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key == GO_LIVE_KEY)
    return event.materialization.metadata["reconciliation"].value
