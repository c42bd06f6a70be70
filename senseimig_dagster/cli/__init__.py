"""``senseimig``: a thin command line for headless use. The Dagster UI stays the main surface; every command here
runs the same assets and jobs, recorded in the same Dagster instance (``$DAGSTER_HOME``, default ``.dagster_home``)
so ``make ui`` shows what the CLI did. This module parses; ``commands.py`` acts, ``runs.py`` runs jobs in the shared
instance (the demo and the benchmarks use it too); ``senseimig sandbox ...`` starts the local stand-ins
(``sandbox/cli.py``)."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Sequence

from senseimig_dagster import settings
from senseimig_dagster.sandbox.cli import add_sandbox_commands, positive_float


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="senseimig", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_sandbox_commands(sub)

    ext = sub.add_parser("extract", help="land every object in DuckDB for a range of modification days")
    ext.add_argument("--start", type=dt.date.fromisoformat, help="first day (default: first partition)")
    ext.add_argument("--end", type=dt.date.fromisoformat, help="last day, inclusive (default: today)")
    ext.set_defaults(command_name="extract")

    demo = sub.add_parser("demo", help="the whole migration of a sandbox tenant into the Dataverse emulator, "
                                       "with a summary (exit 1 when a check fails)")
    demo.add_argument("--workdir", default="data/demo")
    demo.add_argument("--patients", type=int, default=2000)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--source", choices=["api", "export"], default="api")
    demo.add_argument("--limits", choices=["on", "off"], default="off",
                      help="the emulator's service protection limits (off: throttling doesn't dominate the demo)")
    demo.add_argument("--time-scale", type=positive_float, default=1.0, help="the emulator's time scale")
    demo.add_argument("--rollback", action="store_true",
                      help="instead: start the demo's emulator again and roll its migration back (schema too)")
    demo.set_defaults(command_name="run_demo")
    ui = sub.add_parser("ui", help="the cockpit: the stand-ins on a demo's databases, serving the tenant it left "
                                   "current, and the Dagster UI with the demo's settings (Ctrl-C stops all)")
    ui.add_argument("--workdir", default="data/demo")
    ui.add_argument("--port", type=int, default=3000, help="the Dagster UI's port")
    ui.set_defaults(command_name="run_ui")

    maps = sub.add_parser("mapping", help="the field map: validate, review, confirm").add_subparsers(
        dest="mapping_command", required=True)
    val = maps.add_parser("validate", help="check a map file; every problem with its line and fix")
    val.add_argument("path")
    val.set_defaults(command_name="mapping_file")
    conf = maps.add_parser("confirm", help="record who confirmed the reviewed map (refused while fields are proposed)")
    conf.add_argument("path")
    conf.add_argument("--by", required=True, help="name of the person confirming")
    conf.set_defaults(command_name="mapping_file")
    show = maps.add_parser("show", help="objects, targets and the gate's state (exit 2: gate closed)")
    show.add_argument("path", nargs="?", default=settings.mapping_path())
    show.add_argument("--default", action="store_true", help="print the shipped default map instead")
    show.set_defaults(command_name="mapping_file")
    prop = maps.add_parser("propose", help="propose a map from the raw tables (review it, then confirm)")
    prop.add_argument("--out", default="mapping.yaml")
    prop.add_argument("--duckdb", default=None, help="DuckDB file with the raw tables (default: $SENSEIMIG_DUCKDB)")
    where = prop.add_mutually_exclusive_group()
    where.add_argument("--from-dataverse", action="store_true",
                       help="also offer the environment's own columns (EntityDefinitions)")
    where.add_argument("--offline", action="store_true", help="schema plan + standard columns only (default)")
    prop.add_argument("--threshold", type=float, default=0.6, help="proposals below it stay unmapped")
    prop.set_defaults(command_name="mapping_propose")

    rev = sub.add_parser("review", help="the quarantined and rejected records to review (ids, reasons, fields; no "
                                        "values) as CSV")
    rev.add_argument("--out", default="review.csv")
    rev.add_argument("--values-out", default=None,
                     help="also write the offending values (PHI) to this file, readable by its owner only (0600)")
    rev.add_argument("--duckdb", default=None, help="DuckDB file of the migration (default: $SENSEIMIG_DUCKDB)")
    rev.set_defaults(command_name="review")
    rel = sub.add_parser("release", help="re-stage with the corrections file applied and send exactly the corrected "
                                         "records, then reconcile the ledger (the release job)")
    rel.set_defaults(command_name="release")
    export = sub.add_parser("export", help="write PHI the migration keeps in its stores to a file, on request "
                                           "(owner-only, formula-safe cells)").add_subparsers(
        dest="export_command", required=True)
    diffs = export.add_parser("differences", help="values the read-backs found different (verify.differences)")
    diffs.add_argument("--out", required=True, help="CSV file to write (it holds PHI: keep it somewhere safe)")
    diffs.add_argument("--run-id", default=None, help="one run's differences (default: every run's)")
    diffs.add_argument("--kind", choices=["verify", "sample"], default=None,
                       help="the writers' field checks or the sample migration (default: both)")
    diffs.add_argument("--object", default=None, help="one Sensei object's differences")
    diffs.add_argument("--duckdb", default=None, help="the migration's DuckDB file (default: $SENSEIMIG_DUCKDB)")
    diffs.set_defaults(command_name="export_differences")
    audit = export.add_parser("audit", help="the audit log (audit.writes, before-images included)")
    audit.add_argument("--out", required=True, help="file to write (it holds PHI: keep it somewhere safe)")
    audit.add_argument("--format", choices=["csv", "parquet"], default="csv")
    audit.set_defaults(command_name="export_audit")

    stores = sub.add_parser("store", help="the local stores").add_subparsers(dest="store_command", required=True)
    upgrade = stores.add_parser("upgrade", help="encrypt stores made before SENSEIMIG_STORE_KEY was set (copied, "
                                                "checked table by table, then the unencrypted file removed)")
    upgrade.add_argument("--duckdb", default=None, help="the migration's DuckDB file (default: $SENSEIMIG_DUCKDB)")
    upgrade.add_argument("--audit-db", default=None, help="the audit store (default: $SENSEIMIG_AUDIT_DB)")
    upgrade.set_defaults(command_name="store_upgrade")

    back = sub.add_parser("rollback", help="return Dynamics to its pre-migration state from the audit log")
    back.add_argument("--remove-schema", action="store_true", help="also remove the schema the migration created")
    back.add_argument("--force", action="store_true", help="also undo records people changed since the migration")
    back.add_argument("--run-id", default=None, help="undo only this run's writes")
    back.set_defaults(command_name="rollback")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "sandbox":
        return args.func(args)
    # Here, not at the top: Dagster and the asset graph take seconds to load, and `senseimig sandbox` (which starts
    # every stand-in server) needs neither.
    from senseimig_dagster.cli import commands

    return getattr(commands, args.command_name)(args)

