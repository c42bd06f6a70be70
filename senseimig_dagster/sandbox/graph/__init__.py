"""Microsoft Graph stand-in: SharePoint sites and document libraries (drives), files, upload sessions."""

from senseimig_dagster.sandbox.graph.app import GraphStandIn, SiteSpec, Throttle
from senseimig_dagster.sandbox.graph.server import run_graph_server, serve_graph
from senseimig_dagster.sandbox.graph.store import DriveStore

__all__ = ["DriveStore", "GraphStandIn", "SiteSpec", "Throttle", "run_graph_server", "serve_graph"]
