"""Environment-driven settings. With nothing set, everything points at the local sandbox (DESIGN §5).

Secrets are never read here as values: ``resources.py`` wraps them in Dagster ``EnvVar`` so they are resolved at
run time and shown in the UI by name only.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

SANDBOX_SENSEI_PORT = 8765
SANDBOX_API_KEY = "sandbox-key"  # the simulator's default key; not a secret


def duckdb_path() -> str:
    return os.environ.get("SENSEIMIG_DUCKDB", str(Path("data") / "senseimig.duckdb"))


def audit_path() -> str:
    """The audit log's own DuckDB file (encrypted when SENSEIMIG_AUDIT_KEY is set: audit/store.py)."""
    return os.environ.get("SENSEIMIG_AUDIT_DB", str(Path("data") / "audit.duckdb"))


def history_start() -> dt.date:
    """First day of the modification-time partitions. Everything modified before it lands in the first partition
    (the first full load), so set it shortly before go-live: days after it are the delta windows of cutover."""
    return dt.date.fromisoformat(os.environ.get("SENSEIMIG_HISTORY_START", "2026-10-01"))


def sensei_source() -> str:
    return os.environ.get("SENSEIMIG_SOURCE", "api")


def sensei_base_url() -> str:
    return os.environ.get("SENSEI_BASE_URL", f"http://127.0.0.1:{SANDBOX_SENSEI_PORT}")


def sensei_export_dir() -> str:
    return os.environ.get("SENSEI_EXPORT_DIR", str(Path("data") / "export"))


SANDBOX_DATAVERSE_PORT = 8766
SANDBOX_DATAVERSE_DB = str(Path("data") / "dataverse.sqlite")


def dataverse_url() -> str:
    """The Dataverse environment URL; the sandbox emulator (started with ``--tls``: msal wants https) by default."""
    return os.environ.get("DATAVERSE_URL", f"https://127.0.0.1:{SANDBOX_DATAVERSE_PORT}")


def dataverse_ca_bundle() -> str | None:
    """CA file to trust for the environment (the sandbox's local CA); None = the system's trust store."""
    if "DATAVERSE_CA_BUNDLE" in os.environ:
        return os.environ["DATAVERSE_CA_BUNDLE"] or None
    return None if "DATAVERSE_URL" in os.environ else str(Path(f"{SANDBOX_DATAVERSE_DB}.tls") / "ca.pem")


def dataverse_tier() -> str:
    return os.environ.get("SENSEIMIG_DATAVERSE_TIER", "professional")


def azure_authority_host() -> str:
    """Where tokens come from: Entra ID, or the sandbox emulator's own token endpoint when nothing is set."""
    if "AZURE_AUTHORITY_HOST" in os.environ:
        return os.environ["AZURE_AUTHORITY_HOST"]
    return "https://login.microsoftonline.com" if "DATAVERSE_URL" in os.environ else dataverse_url()


SANDBOX_GRAPH_PORT = 8767


def sharepoint_site_url() -> str | None:
    """The SharePoint site Dynamics' document management uses (``https://<tenant>.sharepoint.com/sites/<name>``);
    None = SharePoint not configured: documents that need it fail with ``sharepoint_not_configured``."""
    return os.environ.get("SHAREPOINT_SITE_URL") or None


def graph_url() -> str:
    """Microsoft Graph's root; the sandbox Graph stand-in (``senseimig sandbox graph --tls``) when the site is local."""
    return os.environ.get("GRAPH_URL", "https://graph.microsoft.com/v1.0" if "DATAVERSE_URL" in os.environ
                          else f"https://127.0.0.1:{SANDBOX_GRAPH_PORT}/v1.0")
