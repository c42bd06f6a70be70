"""Extraction throughput and memory at ≥1M rows: (a) the CSV export path, (b) the REST path over HTTP on
127.0.0.1, and a bare ``polars.read_csv`` + DuckDB insert of the same files, all measured in the same run.

Each path runs in its own child process so its peak RSS is its own; the simulator runs in a separate process like a
real service. Figures, not asserts: these machines are shared and noisy, so compare the ratios.

    .venv/bin/python benchmarks/extract.py [--patients 12000] [--workdir data/bench]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def _peak_rss_mb() -> float:
    # VmHWM, not ru_maxrss: on Linux a child's ru_maxrss starts from its parent's RSS at fork.
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def child_bare(export_dir: Path, database: Path) -> dict:
    """The floor: read each CSV with Polars and insert it into DuckDB, nothing else."""
    import duckdb
    import polars as pl

    started, rows = time.perf_counter(), 0
    with duckdb.connect(str(database)) as conn:
        for path in sorted(export_dir.glob("*.csv")):
            frame = pl.read_csv(path, infer_schema=False)
            conn.register("frame", frame.to_arrow())
            conn.execute(f'CREATE OR REPLACE TABLE "{path.stem}" AS SELECT * FROM frame')
            conn.unregister("frame")
            rows += frame.height
            del frame
    return {"rows": rows, "seconds": time.perf_counter() - started, "peak_rss_mb": _peak_rss_mb()}


def child_core(database: Path) -> dict:
    """Our reader and caster without Dagster: every object's batches inserted into DuckDB as the IO manager does,
    so the constant cost of Dagster's per-partition events can be told apart from the per-row cost."""
    import duckdb

    from senseimig_dagster.io_managers import raw_table_ddl
    from senseimig_dagster.objects import REGISTRY
    from senseimig_dagster.resources import sensei_source_from_env

    source, rows = sensei_source_from_env(), 0
    started = time.perf_counter()
    with duckdb.connect(str(database)) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS raw")
        for obj in REGISTRY:
            conn.execute(raw_table_ddl(obj, f"raw.{obj.name}"))
            for batch in source.extract(obj, None, None).batches:
                conn.register("_batch", batch.frame.to_arrow())
                conn.execute(f"INSERT INTO raw.{obj.name} BY NAME SELECT * FROM _batch")
                conn.unregister("_batch")
                rows += batch.frame.height
    return {"rows": rows, "seconds": time.perf_counter() - started, "peak_rss_mb": _peak_rss_mb()}


def child_pipeline(database: Path) -> dict:
    """Our raw assets, as a user runs them: one single-run backfill over all partitions, through Dagster."""
    from dagster import DagsterInstance, materialize
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from senseimig_dagster.assets.partitions import modification_days
    from senseimig_dagster.assets.raw import raw_assets
    from senseimig_dagster.definitions import build_definitions

    resources = build_definitions(str(database)).resources
    keys = modification_days.get_partition_keys()
    started = time.perf_counter()
    with DagsterInstance.ephemeral() as instance:
        result = materialize(raw_assets, resources=resources, instance=instance,
                             tags={ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]})
    seconds = time.perf_counter() - started
    assert result.success
    import duckdb

    with duckdb.connect(str(database), read_only=True) as conn:
        rows = sum(conn.execute(f"SELECT count(*) FROM raw.{a.key.path[-1]}").fetchone()[0] for a in raw_assets)
    return {"rows": rows, "seconds": seconds, "peak_rss_mb": _peak_rss_mb()}


def run_child(kind: str, env: dict[str, str], *args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, *args], env={**os.environ, **env},
                         check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=12_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", default=str(ROOT / "data" / "bench"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "bare":
        print(json.dumps(child_bare(Path(args.path), Path(args.workdir) / "bare.duckdb")))
        return
    if args.child in ("pipeline", "core"):
        child = child_pipeline if args.child == "pipeline" else child_core
        print(json.dumps(child(Path(args.path))))
        return

    from senseimig_dagster.cli.standins import free_port, wait_ready
    from senseimig_dagster.sandbox.export_writer import write_export
    from senseimig_dagster.sandbox.generator import generate, read_manifest

    work = Path(args.workdir)
    tenant, export = work / "tenant", work / "export"
    try:
        reuse = read_manifest(tenant).patients == args.patients and read_manifest(tenant).seed == args.seed
    except (FileNotFoundError, OSError, ValueError, KeyError):
        reuse = False
    if not reuse:
        shutil.rmtree(work, ignore_errors=True)
        started = time.perf_counter()
        generate(tenant, patients=args.patients, seed=args.seed)
        print(f"generated tenant in {time.perf_counter() - started:.1f} s")
        write_export(tenant, export)
    total = read_manifest(tenant).total_rows
    print(f"tenant: {args.patients} patients, {total} rows")
    for stale in work.glob("*.duckdb*"):
        stale.unlink()

    bare = run_child("bare", {}, "--path", str(export), "--workdir", str(work))
    print(f"bare polars.read_csv + DuckDB insert: {bare['rows']} rows in {bare['seconds']:.1f} s, "
          f"peak RSS {bare['peak_rss_mb']:.0f} MB")
    export_env = {"SENSEIMIG_SOURCE": "export", "SENSEI_EXPORT_DIR": str(export)}
    exported = run_child("pipeline", export_env, "--path", str(work / "export.duckdb"))
    print(f"(a) export path: {exported['rows']} rows in {exported['seconds']:.1f} s, "
          f"peak RSS {exported['peak_rss_mb']:.0f} MB")
    export_core = run_child("core", export_env, "--path", str(work / "export_core.duckdb"))
    print(f"(a') export path without Dagster: {export_core['rows']} rows in {export_core['seconds']:.1f} s, "
          f"peak RSS {export_core['peak_rss_mb']:.0f} MB")

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "senseimig_dagster.cli", "sandbox", "sensei", "--data",
                               str(tenant), "--port", str(port)], cwd=ROOT)
    try:
        wait_ready(base_url, server)
        server_proc = psutil.Process(server.pid)
        rest_env = {"SENSEIMIG_SOURCE": "api", "SENSEI_BASE_URL": base_url}
        rest = run_child("pipeline", rest_env, "--path", str(work / "rest.duckdb"))
        rest_core = run_child("core", rest_env, "--path", str(work / "rest_core.duckdb"))
        server_rss = server_proc.memory_info().rss / 2**20
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"(b) REST path: {rest['rows']} rows in {rest['seconds']:.1f} s, client peak RSS "
          f"{rest['peak_rss_mb']:.0f} MB, simulator RSS at end {server_rss:.0f} MB")

    print(f"(b') REST path without Dagster: {rest_core['rows']} rows in {rest_core['seconds']:.1f} s, "
          f"peak RSS {rest_core['peak_rss_mb']:.0f} MB")

    print(f"export_core_vs_bare={export_core['seconds'] / bare['seconds']:.2f}")
    print(f"rest_core_rows_per_s={rest_core['rows'] / rest_core['seconds']:.0f}")
    print(f"rows={total}")
    print(f"export_rows_per_s={exported['rows'] / exported['seconds']:.0f}")
    print(f"export_vs_bare={exported['seconds'] / bare['seconds']:.2f}")
    print(f"rest_rows_per_s={rest['rows'] / rest['seconds']:.0f}")
    print(f"peak_rss_mb={max(exported['peak_rss_mb'], rest['peak_rss_mb']):.0f}")


if __name__ == "__main__":
    main()
