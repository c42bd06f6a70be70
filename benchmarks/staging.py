"""Staging at ≥1M rows: wall time and peak RSS of staging + Pandera validation, against a bare Polars read
+ write of the same rows in the same run; patient deduplication's time from 100k to 1M patients-equivalent; dedup
and provider-resolution precision and recall against the generator's defects.

    .venv/bin/python benchmarks/staging.py [--patients 12000] [--seed 7] [--workdir data/bench] [--repeat 3]
                                           [--sizes 100000,1000000]

The tenant is generated once into ``<workdir>/staging-tenant`` (12k patients ≈ 1.15M rows, ~35 s) and reused while
its manifest matches. Each measured path runs in its own child process so its peak RSS (VmHWM) is its own:

- bare: ``pl.read_ndjson`` of every object's JSONL file + ``write_parquet``, nothing else;
- staging: the same files read into typed frames (as the raw layer types them: dates, UTC datetimes, decimals) +
  ``stage_tenant`` + Pandera validation of every staged table (``validate_staged``, per routed table) + the staged
  tables, quarantine, merge map and provider decisions written to Parquet. ``staging_vs_bare`` compares these two
  end to end;
- bare and staging run ``--repeat`` times, interleaved, and the fastest run of each is compared (the least
  disturbed by other work on a shared machine); peak RSS is the largest over the staging runs;
- dedup: ``dedup.deduplicate`` on disguised copies of the tenant's patients (``benchmarks/dedup.py``'s disguise,
  one phone-digit permutation per copy) at each ``--sizes`` patients-equivalent; ``dedup_scaling`` is time per patient, largest / smallest (1.00 = linear).

Figures, not asserts: these machines are shared and noisy. Ends with ``key=value`` lines.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHONES = ("mobile_phone", "home_phone", "work_phone")


def _peak_rss_mb() -> float:
    # VmHWM, not ru_maxrss: on Linux a child's ru_maxrss starts from its parent's RSS at fork.
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def _files(tenant: Path) -> dict[str, Path]:
    from senseimig_dagster.objects import REGISTRY

    return {o.name: tenant / f"{o.endpoint}.jsonl" for o in REGISTRY if (tenant / f"{o.endpoint}.jsonl").exists()}


def child_bare(tenant: Path, out: Path) -> dict:
    """The floor: each object's JSONL read by Polars and written to Parquet."""
    import polars as pl

    started, rows = time.perf_counter(), 0
    for name, path in _files(tenant).items():
        frame = pl.read_ndjson(path, infer_schema_length=None)
        frame.write_parquet(out / f"{name}.parquet")
        rows += frame.height
        del frame
    return {"rows": rows, "seconds": time.perf_counter() - started, "peak_rss_mb": _peak_rss_mb()}


def read_raw(tenant: Path, name: str):
    """One object's rows typed as the raw layer types them: ``support.tenants.read_object`` (dates, datetimes) plus
    decimals exact, as ``sensei/records.py`` casts them (``wire.EXACT_DECIMAL``, ``DECIMAL(18,6)`` in DuckDB)."""
    import polars as pl

    from senseimig_dagster.objects import get
    from senseimig_dagster.sensei import wire
    from senseimig_dagster_tests.support.tenants import read_object

    frame = read_object(tenant, name)
    decimals = [f.name for f in get(name).fields if f.type == "decimal" and f.name in frame.columns]
    return frame.with_columns(pl.col(decimals).cast(pl.String).str.strip_chars().cast(wire.EXACT_DECIMAL, strict=False))


def _validate(result, fmap, plan) -> dict[str, int]:
    """Failures per staged object, the way the Pandera asset check counts them (routed objects per table)."""
    import polars as pl

    from senseimig_dagster.staging.validation import schema_for, validate_staged

    parents = {k: v.get_column("_source_id") for k, v in result.staged.items()}
    failures = {}
    for name, frame in result.staged.items():
        om = fmap.objects[name]
        parts = ([(t, frame.filter(pl.col("_table") == t)) for t in om.tables]
                 if om.route is not None and "_table" in frame.columns else [(None, frame)])
        reports = [validate_staged(part, schema_for(name, fmap, plan, table=t), parents) for t, part in parts]
        failures[name] = sum(n for r in reports for n in r.failure_counts.values())
    return failures


