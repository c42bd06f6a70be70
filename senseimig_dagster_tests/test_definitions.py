"""The one Definitions object loads as the UI would load it, and its graph has the layered shape: one raw asset per
registry object, the inventory after all of them."""

from __future__ import annotations

import subprocess
import sys

from dagster import AssetKey, Definitions

from senseimig_dagster.definitions import defs
from senseimig_dagster.objects import REGISTRY
from senseimig_dagster.resources import DataverseResource
from senseimig_dagster_tests.support.resources import migration_resources


def test_definitions_load_like_the_ui_loads_them():
    Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert {"extract", "take_inventory"} <= {job.name for job in repo.get_all_jobs()}


def test_one_raw_asset_per_registry_object_and_inventory_after_all_of_them():
    graph = defs.resolve_asset_graph()
    raw = {AssetKey(["raw", o.name]) for o in REGISTRY}
    assert raw <= set(graph.get_all_asset_keys())
    assert raw <= graph.get(AssetKey(["inventory", "record_counts"])).parent_keys


def test_the_tests_resources_use_the_keys_the_definitions_register(tmp_path):
    every = migration_resources(tmp_path / "db.duckdb", sensei_url="http://127.0.0.1:9", dataverse=DataverseResource(),
                                audit=tmp_path / "audit.duckdb")
    assert set(every) == set(defs.resources)


LOAD_RECORDING_WARNINGS = """
import warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    from senseimig_dagster.definitions import defs
    defs.resolve_asset_graph()
for w in seen:
    print(w.category.__name__, str(w.message).splitlines()[0][:120])
"""


def test_loading_the_definitions_warns_nothing():
    # a fresh interpreter: this one has imported the definitions already, under pytest's warning filters
    loaded = subprocess.run([sys.executable, "-c", LOAD_RECORDING_WARNINGS], capture_output=True, text=True,
                            timeout=120, check=True)
    assert loaded.stdout == ""
