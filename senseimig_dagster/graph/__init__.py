"""Microsoft Graph client for SharePoint document libraries (documents too large for a note)."""

from senseimig_dagster.graph.drive import DriveFile, GraphDrive, valid_sharepoint_name
from senseimig_dagster.graph.errors import GraphConflict, GraphError, GraphNotFound, GraphThrottled

__all__ = ["DriveFile", "GraphConflict", "GraphDrive", "GraphError", "GraphNotFound", "GraphThrottled",
           "valid_sharepoint_name"]