def child_staging(tenant: Path, out: Path) -> dict:
    """Our path without Dagster: typed read, stage, validate, write."""
    from senseimig_dagster.mapping import default_map_path, load_valid
    from senseimig_dagster.mapping.schema_plan import default_plan
    from senseimig_dagster.staging import dedup, providers
    from senseimig_dagster.staging.pipeline import stage_tenant
    from senseimig_dagster_tests.support.tenants import read_defects

    fmap = load_valid(default_map_path())
    plan = default_plan(fmap.prefix)
    t0 = time.perf_counter()
    raw = {name: read_raw(tenant, name) for name in _files(tenant)}
    t1 = time.perf_counter()
    result = stage_tenant(raw, fmap, plan=plan)
    t2 = time.perf_counter()
    failures = _validate(result, fmap, plan)
    t3 = time.perf_counter()
    for name, frame in result.staged.items():
        frame.write_parquet(out / f"staged_{name}.parquet")
    for name in ("quarantine", "merge_map", "provider_decisions"):
        getattr(result, name).write_parquet(out / f"{name}.parquet")
    t4 = time.perf_counter()
    defects = read_defects(tenant)
    d = dedup.evaluate_dedup(result.merge_map, dedup.dedup_truth(defects))
    p = providers.evaluate_providers(result.provider_decisions, providers.provider_truth(defects))
    return {"rows": sum(f.height for f in raw.values()), "read_seconds": t1 - t0, "stage_seconds": t2 - t1,
            "validate_seconds": t3 - t2, "write_seconds": t4 - t3, "seconds": t4 - t0,
            "staged_rows": sum(f.height for f in result.staged.values()), "quarantine_rows": result.quarantine.height,
            "conserved": bool(result.counts.get_column("conserved").all()),
            "validation_failures": failures, "peak_rss_mb": _peak_rss_mb(),
            "dedup_precision": d.precision, "dedup_recall": d.recall,
            "provider_precision": p.precision, "provider_recall": p.recall}


def child_dedup(tenant: Path, target: int) -> dict:
    """``dedup.deduplicate`` on ``target`` patients-equivalent: disguised copies of the tenant's patients."""
    from senseimig_dagster.staging import dedup
    from senseimig_dagster_tests.support.tenants import read_defects, read_object

    patients = read_object(tenant, "patient")
    copies = max(1, round(target / patients.height))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from dedup import disguised_copies  # benchmarks/dedup.py

    patients, truth = disguised_copies(patients, dedup.dedup_truth(read_defects(tenant)), copies)
    started = time.perf_counter()
    result = dedup.deduplicate(patients)
    seconds = time.perf_counter() - started
    e = dedup.evaluate_dedup(result.merge_map, truth)
    return {"patients": patients.height, "copies": copies, "seconds": seconds,
            "candidate_pairs": result.stats["scored_pairs"], "merged": result.stats["merged"],
            "precision": e.precision, "recall": e.recall, "peak_rss_mb": _peak_rss_mb()}


def _seconds(runs: list[dict]) -> str:
    return ", ".join(f"{r['seconds']:.1f} s" for r in runs)


