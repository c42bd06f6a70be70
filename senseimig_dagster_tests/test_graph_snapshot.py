"""The asset graph against its reviewed snapshot (``snapshots/asset_graph.json``): every asset key with its parent
keys, every asset check per asset, every job's asset selection. A refactor that changes the graph fails here with
the difference; when the change is intended, rewrite the snapshot and review its diff in the commit::

    SENSEIMIG_UPDATE_SNAPSHOTS=1 python -m pytest senseimig_dagster_tests/test_graph_snapshot.py
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from dagster import Definitions

from senseimig_dagster.definitions import defs

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"
UPDATE = "SENSEIMIG_UPDATE_SNAPSHOTS"


def asset_graph(definitions: Definitions) -> dict[str, Any]:
    """``assets``: key -> sorted parent keys; ``checks``: key -> its check names; ``jobs``: name -> the asset keys it
    executes (none for an op job). Keys as Dagster writes them (``dataverse/patient``)."""
    graph = definitions.resolve_asset_graph()
    out: dict[str, Any] = {"assets": {}, "checks": {}, "jobs": {}}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        out["assets"][key.to_user_string()] = sorted(p.to_user_string() for p in graph.get(key).parent_keys)
    for check in sorted(graph.asset_check_keys, key=lambda c: (c.asset_key.to_user_string(), c.name)):
        out["checks"].setdefault(check.asset_key.to_user_string(), []).append(check.name)
    for job in definitions.resolve_all_job_defs():
        if job.name.startswith("__"):  # Dagster's implicit asset jobs
            continue
        out["jobs"][job.name] = sorted(k.to_user_string() for k in job.asset_layer.executable_asset_keys)
    return out


def _text(graph: dict[str, Any]) -> str:
    return json.dumps(graph, indent=1, sort_keys=True) + "\n"


def test_the_asset_graph_matches_its_snapshot() -> None:
    current = asset_graph(defs)
    if os.environ.get(UPDATE) == "1":
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(_text(current), encoding="utf-8")
        return
    expected = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    if current != expected:
        diff = "".join(difflib.unified_diff(_text(expected).splitlines(keepends=True),
                                            _text(current).splitlines(keepends=True),
                                            fromfile=f"{SNAPSHOT.name} (snapshot)", tofile="the graph now"))
        pytest.fail(f"the asset graph differs from {SNAPSHOT.relative_to(SNAPSHOT.parents[2])}:\n{diff}\n"
                    f"If the change is intended, rewrite the snapshot and review it in the commit:\n"
                    f"  {UPDATE}=1 python -m pytest {Path(__file__).relative_to(SNAPSHOT.parents[2])}",
                    pytrace=False)
