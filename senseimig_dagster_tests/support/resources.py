"""The resources a test materializes assets with: the keys ``resources.build_resources`` registers (``sensei``,
``dataverse``, ``sample_dataverse``, ``graph``, ``mapping``, ``staging_rules``, ``store``, ``audit``) plus the DuckDB
IO manager, pointed at the test's files and stand-ins instead of the environment's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from senseimig_dagster.io_managers import SenseimigDuckDBIOManager
from senseimig_dagster.mapping import default_map_path
from senseimig_dagster.resources import (
    AuditStore,
    DataverseResource,
    GraphResource,
    MappingResource,
    SenseiSource,
    StagingResource,
    StoreResource,
)

IO_MANAGER = "duckdb_io_manager"


def migration_resources(database: str | Path, *, mapping: str | Path | None = None, sensei_url: str | None = None,
                        dataverse: DataverseResource | None = None,
                        sample_dataverse: DataverseResource | None = None, graph: GraphResource | None = None,
                        audit: str | Path | None = None) -> dict[str, Any]:
    """Resources over the DuckDB file ``database``: the map at ``mapping`` (default: the shipped map), staging's
    rules without a fallback provider and with ``corrections.yaml`` beside ``database`` (absent unless the test
    writes it), the audit store at ``audit`` (default: ``audit.duckdb`` beside ``database``), no SharePoint unless
    ``graph``. ``sensei`` only with ``sensei_url``, ``dataverse`` and ``sample_dataverse`` only with ``dataverse``
    (the sample one defaults to it): an asset needing a service the test did not start fails for want of its
    resource."""
    database = str(database)
    out: dict[str, Any] = {
        IO_MANAGER: SenseimigDuckDBIOManager(database=database), "store": StoreResource(database=database),
        "mapping": MappingResource(path=str(mapping or default_map_path())),
        "staging_rules": StagingResource(fallback_provider_id=None,
                                         corrections_path=str(Path(database).parent / "corrections.yaml")),
        "audit": AuditStore(path=str(audit or Path(database).parent / "audit.duckdb")),
        "graph": graph or GraphResource(site_url=None)}
    if sensei_url is not None:
        out["sensei"] = SenseiSource(base_url=sensei_url)
    if dataverse is not None:
        out["dataverse"] = dataverse
        out["sample_dataverse"] = sample_dataverse or dataverse
    elif sample_dataverse is not None:
        out["sample_dataverse"] = sample_dataverse
    return out
