"""Dataverse load throughput: patient-shaped contacts into the emulator over HTTPS on
127.0.0.1 with Microsoft's default service protection limits, by our BulkLoader (1, 2 and 4 application users),
Microsoft's Python SDK (its documented bulk create) and a naive one-request-per-record httpx loop.

    .venv/bin/python benchmarks/load.py [--records 100000] [--time-scale K] [--users 1,2,4] [--quick]

Set-up, and why:

* The emulator runs in its own process (its GIL away from the clients), restarted on a fresh SQLite file for every
  run so each starts with empty sliding windows. Each client run is a child process too. Everything speaks HTTPS
  with a local CA: msal (our token provider) and Microsoft's SDK both refuse plain ``http://``.
* Microsoft's SDK runs as its users run it: an ``azure-identity`` ``ClientSecretCredential`` against the Entra
  stand-in, nothing of the SDK touched; its own metadata reads (entity set name, choice columns) are in its time.
* Application users: the Entra stand-in is given one app registration per user (configuration; ``entra.py`` is
  untouched). Service protection counts per user and simulated web server (``SERVERS`` = 4, no affinity cookie).
* Cost model: ``CostModel()``'s defaults, 50 ms per request + 10 ms per record. They match the outputs printed in
  Microsoft's bulk-operation samples (microsoft/PowerApps-Samples, CreateUpdateMultiple READMEs): CreateMultiple of
  100 records "Created 100 records in 1 seconds" (model: 1.05 s); 100 single creates one at a time "in 10 seconds"
  (model: 6 s of execution, the rest network round trips). Those outputs are rounded to whole seconds.
* Held requests (the emulator's ``Limits(hold=True)``, unless ``--no-hold``): every admitted request is held until
  its modelled time has passed (real processing counts within it), as on Dataverse, where a 100-record
  CreateMultiple takes about a second. Without that, a client's parallelism would not matter and the figures would
  measure this machine, not the limits.
* Time scale ``k`` compresses the 300 s window and every modelled time by ``k``; records/s are reported
  Dataverse-equivalent (wall-clock figures ÷ ``k``), so they don't depend on ``k`` while the machine keeps up.

Figures, not asserts: these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import random
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from senseimig_dagster.dataverse import DataverseClient, EntraTokenProvider

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere, like `make bench-load`

from senseimig_dagster.sandbox.dataverse_emulator.limits import (  # noqa: E402
    Admission,
    CostModel,
    Limits,
    ServiceProtection,
    Throttled,
)
from senseimig_dagster.sandbox.dataverse_emulator.server import SERVERS  # noqa: E402

TABLE, ENTITY_SET = "contact", "contacts"
CHUNK = 100  # records per CreateMultiple, ours and the SDK's alike
# One app registration per user; the sandbox secrets are never printed (bench_user_secret).
MAX_USERS = 8
# 1: 4 users at the ceiling need ~6,100 records/s of the emulator, which serves ~13,000/s on 2 cores when it doesn't
# hold requests, and the whole run takes about 5 minutes. Raise it on a faster machine; the figures shouldn't move.
DEFAULT_TIME_SCALE = 1.0

# -- data -----------------------------------------------------------------------------------------------------------

_FIRST = ("Ava", "Ben", "Carla", "Dmitri", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Keiko", "Liam",
          "Maya", "Nils", "Olga", "Pedro", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera", "Wen", "Yusuf", "Zoe")
_LAST = ("Abbott", "Brennan", "Castillo", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ivanova", "Jensen",
         "Kowalski", "Lindqvist", "Moreau", "Nakamura", "O'Neil", "Petrov", "Quintero", "Rossi", "Schmidt", "Tanaka")
_STREETS = ("Maple Ave", "Oak St", "Cedar Ln", "Elm Rd", "Birch Ct", "Harbor Way", "Hillcrest Dr", "Main St")
_CITIES = (("Springfield", "IL", "627"), ("Riverton", "WY", "825"), ("Fairview", "OR", "970"),
           ("Madison", "WI", "537"), ("Georgetown", "TX", "786"), ("Salem", "MA", "019"))


def patient_contacts(count: int, seed: int = 11) -> list[dict[str, str]]:
    """``count`` synthetic, deterministic patient-shaped contacts; any prefix of a longer list is the same rows.
    ``emailaddress1`` is unique per row (it carries the row number), which is how lost and duplicated records are
    told apart afterwards. Fictional: 555 numbers, ``example.invalid`` addresses."""
    rng = random.Random(seed)
    born_from = dt.date(1930, 1, 1)
    rows = []
    for i in range(count):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        city, state, zip3 = rng.choice(_CITIES)
        rows.append({
            "firstname": first,
            "lastname": last,
            "birthdate": (born_from + dt.timedelta(days=rng.randrange(33_000))).isoformat(),
            "emailaddress1": f"{first}.{last.replace(chr(39), '')}.{i:07d}@example.invalid".lower(),
            "telephone1": f"555-{rng.randrange(100, 1000)}-{rng.randrange(10_000):04d}",
            "address1_line1": f"{rng.randrange(1, 9999)} {rng.choice(_STREETS)}",
            "address1_city": city,
            "address1_stateorprovince": state,
            "address1_postalcode": f"{zip3}{rng.randrange(100):02d}",
            "address1_country": "US",
        })
    return rows


def bench_user(index: int) -> str:
    return f"bench-user-{index + 1}"


def bench_user_secret(user: str) -> str:
    return f"{user}-sandbox-secret"  # a sandbox stand-in's secret, not a credential of anything real


# -- the modelled ceiling ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ceiling:
    records_per_s: float  # Dataverse-equivalent, for all users together
    binding: str
    lines: tuple[str, ...]


def modelled_ceiling(limits: Limits, servers: int, chunk: int, users: int = 1) -> Ceiling:
    """Sustained records/s that service protection allows ``users`` application users sending requests of
    ``chunk`` records, spread over ``servers`` web servers without affinity (limits are per user and server).

    Per (user, server), requests per second are bounded by (limits.py's admission rule):
    * the request count: ``requests`` per window;
    * the execution time: a request is refused once the window holds ``execution_ms`` or more, so the one that
      crosses the line is still admitted: ``ceil(execution_ms / cost)`` requests per window;
    * the concurrency: ``concurrency`` requests in flight, each lasting its modelled execution time.
    """
    cost_ms = limits.cost.execution_ms(chunk)
    window = limits.window_s
    by_requests = limits.requests / window
    by_execution = math.ceil(limits.execution_ms / cost_ms) / window
    by_concurrency = limits.concurrency / (cost_ms / 1000)
    bounds = {"requests": by_requests, "execution time": by_execution, "concurrency": by_concurrency}
    binding = min(bounds, key=bounds.__getitem__)
    per_server = bounds[binding]
    total = per_server * chunk * servers * users
    lines = (
        f"cost of one request of {chunk} records: {limits.cost.per_request_ms:g} ms + {chunk} x "
        f"{limits.cost.per_record_ms:g} ms = {cost_ms:g} ms (nominal)",
        f"per user and web server, requests/s allowed by: requests {limits.requests}/{window:g} s = "
        f"{by_requests:.2f}; execution time ceil({limits.execution_ms:,}/{cost_ms:g}) = "
        f"{math.ceil(limits.execution_ms / cost_ms)}/{window:g} s = {by_execution:.2f}; concurrency "
        f"{limits.concurrency}/{cost_ms / 1000:g} s = {by_concurrency:.2f}",
        f"min = {per_server:.3f} requests/s ({binding}) x {chunk} records x {servers} servers (no affinity) x "
        f"{users} user(s) = {total:.0f} records/s",
    )
    return Ceiling(total, binding, lines)


# -- the emulator process ---------------------------------------------------------------------------------------------


class CountingProtection(ServiceProtection):
    """Service protection that counts what it admitted and refused (holding is the emulator's ``Limits.hold``)."""

    def __init__(self, limits: Limits, servers: int) -> None:
        super().__init__(limits, servers=servers)
        self.stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()

    def admit(self, user: str, server: int = 0, records: int = 1) -> Admission | Throttled:
        outcome = super().admit(user, server, records)
        with self._stats_lock:
            self.stats[f"429_{outcome.reason}" if isinstance(outcome, Throttled) else "admitted"] += 1
        return outcome


def serve_emulator(db: Path, tls_dir: Path, time_scale: float, hold: bool) -> None:
    """Child process: serve the emulator and the Entra stand-in until SIGTERM; print one JSON line with the
    URLs when ready and one with the service protection counts at the end."""
    from senseimig_dagster.sandbox.dataverse_emulator.server import build_emulator
    from senseimig_dagster.sandbox.entra import EntraStandIn, serve_entra
    from senseimig_dagster.sandbox.tls import TLSFiles, serve_wsgi

    files = TLSFiles(tls_dir / "ca.pem", tls_dir / "server.pem", tls_dir / "server-key.pem")
    users = [bench_user(i) for i in range(MAX_USERS)]
    entra = EntraStandIn(apps={u: bench_user_secret(u) for u in users})
    limits = Limits(time_scale=time_scale, cost=CostModel(), hold=hold)  # Microsoft's default limits
    emulator = build_emulator(db, limits=limits, entra=entra, servers=SERVERS)
    protection = CountingProtection(limits, SERVERS)
    emulator.protection = protection
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        with serve_entra(entra, "127.0.0.1", 0, tls=files) as authority, \
                serve_wsgi(emulator, "127.0.0.1", 0, tls=files, name="dataverse-emulator") as url:
            print(json.dumps({"url": url, "authority": authority, "tenant": entra.tenant,
                              "ca": str(files.ca_cert)}), flush=True)
            while not stop.wait(0.2):
                pass
    finally:
        emulator.store.close()
    print(json.dumps(dict(protection.stats)), flush=True)


class Emulator:
    """The emulator process over a fresh database, as a context manager yielding its connection info."""

    def __init__(self, work: Path, name: str, time_scale: float, hold: bool) -> None:
        self.db = work / f"{name}.sqlite"
        for stale in work.glob(f"{name}.sqlite*"):
            stale.unlink()
        self.args = [sys.executable, __file__, "--child", "server", "--db", str(self.db),
                     "--workdir", str(work), "--time-scale", repr(time_scale), *([] if hold else ["--no-hold"])]
        self.stats: dict[str, int] = {}

    def __enter__(self) -> dict[str, str]:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the emulator exited with code {self.proc.wait()}")
        return json.loads(line)

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=60)
        lines = out.strip().splitlines()
        self.stats = json.loads(lines[-1]) if lines else {}


# -- clients ---------------------------------------------------------------------------------------------------------


def _provider(info: dict[str, str], user: str) -> EntraTokenProvider:
    from senseimig_dagster.dataverse import EntraTokenProvider

    return EntraTokenProvider(info["tenant"], user, bench_user_secret(user), info["url"],
                                  authority_host=info["authority"], verify=info["ca"])


def _our_client(info: dict[str, str], user: str, pool: int) -> DataverseClient:
    import httpx

    from senseimig_dagster.dataverse import BearerAuth, DataverseClient

    transport = httpx.HTTPTransport(verify=ssl.create_default_context(cafile=info["ca"]),
                                    limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool))
    return DataverseClient(info["url"], BearerAuth(_provider(info, user)), transport=transport, pool_size=pool)


