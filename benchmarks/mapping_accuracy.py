"""Mapping proposer accuracy: the default map is the truth; the source side is disguised, the proposer
runs blind.

    .venv/bin/python benchmarks/mapping_accuracy.py [--seeds 50] [--patients 60] [--threshold 0.6]

A small tenant is generated once; per seed, every object's raw table is rebuilt in an in-memory DuckDB with its
columns renamed (synonyms, abbreviations, re-casing, prefixes/suffixes, shuffled order; some kept as they are),
plus 2-4 extra custom fields with realistic values (their truth: unmapped). The target environment gets look-alike
columns (``new_birthdate2``, ``cr123_lastname``, ...) that the truth never uses. The proposer sees only the
disguised names, the sample and the catalog, with ``seed_fields=False`` (object structure — table, mode, merge,
route, constants — still comes from the default map; no field-level hints).

Scored per field (truth: the default map's targets; a field it skips has truth "unmapped"):
  precision@1 = correct / mapped (mapped: a proposal at or above the threshold),
  recall = correct / fields the truth maps,
  confident_wrong_rate = mapped-but-wrong / all fields scored (junk and truth-skipped fields included).
A mapping is correct when its target is one of the truth's targets (a split or multi-target field counts once).
Ends with ``key=value`` lines.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import duckdb
import orjson
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from senseimig_dagster.mapping import default_map_path, mapfile  # noqa: E402
from senseimig_dagster.mapping.candidates import Candidate, CandidateCatalog, offline  # noqa: E402
from senseimig_dagster.mapping.profiles import profile_frame  # noqa: E402
from senseimig_dagster.mapping.propose import DEFAULT_THRESHOLD, propose  # noqa: E402
from senseimig_dagster.objects import OBJECTS  # noqa: E402
from senseimig_dagster.sandbox.generator import generate  # noqa: E402
from senseimig_dagster_tests.support.tenants import read_object  # noqa: E402

# How real exports rename things (written for the harness, not taken from the proposer's vocabulary).
RENAMES: dict[str, tuple[str, ...]] = {
    "first_name": ("given_name", "fname", "FirstName", "forename"),
    "last_name": ("surname", "lname", "LastName", "family_name"),
    "date_of_birth": ("dob", "birth_date", "BirthDate", "birthday"),
    "mobile_phone": ("cell_phone", "cell", "mobile", "MobileNumber"),
    "home_phone": ("home_ph", "HomeTel", "phone_home"),
    "work_phone": ("work_ph", "business_phone", "office_phone"),
    "email": ("email_address", "e_mail", "EmailAddr", "mail"),
    "postal_code": ("zip", "zip_code", "ZipCode", "postcode"),
    "address_line1": ("street", "addr1", "Address1", "street_address"),
    "address_line2": ("addr2", "Address2", "suite"),
    "city": ("town", "City"),
    "gender": ("sex", "Gender"),
    "created_at": ("created_on", "date_created", "CreatedDate", "create_dt"),
    "updated_at": ("modified_on", "last_modified", "UpdatedAt", "modified_dt"),
    "patient_number": ("chart_number", "pt_num", "PatientNo"),
    "id": ("record_id", "source_id", "ID"),
    "amount": ("amt", "Amount"),
    "procedure_code": ("proc_code", "cdt_code", "ProcedureCd"),
    "tooth": ("tooth_number", "tooth_num", "ToothNbr"),
    "service_date": ("svc_date", "date_of_service", "ServiceDt"),
    "billed_amount": ("billed_amt", "BilledAmt"),
    "paid_amount": ("paid_amt",),
    "nickname": ("preferred_name", "nick_name"),
    "title": ("salutation",),
    "npi": ("NPI", "npi_number"),
    "description": ("desc",),
    "notes": ("note_text", "Notes"),
    "status": ("Status", "stat"),
}
PREFIXES = ("pt_", "x_", "cust_", "src_", "fld_")
SUFFIXES = ("_c", "_fld", "_txt", "_val")
# Extra custom fields with realistic values (truth: unmapped).
def _junk(rng: random.Random, n: int) -> dict[str, list]:
    colors = ["Blue", "Green", "Red", "Teal"]
    return {
        "favorite_color": [rng.choice(colors) for _ in range(n)],
        "loyalty_points": [rng.randint(0, 900) for _ in range(n)],
        "emergency_contact_phone": [f"({rng.randint(201, 989)}) {rng.randint(200, 999)}-{rng.randint(1000, 9999)}"
                                    for _ in range(n)],
        "pharmacy_name": [rng.choice(["CVS", "Walgreens", "Rite Aid", "Costco"]) for _ in range(n)],
        "school_grade": [rng.choice(["K", "1", "2", "3", "4", "5"]) for _ in range(n)],
        "recall_interval_months": [rng.choice([3, 4, 6, 12]) for _ in range(n)],
        "consent_signed": [rng.random() < 0.8 for _ in range(n)],
        "xray_count": [rng.randint(0, 12) for _ in range(n)],
        "referral_coupon_code": [f"SPRING{rng.randint(10, 99)}" for _ in range(n)],
        "chair_side_notes": [rng.choice(["anxious", "prefers music", "gag reflex", None]) for _ in range(n)],
    }


LOOKALIKES = {  # extra columns a customer's environment might have (table, logical name, kind, display)
    "contact": [("new_birthdate2", "DateOnly", "Birthdate 2"), ("cr123_lastname", "String", "Last Name"),
                ("cr123_mobile", "String", "Mobile"), ("new_emailaddress", "String", "Email Address (old)"),
                ("cr123_npinumber", "String", "NPI Number"), ("new_zip", "String", "Zip")],
    "account": [("cr123_name", "String", "Name"), ("new_phone2", "String", "Phone 2")],
    "smig_billingledger": [("cr123_amount2", "Decimal", "Amount 2"), ("new_servicedate", "DateOnly",
                                                                       "Service Date (legacy)")],
    "smig_appointment": [("cr123_startdate", "DateOnly", "Start Date"), ("new_notes", "Memo", "Notes")],
}


def disguise(name: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.25:
        return name
    if roll < 0.6 and name in RENAMES:
        return rng.choice(RENAMES[name])
    out = name
    if rng.random() < 0.5:  # abbreviate words
        for word, short in (("number", "num"), ("amount", "amt"), ("address", "addr"), ("phone", "ph"),
                            ("date", "dt"), ("patient", "pt"), ("provider", "prov"), ("insurance", "ins"),
                            ("transaction", "txn"), ("description", "desc")):
            out = re.sub(rf"\b{word}\b|(?<=_){word}|{word}(?=_)", short, out)
    style = rng.random()
    if style < 0.3:
        out = "".join(p.capitalize() for p in out.split("_"))
    elif style < 0.45:
        out = out.upper()
    if rng.random() < 0.3:
        out = rng.choice(PREFIXES) + out
    elif rng.random() < 0.2:
        out = out + rng.choice(SUFFIXES)
    return out


def truth_targets() -> dict[tuple[str, str], set[str]]:
    fmap, errors = mapfile.load(default_map_path())
    assert fmap is not None and not errors
    out = {}
    for name, obj in fmap.objects.items():
        for f in obj.fields.values():
            out[name, f.name] = set(f.targets) if f.written and obj.mode != "skip" else set()
    return out


def with_lookalikes(catalog: CandidateCatalog) -> CandidateCatalog:
    for table, columns in LOOKALIKES.items():
        for name, kind, display in columns:
            c = Candidate(table, name, kind, display, 100 if kind == "String" else None, known=False)
            catalog.add(c)
            catalog.extra_columns.append(c)
    return catalog


def load_frames(tenant: Path) -> dict[str, pl.DataFrame]:
    frames = {}
    for name in OBJECTS:
        frame = read_object(tenant, name)
        nested = [c for c, t in frame.schema.items() if isinstance(t, pl.List | pl.Struct)]
        money = [f.name for f in OBJECTS[name].fields if f.type == "decimal" and f.name in frame.columns]
        frame = frame.with_columns(pl.col(c).cast(pl.Decimal(18, 6), strict=False) for c in money)  # as raw types it
        frames[name] = frame.with_columns(
            pl.col(c).map_elements(lambda v: orjson.dumps(v.to_list() if isinstance(v, pl.Series) else v).decode(),
                                   return_dtype=pl.String) for c in nested)
    return frames


def one_seed(seed: int, frames: dict[str, pl.DataFrame], base, threshold: float, truth) -> list[tuple]:
    rng = random.Random(seed)
    conn = duckdb.connect()
    profiles, originals = {}, {}
    for name, frame in frames.items():
        sample = frame.sample(min(frame.height, 2000), seed=seed) if frame.height else frame
        renames, used = {}, set()
        for col in frame.columns:
            new = disguise(col, rng)
            while new.lower() in used:
                new = new + "_2"
            used.add(new.lower())
            renames[col] = new
        sample = sample.rename(renames)
        originals.update({(name, renames[c]): c for c in frame.columns})
        junk = _junk(rng, sample.height)
        for col in rng.sample(sorted(junk), rng.randint(2, 4)):
            sample = sample.with_columns(pl.Series(col, junk[col]))
            originals[name, col] = None
        order = sample.columns[:]
        rng.shuffle(order)
        sample = sample.select(order)
        conn.register("sample", sample)
        types = dict(conn.execute("DESCRIBE sample").fetchall() and
                     [(r[0], r[1]) for r in conn.execute("DESCRIBE sample").fetchall()])
        types.update({c: "JSON" for c in sample.columns if originals.get((name, c)) and OBJECTS[name].field(
            originals[name, c]).type == "json"})
        profiles[name] = profile_frame(sample, types)  # blind: no registry object given
        conn.unregister("sample")
    catalog = with_lookalikes(offline())
    proposal = propose(profiles, catalog, base, threshold=threshold, seed_fields=False)
    rows = []
    for fp in proposal.all():
        original = originals.get((fp.object, fp.field))
        expected = truth.get((fp.object, original), set()) if original else set()
        chosen = fp.chosen.target if fp.chosen else None
        conf = fp.chosen.confidence if fp.chosen else (fp.ranked[0].confidence if fp.ranked else 0.0)
        rows.append((fp.object, original or f"<junk {fp.field}>", fp.field, chosen, expected, conf))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--patients", type=int, default=60)
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--show-wrong", type=int, default=15, help="print this many wrong proposals")
    args = parser.parse_args()
    figures = run(args.seeds, args.patients, args.threshold, show_wrong=args.show_wrong)
    for key, value in figures.items():
        print(f"{key}={value}")


def run(seeds: int, patients: int, threshold: float = DEFAULT_THRESHOLD, show_wrong: int = 0) -> dict[str, float]:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mapping-bench-") as folder:
        generate(Path(folder), patients=patients, seed=11)
        frames = load_frames(Path(folder))
    base, _ = mapfile.load(default_map_path())
    truth = truth_targets()
    total = mapped = correct = wrong = truth_mapped = 0
    buckets: Counter[tuple[float, bool]] = Counter()
    wrong_examples: Counter[str] = Counter()
    missed: Counter[str] = Counter()
    for seed in range(seeds):
        for obj, original, shown, chosen, expected, conf in one_seed(seed, frames, base, threshold, truth):
            total += 1
            truth_mapped += bool(expected)
            if chosen is None:
                if expected:
                    missed[f"{obj}.{original} -> {sorted(expected)}"] += 1
                continue
            mapped += 1
            ok = chosen in expected
            correct += ok
            wrong += not ok
            buckets[(min(0.9, int(conf * 10) / 10), ok)] += 1
            if not ok:
                wrong_examples[f"{obj}.{original} as {shown!r} -> {chosen} (truth {sorted(expected) or 'unmapped'})"] += 1
    seconds = time.perf_counter() - start
    print(f"{seeds} seeds, {total} fields scored ({truth_mapped} mapped by the truth), {mapped} proposed at >= "
          f"{threshold:.2f}, {correct} correct, {wrong} wrong, in {seconds:.1f} s")
    print("confidence bucket: proposals, share correct")
    for low in sorted({b for b, _ in buckets}):
        n = buckets[(low, True)] + buckets[(low, False)]
        print(f"  [{low:.1f}, {low + 0.1:.1f}): {n:5d}  {buckets[(low, True)] / n:.3f}")
    for example, n in wrong_examples.most_common(show_wrong):
        print(f"  wrong x{n}: {example}")
    for example, n in missed.most_common(show_wrong):
        print(f"  unmapped x{n}: {example}")
    return {"seeds": seeds, "fields": total,
            "precision_at_1": round(correct / mapped, 4) if mapped else 0.0,
            "recall": round(correct / truth_mapped, 4) if truth_mapped else 0.0,
            "confident_wrong_rate": round(wrong / total, 4) if total else 0.0}


if __name__ == "__main__":
    main()
