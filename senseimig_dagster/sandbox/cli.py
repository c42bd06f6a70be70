"""``senseimig sandbox ...``: the local stand-ins from the command line (tenant generator, Sensei simulator,
Dataverse emulator with its Entra ID stand-in, Microsoft Graph stand-in, CSV export writer). Each handler imports its
stand-in when called, so starting one server loads neither Dagster nor the others."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from senseimig_dagster import settings


def _generate(args: argparse.Namespace) -> int:
    from senseimig_dagster.sandbox.generator import generate

    if args.day2_from:  # the tenant after a day of cutover, for delta pickup
        from senseimig_dagster.sandbox.generator.day2 import CHANGES_FILE, generate_day2

        changes = generate_day2(Path(args.day2_from), Path(args.out), at=args.at, seed=args.seed)
        print(f"day 2 of {args.day2_from}: {len(changes)} changed records into {args.out} (see {CHANGES_FILE})")
        return 0
    manifest = generate(Path(args.out), patients=args.patients, seed=args.seed)
    print(f"generated {manifest.total_rows} rows for {args.patients} patients into {args.out}")
    return 0


def _sensei(args: argparse.Namespace) -> int:
    from senseimig_dagster.sandbox.sensei_sim import run_sensei_server

    # The key comes from the environment, never the command line (where ps would show it).
    run_sensei_server(Path(args.data), args.host, args.port, settings.sensei_api_key_for_simulator())
    return 0


def _dataverse(args: argparse.Namespace) -> int:
    from senseimig_dagster.sandbox.dataverse_emulator.server import run_dataverse_server

    entra_port = args.entra_port if args.entra_port is not None else (args.port + 1 if args.port else 0)
    seed = {"seed": Path(args.seed)} if args.seed else {}  # default: the packaged seed file
    run_dataverse_server(Path(args.db), args.host, args.port, tls=args.tls, limits_enabled=args.limits == "on",
                         time_scale=args.time_scale, entra_port=entra_port,
                         hold_execution=None if args.hold is None else args.hold == "on", **seed)
    return 0


def _graph(args: argparse.Namespace) -> int:
    from senseimig_dagster.sandbox.graph.server import run_graph_server

    run_graph_server(Path(args.db), args.host, args.port, tls=args.tls)
    return 0


def _export(args: argparse.Namespace) -> int:
    from senseimig_dagster.sandbox.export_writer import write_export

    rows = write_export(Path(args.data), Path(args.out))
    print(f"wrote {sum(rows.values())} rows in {len(rows)} CSV files into {args.out}")
    return 0


def positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def add_sandbox_commands(sub: argparse._SubParsersAction) -> None:
    """The ``sandbox`` command group of the ``senseimig`` parser."""
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
    gen.set_defaults(func=_generate)
    sim = sandbox.add_parser("sensei", help="serve a tenant over the Sensei REST API",
                             description="Serve a tenant over the Sensei REST API. The accepted Csd-Api-Key is "
                                         "read from $SENSEI_API_KEY (default: the sandbox key), never from the "
                                         "command line.")
    sim.add_argument("--data", required=True)
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=settings.SANDBOX_SENSEI_PORT)
    sim.set_defaults(func=_sensei)
    dv = sandbox.add_parser("dataverse", help="serve the Dataverse Web API emulator and its Entra ID stand-in",
                            description="Serve the Dataverse Web API emulator, with records kept in --db, and an "
                                        "Entra ID stand-in issuing its tokens (client-credentials flow; sandbox "
                                        "client id and secret). Prints the URLs, tenant and client id.")
    dv.add_argument("--host", default="127.0.0.1")
    dv.add_argument("--port", type=int, default=settings.SANDBOX_DATAVERSE_PORT, help="0 picks a free port")
    dv.add_argument("--entra-port", type=int, default=None,
                    help="port of the token endpoint (default: --port + 1, or a free port when --port is 0)")
    dv.add_argument("--db", required=True, help="SQLite file holding the records (created if missing)")
    dv.add_argument("--tls", action="store_true", help="serve HTTPS with a freshly generated local CA (path printed)")
    dv.add_argument("--limits", choices=["on", "off"], default="on", help="service protection limits")
    dv.add_argument("--hold", choices=["on", "off"], default=None,
                    help="keep each request for its modelled execution time (default: on when limits are on)")
    dv.add_argument("--seed", default=None, help="JSON or YAML seed file: organization, business unit, users, team, "
                                                 "app registrations (default: the packaged sandbox seed)")
    dv.add_argument("--time-scale", type=positive_float, default=1.0,
                    help="compress the 300 s window and modelled execution times by this factor")
    dv.set_defaults(func=_dataverse)
    gr = sandbox.add_parser("graph", help="serve the Microsoft Graph stand-in (SharePoint document libraries)",
                            description="Serve the Graph drive stand-in (sites, libraries, files, upload sessions "
                                        "kept in --db) with an Entra ID stand-in on the same port.")
    gr.add_argument("--host", default="127.0.0.1")
    gr.add_argument("--port", type=int, default=settings.SANDBOX_GRAPH_PORT, help="0 picks a free port")
    gr.add_argument("--db", required=True, help="SQLite file holding sites, files and upload sessions")
    gr.add_argument("--tls", action="store_true", help="serve HTTPS with a freshly generated local CA (path printed)")
    gr.set_defaults(func=_graph)
    exp = sandbox.add_parser("export", help="write a tenant as Sensei's CSV Data Export")
    exp.add_argument("--data", required=True)
    exp.add_argument("--out", required=True)
    exp.set_defaults(func=_export)