def run_ours(info: dict[str, str], records: int, users: int, max_parallel: int) -> dict[str, Any]:
    """Our throughput engine (``dataverse/bulk.py``) with ``users`` application users."""
    from senseimig_dagster.dataverse.bulk import BulkLoader

    rows = patient_contacts(records)
    clients = [_our_client(info, bench_user(i), max_parallel + 4) for i in range(users)]
    try:
        loader = BulkLoader(clients, chunk_size=CHUNK, max_parallel=max_parallel)
        started = time.perf_counter()
        result = loader.create(TABLE, rows)
        seconds = time.perf_counter() - started
    finally:
        for client in clients:
            client.close()
    return {"sent": records, "seconds": seconds, "client_429": result.throttled, "requests": result.requests,
            "failed": len(result.failed)}


def run_ms_sdk(info: dict[str, str], records: int) -> dict[str, Any]:
    """Microsoft's PowerPlatform-Dataverse-Client as its README documents bulk create (``records.create(table,
    list)`` → one CreateMultiple), fed chunks of ``CHUNK`` like ours, one at a time (the client is synchronous).
    It raises on 429 without retrying (HttpError carries ``retry_after``), so the loop waits that long and resends
    the chunk, as a user of the SDK must."""
    from azure.identity import ClientSecretCredential
    from PowerPlatform.Dataverse.client import DataverseClient as MicrosoftClient
    from PowerPlatform.Dataverse.core.errors import HttpError

    os.environ["REQUESTS_CA_BUNDLE"] = info["ca"]  # the SDK and azure-identity use requests, which trust this bundle
    rows = patient_contacts(records)
    throttled = requests = 0
    # As the SDK's users authenticate: a client secret against the tenant's authority (the stand-in; instance
    # discovery off, as for any authority login.microsoftonline.com doesn't know).
    credential = ClientSecretCredential(info["tenant"], bench_user(0), bench_user_secret(bench_user(0)),
                                        authority=info["authority"], disable_instance_discovery=True)
    with MicrosoftClient(info["url"], credential) as client:
        started = time.perf_counter()  # the SDK's own metadata reads (entity set, choice columns) count
        for start in range(0, records, CHUNK):
            chunk = rows[start:start + CHUNK]
            while True:
                requests += 1
                try:
                    ids = client.records.create(TABLE, chunk)
                    break
                except HttpError as e:
                    if e.status_code != 429:
                        raise
                    throttled += 1
                    time.sleep(e.retry_after or 1)
            if len(ids) != len(chunk):
                raise RuntimeError(f"CreateMultiple returned {len(ids)} ids for {len(chunk)} records")
        seconds = time.perf_counter() - started
    return {"sent": records, "seconds": seconds, "client_429": throttled, "requests": requests, "failed": 0}


