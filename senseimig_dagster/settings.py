"""Environment-driven settings: the one place the product reads environment variables. With nothing set, everything
points at the local sandbox (simulator, emulator, stand-ins), so a fresh clone runs with no credentials.

Secrets are never read here as values (:func:`is_set` only asks whether one is configured): ``resources.py`` wraps
them in Dagster ``EnvVar`` so they are resolved at run time and shown in the UI by name only.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from urllib.parse import urlsplit

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


def corrections_path() -> str:
    """The corrections file staging applies (``staging/corrections.py``); absent: none."""
    return os.environ.get("SENSEIMIG_CORRECTIONS", "corrections.yaml")


def sensei_export_encodings() -> dict[str, str]:
    """``SENSEI_EXPORT_ENCODING``: the encoding of legacy exports, ``cp1252`` for every file or
    ``ledger_transaction=cp1252,patient=cp1252`` per object (``*=`` the others); UTF-8 when unset."""
    value = os.environ.get("SENSEI_EXPORT_ENCODING", "").strip()
    if not value:
        return {}
    if "=" not in value:
        return {"*": value}
    pairs = (item.split("=", 1) for item in value.split(",") if item.strip())
    return {name.strip(): encoding.strip() for name, encoding in pairs}


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


def sample_ca_bundle() -> str | None:
    """CA file for a customer's sandbox environment (``SAMPLE_DATAVERSE_URL``): ``DATAVERSE_CA_BUNDLE`` or the system's."""
    return os.environ.get("DATAVERSE_CA_BUNDLE") or None


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


def graph_authority_host() -> str:
    """Where Graph tokens come from: the same Entra ID as Dataverse's, unless ``GRAPH_AUTHORITY_HOST`` is set (only the
    sandbox, whose Graph stand-in issues its own tokens)."""
    return os.environ.get("GRAPH_AUTHORITY_HOST") or azure_authority_host()


def graph_ca_bundle() -> str | None:
    return os.environ.get("GRAPH_CA_BUNDLE") or None


def mapping_path() -> str:
    """The migration's field map file; the shipped default map is used while it does not exist."""
    return os.environ.get("SENSEIMIG_MAPPING", "mapping.yaml")


def fallback_owner() -> str | None:
    """Owner of the records of Sensei users who match no enabled Dataverse user: an e-mail, systemuserid or teamid."""
    return os.environ.get("SENSEIMIG_FALLBACK_OWNER") or None


def match_overrides_path() -> str:
    """A person's decisions on patient pairs (merge, never): CSV ``id_a,id_b,action[,note]``; absent = none."""
    return os.environ.get("SENSEIMIG_MATCH_OVERRIDES", "match_overrides.csv")


def fallback_provider_id() -> str | None:
    """The Sensei provider id given to rows whose free-text provider matches no provider or several."""
    return os.environ.get("SENSEIMIG_FALLBACK_PROVIDER_ID") or None


def sample_dataverse_url() -> str | None:
    """A customer's sandbox environment for the sample migration; None: the local emulator (never DATAVERSE_URL)."""
    return os.environ.get("SAMPLE_DATAVERSE_URL") or None


def azure_tenant_id(default: str) -> str:
    return os.environ.get("AZURE_TENANT_ID", default)


def azure_client_id(default: str) -> str:
    return os.environ.get("AZURE_CLIENT_ID", default)


def dagster_home() -> Path:
    """The Dagster instance the CLI and the demo record runs in (``make ui`` shows them): ``$DAGSTER_HOME``, else
    ``.dagster_home``; set for the process, as Dagster reads it."""
    return Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster_home").resolve())))


def sandbox_dataverse() -> bool:
    """Whether the migration writes to a local stand-in (``DATAVERSE_URL`` unset or on this machine), not a real
    environment: real ones require encrypted local stores."""
    host = urlsplit(dataverse_url()).hostname or ""
    return host in ("127.0.0.1", "localhost", "::1")


def opted_out(name: str, value: str) -> bool:
    """Whether ``name`` is set to exactly ``value``: an explicit opt-out is spelled out, never a truthy default."""
    return os.environ.get(name) == value


def is_set(name: str) -> bool:
    """Whether a secret's variable is set: resources then take it as ``EnvVar(name)``, resolved at run time and
    shown by name only; its value is never read here."""
    return bool(os.environ.get(name))


def sensei_api_key_for_simulator() -> str:
    """The key the sandbox Sensei simulator accepts (a server process: it must know the value)."""
    return os.environ.get("SENSEI_API_KEY", SANDBOX_API_KEY)


def asset_owner() -> str:
    """Who owns every asset in the Dagster UI: ``team:<name>`` or an e-mail (Dagster's owner format)."""
    return os.environ.get("SENSEIMIG_ASSET_OWNER", "team:data-migration")
