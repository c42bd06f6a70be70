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