def run_naive(info: dict[str, str], records: int) -> dict[str, Any]:
    """One ``POST /contacts`` per record, one at a time, over one keep-alive connection; waits Retry-After on 429."""
    import httpx

    rows = patient_contacts(records)
    throttled = requests = 0
    with _provider(info, bench_user(0)) as provider, httpx.Client(base_url=f"{info['url']}/api/data/v9.2/", verify=ssl.create_default_context(cafile=info["ca"]),
                      headers={"Authorization": f"Bearer {provider.token()}", "OData-Version": "4.0",
                               "OData-MaxVersion": "4.0", "Accept": "application/json"}, timeout=60) as http:
        started = time.perf_counter()
        for row in rows:
            while True:
                requests += 1
                response = http.post(ENTITY_SET, json=row)
                if response.status_code != 429:
                    break
                throttled += 1
                time.sleep(float(response.headers.get("Retry-After", "1")))
            if response.status_code != 204:
                raise RuntimeError(f"create answered {response.status_code}")
        seconds = time.perf_counter() - started
    return {"sent": records, "seconds": seconds, "client_429": throttled, "requests": requests, "failed": 0}


def stored_emails(info: dict[str, str]) -> list[str]:
    """``emailaddress1`` of every contact in the emulator, by a paged query (``$count`` stops at 5000)."""
    client = _our_client(info, bench_user(0), 4)
    with client:
        return [row.get("emailaddress1") for row in client.query(ENTITY_SET, ["emailaddress1"])]


