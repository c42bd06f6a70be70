"""The whole migration: a generated tenant (12,000 patients ≈ 1.15M source rows) served over
HTTP by the Sensei simulator, extracted, staged and loaded into the Dataverse emulator over HTTPS with Microsoft's
default service protection limits and the emulator's cost model, verified and reconciled: the same jobs as
``make demo`` (``senseimig_dagster/cli/demo.py``), in one Dagster instance.

    .venv/bin/python benchmarks/migrate.py [--patients 12000] [--time-scale 4] [--seed 7] [--quick]

Set-up, and why:

* The emulator runs in its own process with limits on, requests held for their modelled time (``Limits.hold``) and
  ``CostModel()``'s defaults (50 ms per request + 10 ms per record; see ``load.py`` for the derivation), over 4
  simulated web servers, one application user. The migration runs in this process (Dagster's in-process
  executor), so the loader's 429 pauses and the client's Retry-After sleeps are timed here by wrapping them.
* Time scale ``k`` compresses the 300 s window and every modelled time by ``k``, so the run fits in ~15 minutes.
  Dataverse-equivalent figures are wall-clock ÷ ``k`` for throughput and × ``k`` for durations of Dataverse-bound
  phases (schema, owners, load, verification, reconciliation). The local phases (generate, extract, stage) are
  not scaled: they are this machine's (and the simulator's) time.
* Ceiling: ``load.modelled_ceiling`` for the loader's chunk of 100 records (per user and server: min over 6000
  requests, ceil(1,200,000 ms / cost) requests, 52 concurrent; × 4 servers × users). The ratio is the load's
  Dataverse-equivalent records/s over the 1-user ceiling. Writers that fall back to ``$batch`` (documents) or go in
  rounds (claim status events: the n-th event of every claim in round n, to keep each claim's trail in time
  order) reach less of it; the per-asset table shows which. The CPU line says whether this process or the
  emulator (both on this machine's cores) was busy during the load: profile with py-spy (``py-spy record --idle
  -f raw -- python benchmarks/migrate.py ...``; the emulator is a child started by a module, sample it by pid).
* Projection (real world, U application users): local phases as measured + the load at ``min(ratio ×
  ceiling(U), records/s this client sustained per wall-clock second)`` (the same fraction of the ceiling with U
  users, as ``load.py``'s ``users_4_speedup`` measures, unless the client's own work is the bound, which more
  users don't lift) + schema, owners, verification and reconciliation in modelled time (not divided by U: a
  conservative simplification). The real Sensei API's own limits are not modelled. Projections are for the run's
  tenant size; pass ``--patients 12000`` for the ≥1M-row figure.
* Request entitlement (Power Platform requests): every record written counts, even inside a bulk request or a
  ``$batch`` [doc: "CRUD, assign and share operations count, including those inside batch and bulk calls"]. We
  count one per audited record write (create, update, link, state: ``audit.writes``), one per other HTTP request
  (reads, metadata). Application users draw on the tenant's pool for non-licensed users: 500,000 + 5,000 per
  Dynamics 365 Enterprise or Professional license, up to 10,000,000 per 24 hours
  (Microsoft's "Requests limits and allocations",
  https://learn.microsoft.com/power-platform/admin/api-request-limits-allocations, as of 2025-05; an older
  Microsoft Learn training page gives a 100,000 base for Enterprise tenants [not re-verified]).
  Licensed users get 40,000 each per 24 hours.

Figures, not asserts: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import inspect
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere, like `make bench-migrate`

from load import modelled_ceiling  # noqa: E402  (benchmarks/load.py, this folder)

from senseimig_dagster.sandbox.dataverse_emulator.limits import CostModel, Limits  # noqa: E402
from senseimig_dagster.sandbox.dataverse_emulator.server import SERVERS  # noqa: E402

DEFAULT_PATIENTS = 12_000  # ≈ 1.15M source rows (README "Figures")
# 1: the ratio to the ceiling is the client's, undistorted. At k=4 the client keeps up about half-way (500
# patients: 519 records/s at k=1, 1,137/s wall-clock = 285/s Dataverse-equivalent at k=4, no 429), so k=4 halves
# the wall time of a full-size run (≈ 17 min of writers at 12,000 patients) at the price of a lower ratio.
DEFAULT_TIME_SCALE = 1.0
POOL_BASE, POOL_PER_LICENSE, POOL_MAX = 500_000, 5_000, 10_000_000  # non-licensed identities, per 24 h [doc]
LICENSED_USER_DAILY = 40_000
EXAMPLE_LICENSES = 10  # a 10-seat practice on Dynamics 365 Sales Enterprise
DATAVERSE_PHASES = ("schema", "owners", "load + verify", "reconcile")  # "delta window": local and Dataverse
_METADATA_PATHS = ("EntityDefinitions", "RelationshipDefinitions", "GlobalOptionSetDefinitions", "PublishXml",
                   "solutions", "publishers")


# -- instrumentation ------------------------------------------------------------------------------------------------
@dataclass
class Meter:
    """What the Dataverse client did in this process: wait intervals on 429 (loader pauses, client Retry-After
    sleeps) and HTTP requests by kind."""

    waits: list[tuple[float, float]] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=lambda: {"read": 0, "metadata": 0, "record_write": 0})
    throttled: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait(self, seconds: float) -> None:
        now = time.monotonic()
        with self.lock:
            self.waits.append((now, now + seconds))

    def waited(self, start: float, end: float) -> float:
        """Seconds within [start, end] during which at least one sender waited (union of the intervals)."""
        total, reach = 0.0, start
        for a, b in sorted(self.waits):
            a, b = max(a, reach), min(b, end)
            if b > a:
                total += b - a
                reach = b
        return total


def install_meter(meter: Meter) -> None:
    from senseimig_dagster.dataverse import bulk
    from senseimig_dagster.dataverse.client import DataverseClient

    pause = bulk._UserGate.pause

    def metered_pause(self, retry_after: float | None) -> None:
        with meter.lock:
            meter.throttled += 1
        meter.wait(retry_after or bulk._DEFAULT_RETRY_AFTER)
        pause(self, retry_after)

    bulk._UserGate.pause = metered_pause  # type: ignore[method-assign]

    attempt = DataverseClient._attempt

    def metered_attempt(self, method: str, url: str, *args, **kwargs):
        kind = "read" if method == "GET" else "metadata" if any(p in url for p in _METADATA_PATHS) else \
            "record_write"
        with meter.lock:
            meter.requests[kind] += 1
        return attempt(self, method, url, *args, **kwargs)

    DataverseClient._attempt = metered_attempt  # type: ignore[method-assign]

    init = DataverseClient.__init__

    def metered_init(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        sleep = self._sleep

        def metered_sleep(seconds: float) -> object:
            meter.wait(seconds)  # the client's own retries: Retry-After of a 429 (or a 5xx back-off)
            return sleep(seconds)

        self._sleep = metered_sleep

    DataverseClient.__init__ = metered_init  # type: ignore[method-assign]


class CpuSampler:
    """CPU seconds of this process and of the emulator's, sampled once a second, so a phase's CPU share can be
    read afterwards (both share the machine's cores: is the client's work or the emulator's the bound?)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.samples = pid, []  # (monotonic, own cpu s, emulator cpu s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _emulator(self) -> float:
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return self.samples[-1][2] if self.samples else 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.samples.append((time.monotonic(), time.process_time(), self._emulator()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float) -> tuple[float, float]:
        """CPU seconds (this process, emulator) spent within [start, end] (to the nearest sample)."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            return 0.0, 0.0
        return inside[-1][1] - inside[0][1], inside[-1][2] - inside[0][2]


# -- figures from the stores ----------------------------------------------------------------------------------------
def writer_figures(run_id: str, database: str) -> list[tuple[str, int, float]]:
    """Per ``dataverse/<object>`` step of the load run: records written (created + updated), seconds."""
    import duckdb

    from senseimig_dagster.cli.runs import instance

    stats = {s.step_key: s.end_time - s.start_time for s in instance().get_run_step_stats(run_id)
             if s.end_time and s.start_time}
    with duckdb.connect(database, read_only=True) as conn:
        written = dict(conn.execute("SELECT object, count(*) FROM load.journal WHERE run_id = ? AND outcome IN "
                                    "('created', 'updated') GROUP BY object", [run_id]).fetchall())
    return [(key.removeprefix("dataverse__"), written.get(key.removeprefix("dataverse__"), 0), seconds)
            for key, seconds in stats.items() if key.startswith("dataverse__")]


SENT = ("note", "note_blocks", "sharepoint")  # document outcomes that moved bytes


@dataclass
class DocumentFigures:
    lines: list[str]
    note_mb_s: float  # notes (single request and block upload), Dataverse-equivalent, all worker threads
    graph_mb_s: float  # SharePoint files through Graph, wall-clock (Graph is not time-scaled)


def document_figures(run_id: str, database: str, step_seconds: float, k: float = 1.0) -> DocumentFigures:
    """Per route of ``dataverse/document``: documents, MB, and MB/s. A route's share of the step's wall time is
    its share of the summed per-document seconds (the documents of all routes run side by side on the loader's
    threads), so per-route MB/s add up to the step's MB/s."""
    import duckdb

    with duckdb.connect(database, read_only=True) as conn:
        rows = conn.execute("SELECT outcome, count(*), coalesce(sum(size_bytes), 0), coalesce(sum(seconds), 0) "
                            "FROM load.documents WHERE run_id = ? GROUP BY outcome ORDER BY outcome",
                            [run_id]).fetchall()
    busy = sum(s for o, _, _, s in rows if o in SENT) or 1e-9
    rate = {o: (b / 1e6) / (step_seconds * s / busy) if step_seconds and s else 0.0 for o, _, b, s in rows}
    lines = [f"\ndocuments ({step_seconds:.1f} s step):", f"{'outcome':<14}{'files':>8}{'MB':>10}{'MB/s':>8}"]
    lines += [f"{o:<14}{n:>8,}{b / 1e6:>10.1f}" + (f"{rate[o]:>8.2f}" if o in SENT else f"{'-':>8}")
              for o, n, b, _ in rows]  # failed and unchanged files send nothing
    notes = sum(b for o, _, b, _ in rows if o in ("note", "note_blocks")) / 1e6
    note_s = sum(step_seconds * s / busy for o, _, _, s in rows if o in ("note", "note_blocks"))
    graph = sum(b for o, _, b, _ in rows if o == "sharepoint") / 1e6
    graph_s = sum(step_seconds * s / busy for o, _, _, s in rows if o == "sharepoint")
    return DocumentFigures(lines, notes / note_s / k if note_s else 0.0, graph / graph_s if graph_s else 0.0)


def check_seconds(run_id: str) -> float:
    from senseimig_dagster.cli.runs import instance

    return sum(s.end_time - s.start_time for s in instance().get_run_step_stats(run_id)
               if s.step_key.startswith("verify__") and s.end_time and s.start_time)


def audited_writes(audit_db: str) -> int:
    from senseimig_dagster.audit.log import TABLE
    from senseimig_dagster.resources import AuditStore

    with AuditStore(path=audit_db).connect(read_only=True) as conn:
        return conn.execute(f"SELECT count(*) FROM {TABLE} WHERE outcome = 'ok'").fetchone()[0]


def latest_run_id(job: str) -> str:
    from dagster import RunsFilter

    from senseimig_dagster.cli.runs import instance

    return instance().get_runs(RunsFilter(job_name=job), limit=1)[0].run_id


# -- the run ----------------------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=DEFAULT_PATIENTS)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--time-scale", type=float, default=DEFAULT_TIME_SCALE)
    parser.add_argument("--quick", action="store_true", help="a small smoke run (200 patients)")
    parser.add_argument("--workdir", default=str(ROOT / "data" / "bench-migrate"))
    args = parser.parse_args()
    if args.quick:
        args.patients = 200
    k = args.time_scale

    import warnings

    from dagster import BetaWarning, PreviewWarning

    warnings.filterwarnings("ignore", category=BetaWarning)
    warnings.filterwarnings("ignore", category=PreviewWarning)
    from senseimig_dagster.cli import cockpit, demo, standins
    from senseimig_dagster.dataverse.bulk import BulkLoader
    from senseimig_dagster.definitions import build_definitions
    from senseimig_dagster.sandbox.generator import generate

    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    os.environ["DAGSTER_HOME"] = str(work / "dagster_home")  # its own instance: step stats of these runs only
    limits = Limits(time_scale=k, cost=CostModel(), hold=True)
    chunk = inspect.signature(BulkLoader).parameters["chunk_size"].default
    ceiling = {u: modelled_ceiling(limits, SERVERS, chunk, u) for u in (1, 4)}
    print(f"Migration benchmark: {args.patients:,} patients, seed {args.seed}; Dataverse emulator with Microsoft's "
          f"default limits, cost model {limits.cost.per_request_ms:g} ms/request + {limits.cost.per_record_ms:g} "
          f"ms/record, requests held, {SERVERS} web servers, 1 application user, time scale {k:g}")
    for line in ceiling[1].lines:
        print(f"  {line}")

    run = demo.DemoRun()
    meter = Meter()
    install_meter(meter)
    with run.phase("generate tenant") as phase:
        manifest = generate(work / "tenant", patients=args.patients, seed=args.seed)
        phase.rows = manifest.total_rows
    simulator, dataverse, graph, cpu = standins.Simulator(), None, None, None
    try:
        dataverse, url, ca = standins.start_dataverse(work, "on", k)
        cpu = CpuSampler(dataverse.pid)
        os.environ.update({**cockpit.environment(cockpit.DemoFolders(work), url, ca), "SENSEIMIG_SOURCE": "api",
                           "SENSEI_BASE_URL": simulator.base_url})
        graph, graph_env = standins.start_graph(work)  # SharePoint: large documents and imaging
        os.environ.update(graph_env)
        simulator.serve(work / "tenant")
        run.defs = build_definitions()  # resources read the environment set above; runs in this process (metered)
        demo.migrate(run, work / "tenant", serve=simulator.serve)
    finally:
        simulator.stop()
        if cpu is not None:
            cpu.stop()
        standins.stop(dataverse)
        standins.stop(graph)

    database = os.environ["SENSEIMIG_DUCKDB"]
    wall = sum(p.seconds for p in run.phases)
    phases = {p.name: p for p in run.phases}
    print(f"\n{'phase':<22}{'rows':>12}{'wall s':>9}{'DV-equiv s':>12}  result")
    for p in run.phases:
        equivalent = p.seconds * k if p.name in DATAVERSE_PHASES else p.seconds
        print(f"{p.name:<22}{(f'{p.rows:,}' if p.rows is not None else '-'):>12}{p.seconds:>9.1f}"
              f"{equivalent:>12.1f}  {'ok' if p.ok else 'FAILED'}")
    checks_passed = sum(ok for _, _, ok in run.checks)
    print(f"checks: {checks_passed} passed, {len(run.checks) - checks_passed} failed")
    if "load + verify" not in phases:
        print("the migration stopped before the load; no load figures")
        return 1

    load_run = latest_run_id("migrate")
    writers = writer_figures(load_run, database)
    # The bulk writers make the load figures; documents (bodies, one record per file) are reported on their own
    # and count, like checks, as Dataverse-bound time outside the load.
    bulk = [w for w in writers if w[0] != "document"]
    load_s = sum(s for _, _, s in bulk)
    verify_s = check_seconds(load_run)
    records = sum(n for _, n, _ in bulk)
    print(f"\n{'dataverse asset':<24}{'records':>10}{'wall s':>9}{'rec/s wall':>12}{'rec/s DV-eq':>13}")
    for name, n, seconds in sorted(writers, key=lambda w: -w[1]):
        print(f"{name:<24}{n:>10,}{seconds:>9.1f}{n / seconds:>12.0f}{n / seconds / k:>13.0f}")
    achieved = records / load_s / k if load_s else 0.0
    ratio = achieved / ceiling[1].records_per_s
    start, end = phases["load + verify"].started, phases["load + verify"].ended
    dv_start, dv_end = phases["schema"].started, phases.get("reconcile", phases["load + verify"]).ended
    share = meter.waited(dv_start, dv_end) / (dv_end - dv_start)
    print(f"load: {records:,} records in {load_s:.1f} s of writer steps ({verify_s:.1f} s of checks), "
          f"{achieved:.0f} records/s Dataverse-equivalent; ceiling (1 user) {ceiling[1].records_per_s:.0f}; "
          f"429 pauses {meter.throttled}, waiting {meter.waited(start, end):.1f} s of the load phase's "
          f"{end - start:.1f} s")
    documents = document_figures(load_run, database, dict((w[0], w[2]) for w in writers).get("document", 0.0), k)
    for line in documents.lines:
        print(line)
    activities = sum(n for name, n, _ in writers if name == "communication")
    activities_s = sum(s for name, _, s in writers if name == "communication")
    activities_per_s = activities / activities_s if activities_s else 0.0
    print(f"activities (phonecall + email with parties, closed last): {activities:,} in {activities_s:.1f} s, "
          f"{activities_per_s:.0f}/s wall, {activities_per_s / k:.0f}/s Dataverse-equivalent")
    own_cpu, emulator_cpu = cpu.between(start, end) if cpu is not None else (0.0, 0.0)
    print(f"CPU during load + verify ({end - start:.1f} s wall): migration process {own_cpu:.1f} s "
          f"({own_cpu / (end - start):.0%} of one core), emulator {emulator_cpu:.1f} s "
          f"({emulator_cpu / (end - start):.0%} of one core)")

    local_s = sum(phases[n].seconds for n in ("extract + inventory", "stage") if n in phases)  # no generation
    other_dv_s = (sum(phases[n].seconds for n in DATAVERSE_PHASES if n in phases) - load_s) * k
    # The load's rate with U users: the ceiling's share we reached, but never above what this client sustained
    # per wall-clock second (with U users the limits rise U-fold, the client's own work does not shrink).
    client_rps = records / load_s if load_s else 0.0
    rate = {u: max(min(ratio * ceiling[u].records_per_s, client_rps), 1e-9) for u in (1, 4)}
    projected = {u: (local_s + other_dv_s + records / rate[u]) / 3600 for u in (1, 4)}
    writes = audited_writes(os.environ["SENSEIMIG_AUDIT_DB"])
    entitlement = writes + meter.requests["read"] + meter.requests["metadata"]
    pool = min(POOL_BASE + POOL_PER_LICENSE * EXAMPLE_LICENSES, POOL_MAX)
    days = max(projected[1] / 24, 1.0)
    print(f"projection (real world): local phases {local_s / 3600:.2f} h + verification/reconciliation/schema "
          f"{other_dv_s / 3600:.2f} h + load at {ratio:.2f} x ceiling: 1 user {projected[1]:.2f} h, "
          f"4 users {projected[4]:.2f} h")
    print(f"request entitlement: {writes:,} record writes (audit log) + {meter.requests['read']:,} reads + "
          f"{meter.requests['metadata']:,} metadata requests = {entitlement:,} Power Platform requests "
          f"({meter.requests['record_write']:,} write HTTP requests carried the record writes); tenant pool for "
          f"application users with {EXAMPLE_LICENSES} Dynamics 365 Enterprise licenses: {pool:,} per 24 h, so "
          f"{entitlement / pool / days:.0%} of it per day over {days:.1f} day(s) (a licensed user alone: "
          f"{LICENSED_USER_DAILY:,} per 24 h)")

    print(f"rows={manifest.total_rows}")
    print(f"wall_s={wall:.0f}")
    print(f"ratio_to_ceiling={ratio:.2f}")
    print(f"throttle_wait_share={share:.3f}")
    print(f"projected_hours_1_user={projected[1]:.2f}")
    print(f"projected_hours_4_users={projected[4]:.2f}")
    print(f"entitlement_requests={entitlement}")
    print(f"attachment_mb_per_s={documents.note_mb_s:.2f}")
    print(f"graph_mb_per_s={documents.graph_mb_s:.2f}")
    print(f"activities_per_s={activities_per_s / k:.1f}")
    return 0 if run.ok else 1


if __name__ == "__main__":
    sys.exit(main())
