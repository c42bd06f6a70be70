"""Sensei Cloud simulator: the REST API over a generated tenant directory.

    sim = SenseiSimulator(Path("data/tenant"), faults=Faults([Fault("patient", page=2, kind="http_500")]))
    with serve(sim) as base_url:            # real HTTP on 127.0.0.1, free port
        ...
    httpx.Client(transport=httpx.WSGITransport(app=sim))   # or in-process, for fast tests
"""

from senseimig_dagster.sandbox.sensei_sim.app import SenseiSimulator
from senseimig_dagster.sandbox.sensei_sim.faults import Fault, Faults
from senseimig_dagster.sandbox.sensei_sim.ratelimit import RateLimit
from senseimig_dagster.sandbox.sensei_sim.server import run_sensei_server, serve

__all__ = ["Fault", "Faults", "RateLimit", "SenseiSimulator", "run_sensei_server", "serve"]
