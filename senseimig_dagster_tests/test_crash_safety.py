"""Crash safety of the load: the writers run in a child process (``support/crash_load.py``) against the emulator
this process serves over HTTPS; the :class:`~.support.wire.Wire` in front of it SIGKILLs the child just before its
n-th write request (n and whether that request still lands drawn from a seeded random generator; some trials kill
the recovery run too), then the load runs again to completion. The final Dataverse state must equal a clean run's:
the same records by alternate key with the same values (lookups compared through their target's key), no duplicates,
nothing missing; and the load journal ends with every staged row, none failed."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from dagster import DagsterInstance, materialize

from senseimig_dagster.assets.dataverse_schema import dataverse_schema
from senseimig_dagster.assets.owners import staging_owners
from senseimig_dagster.assets.partitions import range_tags
from senseimig_dagster.assets.raw import raw_assets
from senseimig_dagster.assets.staging import staging_assets
from senseimig_dagster.assets.writers import WRITER_KEYS
from senseimig_dagster.load.document_journal import DOCUMENTS, SOURCE_FAULTS
from senseimig_dagster.load.journal import JOURNAL
from senseimig_dagster.sandbox.generator import generate
from senseimig_dagster_tests.support.constants import SEED_TEAM
from senseimig_dagster_tests.support.dataverse_state import keyed_state, state_diff
from senseimig_dagster_tests.support.environments import Sandbox, fast_tmp, open_emulator, sandbox
from senseimig_dagster_tests.support.maps import confirmed_map

pytestmark = pytest.mark.slow
PATIENTS, SEED, TRIALS = 8, 41, 8
REPO = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 90


@dataclass
class Base:
    """The DuckDB file (raw, staging, owners, schema changes) and emulator database (seed + schema) every run
    starts from, and the services."""

    work: Path
    served: Sandbox
    database: Path
    emulator: Path
    mapping: Path


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Base]:
    with fast_tmp(tmp_path_factory.mktemp("crash")) as work:
        yield from _base(work)


def _base(work: Path) -> Iterator[Base]:
    generate(work / "tenant", patients=PATIENTS, seed=SEED)
    store, app = open_emulator(work / "base.sqlite", journaled=True)
    with sandbox(work, tenant=work / "tenant", graph=True, app=app, fallback_owner=SEED_TEAM) as served, \
            DagsterInstance.ephemeral() as instance:
        mapping = confirmed_map(work / "mapping.yaml")
        res = served.resources(work / "base.duckdb", mapping=mapping, audit=work / "base-audit.duckdb")
        tags = range_tags()
        assert materialize(raw_assets, resources=res, instance=instance, tags=tags).success
        assert materialize([dataverse_schema, staging_assets, staging_owners], resources=res,
                           instance=instance).success
        store.close()
        yield Base(work, served, work / "base.duckdb", work / "base.sqlite", mapping)


class Trial:
    """One run directory: copies of the base files, a fresh audit store and Dagster instance."""

    def __init__(self, base: Base, name: str) -> None:
        self.base, self.dir = base, base.work / name
        self.dir.mkdir()
        shutil.copy(base.database, self.dir / "db.duckdb")
        shutil.copy(base.emulator, self.dir / "dv.sqlite")
        self.store, app = open_emulator(self.dir / "dv.sqlite", journaled=True)
        base.served.use(app)
        dv = base.served
        self.config = self.dir / "config.json"
        self.config.write_text(json.dumps({
            "database": str(self.dir / "db.duckdb"), "audit": str(self.dir / "audit.duckdb"),
            "home": str(self.dir / "dagster"), "mapping": str(base.mapping), "sensei_url": dv.sensei_url,
            "dataverse": dv.dataverse().model_dump(), "graph": dv.sharepoint().model_dump()}))

    def run(self, kill_at: int | None = None, land: bool = False) -> tuple[int, int]:
        """The loader as a child process; with ``kill_at``, SIGKILLed just before its ``kill_at``-th write (which
        still reaches Dataverse when ``land``). Returns its exit status and the writes it sent."""
        wire = self.base.served.wire
        wire.writes = 0
        child = subprocess.Popen([sys.executable, "-m", "senseimig_dagster_tests.support.crash_load", str(self.config)],
                                 cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 env={**os.environ, "DAGSTER_HOME": str(self.dir / "dagster")})

        def on_write(n: int) -> str:
            if kill_at is not None and n >= kill_at:
                os.kill(child.pid, signal.SIGKILL)
                return "land" if land and n == kill_at else "drop"
            return "land"

        wire.on_write = on_write if kill_at is not None else None
        try:
            _, err = child.communicate(timeout=RUN_TIMEOUT)
        finally:
            wire.on_write = None
        if child.returncode not in (0, -signal.SIGKILL):
            print(err.decode(errors="replace")[-3000:])
        return child.returncode, wire.writes

    def state(self) -> tuple[dict, list]:
        self.store.close()
        return keyed_state(self.dir / "dv.sqlite")

    def journal_problems(self) -> list[str]:
        """Staged rows missing from the journal's latest state, or whose latest outcome is ``failed`` (documents
        whose file is bad at the source aside: they fail with a named reason in every run)."""
        with duckdb.connect(str(self.dir / "db.duckdb"), read_only=True) as conn:
            latest = dict(conn.execute(f"""SELECT object || '/' || source_id, arg_max(outcome, "at")
                                           FROM {JOURNAL} GROUP BY ALL""").fetchall())
            staged = [f"{k.path[-1]}/{sid}" for k in WRITER_KEYS for (sid,) in conn.execute(
                f'SELECT CAST(_source_id AS VARCHAR) FROM staging."{k.path[-1]}"').fetchall()]
            bad_files = {f"document/{sid}" for sid, reason in conn.execute(
                f'SELECT source_id, arg_max(reason, "at") FROM {DOCUMENTS} GROUP BY ALL').fetchall()
                if reason and set(reason.split(";")) & set(SOURCE_FAULTS)}
        return [f"{key}: {latest.get(key, 'missing')}" for key in staged
                if latest.get(key) in (None, "failed") and key not in bad_files]


@pytest.fixture(scope="module")
def clean(base: Base) -> dict:
    trial = Trial(base, "clean")
    status, writes = trial.run()
    assert status == 0
    state, duplicates = trial.state()
    assert duplicates == [] and len(state) > 250
    assert trial.journal_problems() == []
    return {"state": state, "writes": writes}


# About 25 loader processes in a row: on a shared, loaded 2-core machine that alone passes the suite's 600 s hang
# guard, so this test gets a wider one (it is a guard against a hang, not a speed target).
@pytest.mark.timeout(1800)
def test_a_load_killed_at_random_points_and_run_again_ends_as_a_clean_run(base: Base, clean: dict) -> None:
    rng = random.Random(SEED)
    for i in range(TRIALS):
        trial = Trial(base, f"trial-{i}")
        kills = [(rng.randint(1, clean["writes"] - 1), rng.random() < 0.5)]
        if i % 4 == 3:  # the recovery run dies too, early (it may send only a few writes)
            kills.append((rng.randint(1, 3), rng.random() < 0.5))
        for n, (kill_at, land) in enumerate(kills):
            status, _ = trial.run(kill_at, land)
            if n and status == 0:
                break  # the recovery run finished before its kill_at-th write
            assert status == -signal.SIGKILL, (i, kill_at, status)
        status, _ = trial.run()
        assert status == 0, (i, kills)
        state, duplicates = trial.state()
        assert duplicates == [], (i, kills, duplicates[:5])
        assert state_diff(clean["state"], state) == [], (i, kills)
        assert trial.journal_problems() == [], (i, kills)
