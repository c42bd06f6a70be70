"""The ``senseimig`` commands that run the migration's own code (extract, demo, mapping, review, release, rollback); the package's
``__init__`` parses, this module acts. Every command runs the same assets and jobs as the UI, in the same Dagster instance."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from dagster import BetaWarning, PreviewWarning

from senseimig_dagster import mapping, settings
from senseimig_dagster.assets.release import RELEASE_TAG
from senseimig_dagster.cli import cockpit, demo, runs
from senseimig_dagster.cli import review as cli_review
from senseimig_dagster.definitions import defs
from senseimig_dagster.load.journal import mark_unkeyed_digests
from senseimig_dagster.mapping import candidates
from senseimig_dagster.mapping.propose import propose_file
from senseimig_dagster.objects import REGISTRY
from senseimig_dagster.privacy.encryption import KEY_ENV, is_plaintext
from senseimig_dagster.privacy.export import write_private_csv
from senseimig_dagster.privacy.upgrade import StoreUpgradeError, encrypt_store
from senseimig_dagster.resources import audit_store_from_env, dataverse_from_env
from senseimig_dagster.verify.differences import read_differences

warnings.filterwarnings("ignore", category=BetaWarning)  # the single-run backfill policy is beta in Dagster 1.13
warnings.filterwarnings("ignore", category=PreviewWarning)


def extract(args: argparse.Namespace) -> int:
    ok = runs.run_extract(defs, args.start, args.end)
    runs.print_inventory(settings.duckdb_path())
    return 0 if ok else 1


def run_demo(args: argparse.Namespace) -> int:
    if args.rollback:
        return demo.run_rollback(Path(args.workdir))
    return demo.run_demo(Path(args.workdir), patients=args.patients, seed=args.seed, source=args.source,
                         limits=args.limits, time_scale=args.time_scale)


def run_ui(args: argparse.Namespace) -> int:
    return cockpit.run_ui(Path(args.workdir), args.port)


def mapping_propose(args: argparse.Namespace) -> int:
    if args.from_dataverse:
        # Initialized as in a run: a secret configured as EnvVar is resolved, never printed.
        with dataverse_from_env().process_config_and_initialize().session() as session:
            catalog = candidates.from_dataverse(session.metadata, sorted({o.target.table for o in REGISTRY}),
                                                session.plan)
    else:
        catalog = candidates.offline()
    try:
        with runs.store(args.duckdb).connect(read_only=True) as conn:
            proposal = propose_file(conn, args.out, catalog, threshold=args.threshold)
    except mapping.MapInvalid as e:
        print(e, file=sys.stderr)
        return 1
    summary = proposal.summary()
    print(f"{args.out}: {summary['mapped']} fields proposed (mean confidence {summary['mean_confidence']}), "
          f"{summary['seeded']} seeded from the default map, {summary['unmapped']} unmapped:")
    for name in summary["unmapped_fields"]:  # type: ignore[union-attr]
        print(f"  {name}")
    return 0


def mapping_file(args: argparse.Namespace) -> int:
    if args.mapping_command == "show" and args.default:
        print(Path(mapping.default_map_path()).read_text(encoding="utf-8"), end="")
        return 0
    try:
        if args.mapping_command == "confirm":
            confirmation = mapping.confirm(args.path, args.by)
            print(f"{args.path}: confirmed by {confirmation.by} at {confirmation.at} ({confirmation.hash})")
            return 0
        fmap = mapping.load_valid(args.path)
    except (mapping.MapInvalid, mapping.NotConfirmable) as e:
        print(e, file=sys.stderr)
        return 1
    if args.mapping_command == "validate":
        print(f"{args.path}: valid ({len(fmap.objects)} objects)")
        return 0
    problems = mapping.check_confirmed(fmap)
    for obj in fmap.objects.values():
        written = sum(f.written for f in obj.fields.values())
        print(f"{obj.name:<20} -> {'/'.join(obj.tables):<28} {obj.mode:<6} {written}/{len(obj.fields)} fields written")
    print("gate: open (confirmed, unchanged)" if not problems else "gate: closed")
    for p in problems:
        print(f"  {p}")
    return 0 if not problems else 2


def review(args: argparse.Namespace) -> int:
    with runs.store(args.duckdb).connect(read_only=True) as conn:
        listed = cli_review.write_review(conn, Path(args.out), Path(args.values_out) if args.values_out else None)
    counts = listed.group_by("kind", "object").len().sort("kind", "object")
    for kind, obj, n in counts.iter_rows():
        print(f"{kind:<12} {obj:<24} {n}")
    print(f"{listed.height} record(s) to review in {args.out}" + (f"; values (0600) in {args.values_out}"
                                                                   if args.values_out else ""))
    return 0


def release(args: argparse.Namespace) -> int:
    """The ``release`` job in this Dagster instance (the corrections file: ``$SENSEIMIG_CORRECTIONS``)."""
    return 0 if runs.execute(defs, "release", tags={RELEASE_TAG: "corrections"}).success else 1


def export_differences(args: argparse.Namespace) -> int:
    """``verify.differences`` (values: PHI) to an owner-only, formula-safe CSV the person named."""
    with runs.store(args.duckdb).connect(read_only=True) as conn:
        rows = read_differences(conn, run_id=args.run_id, kind=args.kind, object_name=args.object)
    path = write_private_csv(rows, args.out)
    print(f"{path}: {rows.height} differing values (PHI: owner-only file; delete it when done)")
    return 0


def export_audit(args: argparse.Namespace) -> int:
    """The ``export_audit`` job: the audit log to an owner-only file (CSV cells formula-safe)."""
    result = runs.execute(defs, "export_audit", run_config={
        "ops": {"export_audit_op": {"config": {"path": args.out, "format": args.format}}}})
    if not result.success:
        print(f"export_audit failed (run {result.run_id}); see the Dagster UI", file=sys.stderr)
        return 1
    print(f"{args.out}: {result.output_for_node('export_audit_op')} audit rows (PHI: owner-only file)")
    return 0


def store_upgrade(args: argparse.Namespace) -> int:
    """Encrypt the migration store and the audit store where they are still plaintext. The journals' digests made
    without a key cannot be recomputed (they are kept, never the values), so the upgrade marks them: the next run
    compares those entries unkeyed and resends only what changed (``load/journal.py``)."""
    store = runs.store(args.duckdb)
    audit = audit_store_from_env(args.audit_db).process_config_and_initialize()
    stores = [("migration store", store.database, store.key, mark_unkeyed_digests),
              ("audit store", audit.path, audit.key, None)]
    failed = False
    for what, path, key, after_copy in stores:
        if not Path(path).exists() or not is_plaintext(path):
            print(f"{what} {path}: {'encrypted already' if Path(path).exists() else 'absent'}, nothing to do")
        elif not key:
            print(f"{what} {path}: set {KEY_ENV} (the key to encrypt it with) first", file=sys.stderr)
            failed = True
        else:
            try:
                done = encrypt_store(path, key, after_copy=after_copy)
            except StoreUpgradeError as exc:
                print(f"{what}: {exc}", file=sys.stderr)
                failed = True
                continue
            print(f"{what} {path}: encrypted ({len(done.rows)} tables, {sum(done.rows.values())} rows, the same "
                  "in both copies); the unencrypted file is removed")
    return 1 if failed else 0


def rollback(args: argparse.Namespace) -> int:
    """The ``rollback`` job (assets/audit.py) in this Dagster instance; prints its Markdown summary."""
    return runs.run_rollback(defs, remove_schema=args.remove_schema, force=args.force, run_id=args.run_id)
