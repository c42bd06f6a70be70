"""The migration as a real deployment runs it: every setting from the environment (``build_definitions``), the app
registration's secret and the Sensei API key SET in the environment (so resources take them as ``EnvVar`` and
Dagster resolves them in each run) to values the stand-ins accept and the sandbox defaults are not. The demo's
phases (extract, inventory, confirmed map, stage, schema, owners, load with its checks, reconciliation) pass with
documents in SharePoint (the Graph stand-in), ``mapping propose --from-dataverse`` reads the environment's columns,
and ``rollback`` removes what the load made, SharePoint files included.

The stores are encrypted (the store key is set, as a real deployment's must be). Then the leak test: every file the
run left - the encrypted stores, the Dagster instance's event storage, compute logs and run storage, the map, the
proposal, the temp folder - holds none of the tenant's PHI values."""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from senseimig_dagster.cli import commands, demo, runs
from senseimig_dagster.definitions import build_definitions
from senseimig_dagster.load.document_journal import DOCUMENTS
from senseimig_dagster.privacy.encryption import KEY_ENV, connection
from senseimig_dagster.sandbox.generator import generate
from senseimig_dagster_tests.support.constants import SEED_TEAM, SITE_URL
from senseimig_dagster_tests.support.environments import sandbox
from senseimig_dagster_tests.support.phi_scan import files_under, leaks, tenant_phi

pytestmark = pytest.mark.slow
PATIENTS, SEED = 15, 7
CLIENT_ID = "sandbox-client"
SECRET, API_KEY = "a-real-Secret~only-in-the-environment", "a-real-sensei-key"
STORE_KEY = "a-real-store-key~kept-in-the-secret-store"


@dataclass
class Deployed:
    run: demo.DemoRun
    folder: Path  # everything the migration wrote: stores, map, Dagster instance, temp files
    sandbox: Path  # the stand-ins' own files (not the migration's)
    tenant: Path
    proposed: int
    rolled_back: int
    sharepoint_files_after_rollback: int


def _environment(served, folder: Path) -> dict[str, str]:
    return {
        "DATAVERSE_URL": served.dataverse_url, "AZURE_AUTHORITY_HOST": served.authority,
        "AZURE_TENANT_ID": served.entra.tenant, "AZURE_CLIENT_ID": CLIENT_ID, "AZURE_CLIENT_SECRET": SECRET,
        "DATAVERSE_CA_BUNDLE": served.ca_bundle, "SHAREPOINT_SITE_URL": SITE_URL, "GRAPH_URL": served.graph_url,
        "GRAPH_CA_BUNDLE": served.ca_bundle, "SENSEI_BASE_URL": served.sensei_url, "SENSEI_API_KEY": API_KEY,
        "SENSEIMIG_SOURCE": "api", "SENSEIMIG_DUCKDB": str(folder / "senseimig.duckdb"),
        "SENSEIMIG_AUDIT_DB": str(folder / "audit.duckdb"), "SENSEIMIG_MAPPING": str(folder / "mapping.yaml"),
        "SENSEIMIG_FALLBACK_OWNER": SEED_TEAM, "DAGSTER_HOME": str(folder / "dagster_home"), KEY_ENV: STORE_KEY}


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    work = tmp_path_factory.mktemp("deployed")
    tenant, folder, stand_ins = work / "tenant", work / "migration", work / "sandbox"
    generate(tenant, patients=PATIENTS, seed=SEED)
    (folder / "tmp").mkdir(parents=True)
    with sandbox(stand_ins, tenant=tenant, graph=True, sensei_keys=(API_KEY,)) as served, \
            pytest.MonkeyPatch.context() as env:
        served.entra.add_app(CLIENT_ID, SECRET)  # the sandbox default secret no longer works
        for name, value in _environment(served, folder).items():
            env.setenv(name, value)
        env.setattr(tempfile, "tempdir", str(folder / "tmp"))  # temp files of the run land where they are scanned
        env.chdir(folder)  # a relative default would write here, and be scanned
        run = demo.DemoRun(defs=build_definitions())
        demo.migrate(run, tenant)
        proposal = argparse.Namespace(from_dataverse=True, out=str(folder / "proposed.yaml"), duckdb=None,
                                      threshold=0.6)
        proposed = commands.mapping_propose(proposal)
        rolled_back = runs.run_rollback(build_definitions(), remove_schema=True)
        with sqlite3.connect(stand_ins / "graph.sqlite") as conn:
            files = conn.execute("SELECT count(*) FROM items WHERE parent_id IS NOT NULL").fetchone()[0]
        yield Deployed(run, folder, stand_ins, tenant, proposed, rolled_back, files)


def test_every_phase_and_check_passes_with_the_secrets_set(deployed: Deployed) -> None:
    failed = [(a, c, deployed.run.reasons.get((a, c))) for a, c, ok in deployed.run.checks if not ok]
    assert deployed.run.failures == [] and failed == []
    assert {p.name for p in deployed.run.phases} >= {"extract + inventory", "load + verify", "reconcile"}
    with connection(deployed.folder / "senseimig.duckdb", STORE_KEY, alias="s", read_only=True) as conn:
        outcomes = dict(conn.execute(f"SELECT outcome, count(*) FROM {DOCUMENTS} GROUP BY ALL").fetchall())
    assert outcomes.get("sharepoint", 0) > 0 and outcomes.get("note", 0) > 0, outcomes


def test_mapping_propose_reads_the_environment_and_rollback_removes_the_sharepoint_files(deployed: Deployed) -> None:
    assert deployed.proposed == 0 and (deployed.folder / "proposed.yaml").exists()
    assert deployed.rolled_back == 0
    assert deployed.sharepoint_files_after_rollback == 0


def test_the_stores_are_encrypted(deployed: Deployed) -> None:
    for name in ("senseimig.duckdb", "audit.duckdb"):
        with pytest.raises(duckdb.Error, match="encrypt"):
            duckdb.connect(str(deployed.folder / name), read_only=True)


def test_no_phi_in_any_file_the_run_left(deployed: Deployed) -> None:
    values = tenant_phi(deployed.tenant)
    assert len(values) > 10 * PATIENTS  # names, e-mails, phones, birth dates, addresses, notes, file names
    home = deployed.folder / "dagster_home"
    files = files_under(deployed.folder)  # the encrypted stores too: nothing of them may read as plaintext
    assert any(p.is_relative_to(home) and p.suffix == ".db" for p in files)  # the event storage is scanned
    assert leaks(files, values) == {}