# -- orchestration ---------------------------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    users: int
    sent: int
    seconds: float
    requests: int
    client_429: int
    server_429: int
    failed: int
    lost: int
    duplicated: int
    time_scale: float
    chunk: int  # records per request

    @property
    def records_per_s(self) -> float:
        """Dataverse-equivalent: records per wall-clock second ÷ time scale."""
        return self.sent / self.seconds / self.time_scale


def run_child(kind: str, info: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--info", json.dumps(info), *args],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"the {kind} run failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(name: str, kind: str, records: int, users: int, chunk: int, args: argparse.Namespace,
            *extra: str) -> Run:
    emulator = Emulator(Path(args.workdir), f"run-{kind}-{users}", args.time_scale, hold=not args.no_hold)
    with emulator as info:
        result = run_child(kind, info, "--records", str(records), "--users", str(users), *extra)
        emails = stored_emails(info)
    expected = {row["emailaddress1"] for row in patient_contacts(records)}
    found = Counter(emails)
    lost = len(expected - found.keys())
    duplicated = sum(n - 1 for n in found.values()) + len(found.keys() - expected)
    server_429 = sum(v for k, v in emulator.stats.items() if k.startswith("429_"))
    run = Run(name, users, records, result["seconds"], result["requests"], result["client_429"], server_429,
              result["failed"], lost, duplicated, args.time_scale, chunk)
    print(f"  {name}: {run.sent} records in {run.seconds:.1f} s wall, {run.records_per_s:.0f} records/s, "
          f"429s sent {run.server_429}, seen by the client {run.client_429} "
          f"({', '.join(f'{k}={v}' for k, v in sorted(emulator.stats.items()))}), "
          f"lost {run.lost}, duplicated {run.duplicated}", flush=True)
    return run


def child_main(args: argparse.Namespace) -> None:
    if args.child == "server":
        serve_emulator(Path(args.db), Path(args.workdir) / "tls", args.time_scale, hold=not args.no_hold)
        return
    info = json.loads(args.info)
    if args.child == "ours":
        result = run_ours(info, args.records, int(args.users), args.max_parallel)
    elif args.child == "sdk":
        result = run_ms_sdk(info, args.records)
    else:
        result = run_naive(info, args.records)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--time-scale", type=float, default=DEFAULT_TIME_SCALE,
                        help="compress the 300 s window and modelled execution times by this factor")
    parser.add_argument("--users", default="1,2,4", help="application user counts for our loader")
    parser.add_argument("--sdk-records", type=int, default=5_000,
                        help="records for Microsoft's SDK (the first N of the same rows)")
    parser.add_argument("--naive-records", type=int, default=1_000,
                        help="records for the naive loop (the first N of the same rows)")
    parser.add_argument("--max-parallel", type=int, default=16, help="BulkLoader max_parallel per user")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--workdir", default=str(ROOT / "data" / "bench-load"))
    parser.add_argument("--no-hold", action="store_true",
                        help="answer at machine speed instead of holding each request for its modelled time")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--info", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return
    if args.quick:
        args.records, args.sdk_records, args.naive_records = 3_000, 500, 100
    users = sorted({int(u) for u in args.users.split(",")} | {1})
    if max(users) > MAX_USERS:
        parser.error(f"at most {MAX_USERS} users")
    sdk_records, naive_records = min(args.sdk_records, args.records), min(args.naive_records, args.records)

    from senseimig_dagster.sandbox.tls import make_local_ca

    work = Path(args.workdir)
    make_local_ca(work / "tls")
    limits = Limits(time_scale=args.time_scale, cost=CostModel())
    ceiling = modelled_ceiling(limits, SERVERS, CHUNK)
    print(f"Dataverse load benchmark: {args.records} contacts, chunks of {CHUNK}, Microsoft's default limits "
          f"(per user and server: {limits.requests} requests, {limits.execution_ms:,} ms execution, "
          f"{limits.concurrency} concurrent, per {limits.window_s:g} s), {SERVERS} web servers, time scale "
          f"{args.time_scale:g} (window {limits.window_wall_s:g} s wall), requests held for their modelled time: "
          f"{'no' if args.no_hold else 'yes'}")
    print("Modelled ceiling (sustained, per user):")
    for line in ceiling.lines:
        print(f"  {line}")
    execution_total = math.ceil(args.records / CHUNK) * limits.cost.execution_ms(CHUNK)
    print(f"  note: this run's whole execution time, {execution_total:,.0f} ms, is "
          f"{execution_total / (SERVERS * limits.execution_ms):.0%} of one window's budget of one user over "
          f"{SERVERS} servers, so a client that sends more in parallel than x-ms-dop-hint could beat the sustained "
          "ceiling in a run this short; the ceiling is what a long migration can sustain.")
    dop = ServiceProtection(limits, servers=SERVERS).dop_hint()
    print(f"  x-ms-dop-hint = {dop}; {dop} requests of {CHUNK} in flight at all times: "
          f"{dop * CHUNK / (limits.cost.execution_ms(CHUNK) / 1000):.0f} records/s")

    parallel = ("--max-parallel", str(args.max_parallel))
    print("Runs (fresh emulator and database each):", flush=True)
    ours = {1: measure("ours, 1 user", "ours", args.records, 1, CHUNK, args, *parallel)}
    sdk = measure(f"Microsoft SDK, first {sdk_records}", "sdk", sdk_records, 1, CHUNK, args)
    naive = measure(f"naive httpx loop, first {naive_records}", "naive", naive_records, 1, 1, args)
    for n in users[1:]:
        ours[n] = measure(f"ours, {n} users", "ours", args.records, n, CHUNK, args, *parallel)
    runs = [ours[1], sdk, naive, *(ours[n] for n in users[1:])]

    print("\nrecords/s are Dataverse-equivalent (wall-clock ÷ time scale); ceiling = the sustained modelled ceiling "
          "for the run's users")
    print(f"{'run':<34}{'users':>6}{'records':>9}{'wall s':>8}{'rec/s':>8}{'ceiling':>9}{'ratio':>7}{'requests':>9}"
          f"{'429s':>6}{'failed':>7}{'lost':>6}{'dup':>5}")
    for run in runs:
        run_ceiling = modelled_ceiling(limits, SERVERS, run.chunk, run.users)
        print(f"{run.name:<34}{run.users:>6}{run.sent:>9}{run.seconds:>8.1f}{run.records_per_s:>8.0f}"
              f"{run_ceiling.records_per_s:>9.0f}{run.records_per_s / run_ceiling.records_per_s:>7.2f}"
              f"{run.requests:>9}{run.server_429:>6}{run.failed:>7}{run.lost:>6}{run.duplicated:>5}")

    print(f"ours_rps={ours[1].records_per_s:.0f}")
    print(f"ceiling_rps={ceiling.records_per_s:.0f}")
    print(f"ratio_to_ceiling={ours[1].records_per_s / ceiling.records_per_s:.2f}")
    print(f"ms_sdk_rps={sdk.records_per_s:.0f}")
    print(f"speedup_vs_ms_sdk={ours[1].records_per_s / sdk.records_per_s:.1f}")
    print(f"naive_rps={naive.records_per_s:.1f}")
    print(f"throttled_429={sum(run.server_429 for run in ours.values())}")
    print(f"lost={sum(run.lost for run in runs)}")
    for n in (2, 4):
        value = f"{ours[n].records_per_s / ours[1].records_per_s:.2f}" if n in ours else "n/a"
        print(f"users_{n}_speedup={value}")


if __name__ == "__main__":
    main()
