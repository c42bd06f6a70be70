"""Patient deduplication: precision, recall and time at 20k and 100k patients, and how time scales.

    .venv/bin/python benchmarks/dedup.py [--patients 20000] [--copies 5] [--seed 5] [--tenant DIR]

A tenant of ``--patients`` is generated (about a minute and 1 GB of JSONL for 20k, in a temporary folder unless
``--tenant`` names one to keep or reuse). The larger size is ``--copies`` disguised copies of its patients: each
copy gets new ids, its dates of birth moved back 400 days per copy (another birth year) and its phone digits and e-mails rewritten, the same
way for an original and its duplicates, so blocks keep a realistic size and the ground truth carries over.
Generating 100k patients outright would take several minutes and 5 GB for no better figure.

Also prints, on the generated tenant, provider resolution and chart-duplicate precision and recall. Figures,
not asserts: these machines are shared and noisy. Ends with ``key=value`` lines.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import tempfile
import time
from pathlib import Path

import polars as pl

from senseimig_dagster.sandbox.generator import generate
from senseimig_dagster.staging import chart_duplicates, dedup, providers
from senseimig_dagster_tests.support.tenants import read_defects, read_object

PHONES = ("mobile_phone", "home_phone", "work_phone")


def disguised_copies(patients: pl.DataFrame, truth: pl.DataFrame, copies: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``copies`` copies of the patients (copy 0 is the original) and the truth for all of them. Each copy gets its
    own permutation of the phone digits 2-9 (an area code still never starts with 0 or 1): a rotation would repeat
    every 8 copies, so phone blocks, and candidate pairs, would grow with the square of the copies."""
    frames, truths = [], []
    permutations = itertools.islice(itertools.permutations("23456789"), 0, None, 97)  # spread: not just the tail
    for i, perm in zip(range(copies), permutations, strict=False):
        digits = {str(d): (str(d) if d < 2 else perm[d - 2]) for d in range(10)}
        suffix = pl.lit(f"~{i}") if i else pl.lit("")
        frames.append(patients.with_columns(
            pl.col("id") + suffix,
            pl.col("date_of_birth") - pl.duration(days=400 * i),  # another birth year: blocks stay apart
            *(pl.col(c).str.replace_many(digits) for c in PHONES if i),
            pl.format("c{}.{}", pl.lit(i), pl.col("email")).alias("email") if i else pl.col("email"),
        ))
        truths.append(truth.with_columns(pl.col("duplicate_id") + suffix, pl.col("original_id") + suffix))
    return pl.concat(frames), pl.concat(truths)


def run_dedup(label: str, patients: pl.DataFrame, truth: pl.DataFrame) -> dict[str, float]:
    start = time.perf_counter()
    result = dedup.deduplicate(patients)
    seconds = time.perf_counter() - start
    e = dedup.evaluate_dedup(result.merge_map, truth)
    print(f"{label}: {patients.height:,} patients, {result.stats['candidate_pairs']:,} candidate pairs, "
          f"{result.stats['merged']:,} merged ({truth.height:,} injected) in {seconds:.2f} s; "
          f"precision {e.precision:.4f}, recall {e.recall:.4f} (fp {e.false_positives}, fn {e.false_negatives})")
    return {"patients": patients.height, "seconds": seconds, "precision": e.precision, "recall": e.recall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--copies", type=int, default=5)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--tenant", type=Path, help="generate into (or reuse) this folder and keep it")
    args = parser.parse_args()
    folder = args.tenant or Path(tempfile.mkdtemp(prefix="dedup-bench-"))
    try:
        if not (folder / "manifest.json").exists():
            start = time.perf_counter()
            generate(folder, patients=args.patients, seed=args.seed)
            print(f"generated {args.patients:,} patients (seed {args.seed}) in {time.perf_counter() - start:.0f} s")
        patients = read_object(folder, "patient")
        defects = read_defects(folder)
        truth = dedup.dedup_truth(defects)
        small = run_dedup("generated", patients, truth)
        big = run_dedup(f"{args.copies} copies", *disguised_copies(patients, truth, args.copies))
        scaling = (big["seconds"] / small["seconds"]) / (big["patients"] / small["patients"])
        print(f"time per patient, large / small: {scaling:.2f} (1.00 = linear)")

        frames = {o: read_object(folder, o) for o in providers.FREE_TEXT_OBJECTS}
        start = time.perf_counter()
        decisions = providers.resolve_providers(providers.free_text_rows(frames), read_object(folder, "provider"))
        p = providers.evaluate_providers(decisions, providers.provider_truth(defects))
        print(f"providers: {decisions.height:,} free-text rows in {time.perf_counter() - start:.2f} s; "
              f"precision {p.precision:.4f}, recall {p.recall:.4f}; {p.extra_correct} texts the generator calls "
              f"ambiguous resolved correctly by role or location")
        print(providers.decision_summary(decisions))

        merge_map = dedup.deduplicate(patients).merge_map
        charts = {o: read_object(folder, o) for o in ("clinical_note", "perio_reading", "treatment_plan_item")}
        start = time.perf_counter()
        collapsed = chart_duplicates.collapse_chart_duplicates(dedup.repoint_children(charts, merge_map))
        c = chart_duplicates.evaluate_chart(collapsed.log, chart_duplicates.chart_truth(defects))
        print(f"chart duplicates: {sum(f.height for f in charts.values()):,} rows in "
              f"{time.perf_counter() - start:.2f} s; collapsed {collapsed.counts}; "
              f"precision {c.precision:.4f}, recall {c.recall:.4f}")
    finally:
        if args.tenant is None:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"dedup_patients_small={small['patients']}")
    print(f"dedup_seconds_small={small['seconds']:.3f}")
    print(f"dedup_patients_large={big['patients']}")
    print(f"dedup_seconds_large={big['seconds']:.3f}")
    print(f"dedup_scaling={scaling:.2f}")
    print(f"dedup_precision={big['precision']:.4f}")
    print(f"dedup_recall={big['recall']:.4f}")
    print(f"provider_resolution_precision={p.precision:.4f}")
    print(f"provider_resolution_recall={p.recall:.4f}")
    print(f"chart_duplicate_precision={c.precision:.4f}")
    print(f"chart_duplicate_recall={c.recall:.4f}")


if __name__ == "__main__":
    main()
