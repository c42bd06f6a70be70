"""``senseimig``: a thin command line for headless use. The Dagster UI stays the main surface; every command here
runs the same assets and jobs, recorded in the same Dagster instance (``$DAGSTER_HOME``, default ``.dagster_home``)
so ``make ui`` shows what the CLI did."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from senseimig_dagster import settings


def _instance():
    from dagster import DagsterInstance

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    return DagsterInstance.get()


def run_extract(start: dt.date | None, end: dt.date | None) -> bool:
    """Materialize raw assets over a range of modification days in one run, then the inventory."""
    from senseimig_dagster.assets.partitions import range_tags
    from senseimig_dagster.definitions import defs

    quiet = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}  # Dagster's per-event DEBUG lines off
    instance = _instance()
    extract = defs.resolve_job_def("extract").execute_in_process(
        instance=instance, raise_on_error=False, run_config=quiet,
        tags=range_tags(start and start.isoformat(), end and end.isoformat()))
    if not extract.success:
        print(f"extract failed (run {extract.run_id}); see the Dagster UI or the log above", file=sys.stderr)
        return False
    inventory = defs.resolve_job_def("take_inventory").execute_in_process(instance=instance, raise_on_error=False,
                                                                     run_config=quiet)
    checks = inventory.get_asset_check_evaluations()
    for check in checks:
        print(f"check {check.check_name}: {'passed' if check.passed else 'FAILED'}")
    return inventory.success and all(c.passed for c in checks)


def print_inventory(database: str) -> None:
    import duckdb

    with duckdb.connect(database, read_only=True) as conn:
        print(conn.sql("SELECT * FROM inventory.record_counts ORDER BY object"))
        print(conn.sql("PIVOT (SELECT coalesce(location_name, location_id, '(none)') AS location, object, records "
                       "FROM inventory.location_counts) ON location USING sum(records) ORDER BY object"))


def _cmd_generate(args: argparse.Namespace) -> int:
    from senseimig_dagster.sandbox.generator import generate

    if args.day2_from:  # issue 6 item 6: the tenant after a day of cutover, for delta pickup
        from senseimig_dagster.sandbox.generator.day2 import CHANGES_FILE, generate_day2

        changes = generate_day2(Path(args.day2_from), Path(args.out), at=args.at, seed=args.seed)
        print(f"day 2 of {args.day2_from}: {len(changes)} changed records into {args.out} (see {CHANGES_FILE})")
        return 0
    manifest = generate(Path(args.out), patients=args.patients, seed=args.seed)
    print(f"generated {manifest.total_rows} rows for {args.patients} patients into {args.out}")
    return 0


def _cmd_sensei(args: argparse.Namespace) -> int:
    from senseimig_dagster.sandbox.sensei_sim import run_sensei_server

    # The key comes from the environment, never the command line (where ps would show it).
    api_key = os.environ.get("SENSEI_API_KEY", settings.SANDBOX_API_KEY)  # as resources.py reads it
    run_sensei_server(Path(args.data), args.host, args.port, api_key)
    return 0


def _cmd_dataverse(args: argparse.Namespace) -> int:
    from senseimig_dagster.sandbox.dataverse_emulator.server import run_dataverse_server

    entra_port = args.entra_port if args.entra_port is not None else (args.port + 1 if args.port else 0)
    seed = {"seed": Path(args.seed)} if args.seed else {}  # default: the packaged seed file
    run_dataverse_server(Path(args.db), args.host, args.port, tls=args.tls, limits_enabled=args.limits == "on",
                         time_scale=args.time_scale, entra_port=entra_port,
                         hold_execution=None if args.hold is None else args.hold == "on", **seed)
    return 0


def _cmd_graph(args: argparse.Namespace) -> int:
    from senseimig_dagster.sandbox.graph.server import run_graph_server

    run_graph_server(Path(args.db), args.host, args.port, tls=args.tls)
    return 0


def _positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _cmd_export(args: argparse.Namespace) -> int:
    from senseimig_dagster.sandbox.export_writer import write_export

    rows = write_export(Path(args.data), Path(args.out))
    print(f"wrote {sum(rows.values())} rows in {len(rows)} CSV files into {args.out}")
    return 0


def _cmd_extract(args: argparse.Namespace) -> int:
    ok = run_extract(args.start, args.end)
    print_inventory(settings.duckdb_path())
    return 0 if ok else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from senseimig_dagster.demo import run_demo, run_rollback

    if args.rollback:
        return run_rollback(Path(args.workdir))
    return run_demo(Path(args.workdir), patients=args.patients, seed=args.seed, source=args.source,
                    limits=args.limits, time_scale=args.time_scale)


def _cmd_mapping_propose(args: argparse.Namespace) -> int:
    import duckdb

    from senseimig_dagster import mapping
    from senseimig_dagster.mapping import candidates
    from senseimig_dagster.mapping.propose import propose_file

    if args.from_dataverse:
        from senseimig_dagster.objects import OBJECTS
        from senseimig_dagster.resources import dataverse_from_env

        dataverse = dataverse_from_env()
        with dataverse.client() as client:
            catalog = candidates.from_dataverse(dataverse.metadata(client), sorted(
                {o.target.table for o in OBJECTS.values()}), dataverse.plan())
    else:
        catalog = candidates.offline()
    try:
        with duckdb.connect(args.duckdb or settings.duckdb_path(), read_only=True) as conn:
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


def _cmd_mapping(args: argparse.Namespace) -> int:
    from senseimig_dagster import mapping

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


def _cmd_rollback(args: argparse.Namespace) -> int:
    """The ``rollback`` job (assets/audit.py) in this Dagster instance; prints its Markdown summary."""
    from senseimig_dagster.definitions import defs

    config = {"remove_schema": args.remove_schema, "force": args.force, "run_id": args.run_id}
    result = defs.resolve_job_def("rollback").execute_in_process(
        instance=_instance(), raise_on_error=False,
        run_config={"ops": {"rollback_op": {"config": config}},
                    "loggers": {"console": {"config": {"log_level": "INFO"}}}})
    if result.success:
        print(result.output_for_node("rollback_op"))
        return 0
    print(f"rollback did not finish (run {result.run_id}); run it again (it resumes), or see the Dagster UI",
          file=sys.stderr)
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="senseimig", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sandbox = sub.add_parser("sandbox", help="local stand-ins for Sensei Cloud and Dataverse").add_subparsers(
        dest="sandbox_command", required=True)
    gen = sandbox.add_parser("generate", help="write a deterministic synthetic Sensei tenant")
    gen.add_argument("--out", required=True)
    gen.add_argument("--patients", type=int, default=1000)
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--day2-from", default=None, metavar="TENANT",
                     help="instead: write TENANT plus a day of cutover changes (new, edited, deleted records)")
    gen.add_argument("--at", type=dt.datetime.fromisoformat, default=None,
                     help="day 2's clock, ISO with offset (default: now); changes fall in the 20 hours before it")
    gen.set_defaults(func=_cmd_generate)
    sim = sandbox.add_parser("sensei", help="serve a tenant over the Sensei REST API",
                             description="Serve a tenant over the Sensei REST API. The accepted Csd-Api-Key is "
                                         "read from $SENSEI_API_KEY (default: the sandbox key), never from the "
                                         "command line.")
    sim.add_argument("--data", required=True)
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=settings.SANDBOX_SENSEI_PORT)
    sim.set_defaults(func=_cmd_sensei)
    dv = sandbox.add_parser("dataverse", help="serve the Dataverse Web API emulator and its Entra ID stand-in",
                            description="Serve the Dataverse Web API emulator, with records kept in --db, and an "
                                        "Entra ID stand-in issuing its tokens (client-credentials flow; sandbox "
                                        "client id and secret). Prints the URLs, tenant and client id.")
    dv.add_argument("--host", default="127.0.0.1")
    dv.add_argument("--port", type=int, default=8766, help="0 picks a free port")
    dv.add_argument("--entra-port", type=int, default=None,
                    help="port of the token endpoint (default: --port + 1, or a free port when --port is 0)")
    dv.add_argument("--db", required=True, help="SQLite file holding the records (created if missing)")
    dv.add_argument("--tls", action="store_true", help="serve HTTPS with a freshly generated local CA (path printed)")
    dv.add_argument("--limits", choices=["on", "off"], default="on", help="service protection limits")
    dv.add_argument("--hold", choices=["on", "off"], default=None,
                    help="keep each request for its modelled execution time (default: on when limits are on)")
    dv.add_argument("--seed", default=None, help="JSON or YAML seed file: organization, business unit, users, team, "
                                                 "app registrations (default: the packaged sandbox seed)")
    dv.add_argument("--time-scale", type=_positive_float, default=1.0,
                    help="compress the 300 s window and modelled execution times by this factor")
    dv.set_defaults(func=_cmd_dataverse)
    gr = sandbox.add_parser("graph", help="serve the Microsoft Graph stand-in (SharePoint document libraries)",
                            description="Serve the Graph drive stand-in (sites, libraries, files, upload sessions "
                                        "kept in --db) with an Entra ID stand-in on the same port.")
    gr.add_argument("--host", default="127.0.0.1")
    gr.add_argument("--port", type=int, default=8767, help="0 picks a free port")
    gr.add_argument("--db", required=True, help="SQLite file holding sites, files and upload sessions")
    gr.add_argument("--tls", action="store_true", help="serve HTTPS with a freshly generated local CA (path printed)")
    gr.set_defaults(func=_cmd_graph)
    exp = sandbox.add_parser("export", help="write a tenant as Sensei's CSV Data Export")
    exp.add_argument("--data", required=True)
    exp.add_argument("--out", required=True)
    exp.set_defaults(func=_cmd_export)

    ext = sub.add_parser("extract", help="land every object in DuckDB for a range of modification days")
    ext.add_argument("--start", type=dt.date.fromisoformat, help="first day (default: first partition)")
    ext.add_argument("--end", type=dt.date.fromisoformat, help="last day, inclusive (default: today)")
    ext.set_defaults(func=_cmd_extract)

    demo = sub.add_parser("demo", help="the whole migration of a sandbox tenant into the Dataverse emulator, "
                                       "with a summary (exit 1 when a check fails)")
    demo.add_argument("--workdir", default="data/demo")
    demo.add_argument("--patients", type=int, default=2000)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--source", choices=["api", "export"], default="api")
    demo.add_argument("--limits", choices=["on", "off"], default="off",
                      help="the emulator's service protection limits (off: throttling doesn't dominate the demo)")
    demo.add_argument("--time-scale", type=_positive_float, default=1.0, help="the emulator's time scale")
    demo.add_argument("--rollback", action="store_true",
                      help="instead: start the demo's emulator again and roll its migration back (schema too)")
    demo.set_defaults(func=_cmd_demo)

    maps = sub.add_parser("mapping", help="the field map: validate, review, confirm").add_subparsers(
        dest="mapping_command", required=True)
    val = maps.add_parser("validate", help="check a map file; every problem with its line and fix")
    val.add_argument("path")
    val.set_defaults(func=_cmd_mapping)
    conf = maps.add_parser("confirm", help="record who confirmed the reviewed map (refused while fields are proposed)")
    conf.add_argument("path")
    conf.add_argument("--by", required=True, help="name of the person confirming")
    conf.set_defaults(func=_cmd_mapping)
    show = maps.add_parser("show", help="objects, targets and the gate's state (exit 2: gate closed)")
    show.add_argument("path", nargs="?", default=os.environ.get("SENSEIMIG_MAPPING", "mapping.yaml"))
    show.add_argument("--default", action="store_true", help="print the shipped default map instead")
    show.set_defaults(func=_cmd_mapping)
    prop = maps.add_parser("propose", help="propose a map from the raw tables (review it, then confirm)")
    prop.add_argument("--out", default="mapping.yaml")
    prop.add_argument("--duckdb", default=None, help="DuckDB file with the raw tables (default: $SENSEIMIG_DUCKDB)")
    where = prop.add_mutually_exclusive_group()
    where.add_argument("--from-dataverse", action="store_true",
                       help="also offer the environment's own columns (EntityDefinitions)")
    where.add_argument("--offline", action="store_true", help="schema plan + standard columns only (default)")
    prop.add_argument("--threshold", type=float, default=0.6, help="proposals below it stay unmapped")
    prop.set_defaults(func=_cmd_mapping_propose)

    back = sub.add_parser("rollback", help="return Dynamics to its pre-migration state from the audit log")
    back.add_argument("--remove-schema", action="store_true", help="also remove the schema the migration created")
    back.add_argument("--force", action="store_true", help="also undo records people changed since the migration")
    back.add_argument("--run-id", default=None, help="undo only this run's writes")
    back.set_defaults(func=_cmd_rollback)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    from dagster import BetaWarning, PreviewWarning

    warnings.filterwarnings("ignore", category=BetaWarning)  # single-run backfill policy is beta in Dagster 1.13
    warnings.filterwarnings("ignore", category=PreviewWarning)
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
