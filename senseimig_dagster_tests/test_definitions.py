"""The one Definitions object loads as the UI would load it, and its graph has the shape DESIGN §7 describes."""

from __future__ import annotations

from dagster import AssetKey, Definitions

from senseimig_dagster.definitions import defs
from senseimig_dagster.objects import REGISTRY


def test_definitions_load_like_the_ui_loads_them():
    Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert {"extract", "take_inventory"} <= {job.name for job in repo.get_all_jobs()}


def test_one_raw_asset_per_registry_object_and_inventory_after_all_of_them():
    graph = defs.resolve_asset_graph()
    raw = {AssetKey(["raw", o.name]) for o in REGISTRY}
    assert raw <= set(graph.get_all_asset_keys())
    assert raw <= graph.get(AssetKey(["inventory", "record_counts"])).parent_keys