def run_child(kind: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, *args], check=True, capture_output=True,
                         text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _tenant(work: Path, patients: int, seed: int) -> Path:
    from senseimig_dagster.sandbox.generator import generate, read_manifest

    tenant = work / "staging-tenant"
    try:
        manifest = read_manifest(tenant)
        reuse = manifest.patients == patients and manifest.seed == seed
    except (OSError, ValueError, KeyError):
        reuse = False
    if not reuse:
        shutil.rmtree(tenant, ignore_errors=True)
        started = time.perf_counter()
        generate(tenant, patients=patients, seed=seed)
        print(f"generated {patients:,} patients (seed {seed}) in {time.perf_counter() - started:.0f} s")
    return tenant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=12_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", default=str(ROOT / "data" / "bench"))
    parser.add_argument("--sizes", default="100000,1000000", help="dedup sizes, patients-equivalent")
    parser.add_argument("--repeat", type=int, default=3, help="bare and staging runs (interleaved; fastest kept)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        children = {"bare": lambda: child_bare(Path(args.path), Path(args.out)),
                    "staging": lambda: child_staging(Path(args.path), Path(args.out)),
                    "dedup": lambda: child_dedup(Path(args.path), int(args.out))}
        print(json.dumps(children[args.child]()))
        return

    from senseimig_dagster.sandbox.generator import read_manifest

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    tenant = _tenant(work, args.patients, args.seed)
    total = read_manifest(tenant).total_rows
    print(f"tenant: {args.patients:,} patients, {total:,} rows")
    scratch = Path(tempfile.mkdtemp(prefix="staging-bench-", dir=work))
    try:
        (scratch / "bare").mkdir()
        (scratch / "staging").mkdir()
        bares, stagings = [], []
        for _ in range(args.repeat):  # interleaved; the fastest of each is the least disturbed by neighbours
            bares.append(run_child("bare", "--path", str(tenant), "--out", str(scratch / "bare")))
            stagings.append(run_child("staging", "--path", str(tenant), "--out", str(scratch / "staging")))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    bare = min(bares, key=lambda r: r["seconds"])
    staged = min(stagings, key=lambda r: r["seconds"])
    print(f"bare read_ndjson + write_parquet: {bare['rows']:,} rows in {bare['seconds']:.1f} s (runs: "
          f"{_seconds(bares)}), peak RSS {bare['peak_rss_mb']:.0f} MB")
    print(f"staging runs: {_seconds(stagings)}; the fastest:")
    failing = {k: v for k, v in staged["validation_failures"].items() if v}
    print(f"staging: {staged['rows']:,} rows in {staged['seconds']:.1f} s (typed read {staged['read_seconds']:.1f}, "
          f"stage {staged['stage_seconds']:.1f}, validate {staged['validate_seconds']:.1f}, write "
          f"{staged['write_seconds']:.1f}), peak RSS {staged['peak_rss_mb']:.0f} MB; {staged['staged_rows']:,} staged, "
          f"{staged['quarantine_rows']:,} findings, conserved {staged['conserved']}, Pandera failures "
          f"{failing or 'none'}")
    work_seconds = staged["stage_seconds"] + staged["validate_seconds"]
    print(f"stage + validate alone / bare: {work_seconds / bare['seconds']:.2f}")

    runs = [run_child("dedup", "--path", str(tenant), "--out", size) for size in args.sizes.split(",")]
    for r in runs:
        print(f"dedup {r['patients']:,} patients ({r['copies']} copies): {r['candidate_pairs']:,} pairs scored, "
              f"{r['merged']:,} merged in {r['seconds']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB; "
              f"precision {r['precision']:.4f}, recall {r['recall']:.4f}")
    small, big = runs[0], runs[-1]
    scaling = (big["seconds"] / small["seconds"]) / (big["patients"] / small["patients"])
    print(f"dedup time per patient, {big['patients']:,} / {small['patients']:,}: {scaling:.2f} (1.00 = linear)")

    print(f"rows={staged['rows']}")
    print(f"staging_seconds={staged['seconds']:.1f}")
    print(f"bare_seconds={bare['seconds']:.1f}")
    print(f"staging_vs_bare={staged['seconds'] / bare['seconds']:.2f}")
    print(f"peak_rss_mb={max(r['peak_rss_mb'] for r in stagings):.0f}")
    print(f"dedup_seconds_small={small['seconds']:.1f}")
    print(f"dedup_seconds_large={big['seconds']:.1f}")
    print(f"dedup_scaling={scaling:.2f}")
    print(f"dedup_peak_rss_mb={max(r['peak_rss_mb'] for r in runs):.0f}")
    print(f"dedup_precision={staged['dedup_precision']:.4f}")
    print(f"dedup_recall={staged['dedup_recall']:.4f}")
    print(f"provider_resolution_precision={staged['provider_precision']:.4f}")
    print(f"provider_resolution_recall={staged['provider_recall']:.4f}")


if __name__ == "__main__":
    main()
