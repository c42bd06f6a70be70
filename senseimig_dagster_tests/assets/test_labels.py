"""Every asset of the definitions carries an owner, a layer tag and (where it has one) its Sensei object, and shows a
label in lineage that no other asset shows."""

from __future__ import annotations

from collections import Counter

from dagster import AssetKey, AssetSpec

from senseimig_dagster.assets.labels import LAYER_TAG, OBJECT_TAG, labelled_spec
from senseimig_dagster.definitions import defs
from senseimig_dagster.objects import REGISTRY

NODES = list(defs.resolve_asset_graph().asset_nodes)


def test_every_asset_has_an_owner_and_a_layer_tag_and_its_object():
    names = {o.name for o in REGISTRY}
    for node in NODES:
        assert node.owners == ["team:data-migration"], node.key
        assert node.tags[LAYER_TAG] == node.group_name, node.key
        if node.key.path[-1] in names:
            assert node.tags[OBJECT_TAG] == node.key.path[-1], node.key
    assert {n.tags[OBJECT_TAG] for n in NODES if n.group_name == "raw"} == names


def test_no_two_assets_show_the_same_label():
    labels = Counter((n.description or "").splitlines()[0] for n in NODES)
    assert "" not in labels
    assert [text for text, seen in labels.items() if seen > 1] == []
    patients = [text for text in labels if text.split(" · ")[-1].split(" — ")[0] == "patient"]
    assert sorted(patients) == ["Dataverse · patient — written to Dataverse",
                                "Raw · patient — as received from Sensei",
                                "Staging · patient — shaped into Dataverse columns"]


def test_the_owner_is_configured_in_one_place_and_the_description_kept(monkeypatch):
    monkeypatch.setenv("SENSEIMIG_ASSET_OWNER", "migrations@example.com")
    spec = labelled_spec(AssetSpec(AssetKey(["staging", "merge_map"]), group_name="staging",
                                   description="Merged patients.", tags={"kept": "yes"}))
    assert spec.owners == ["migrations@example.com"]
    assert spec.tags == {"kept": "yes", LAYER_TAG: "staging"}
    assert spec.description == "Staging · merge map\n\nMerged patients."
