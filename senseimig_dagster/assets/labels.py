"""What every asset shows in the Dagster UI besides its key, declared once for the whole graph: the owning team, a
``layer`` tag (the asset's group: raw, staging, dataverse, ...), a ``sensei_object`` tag where the asset carries one
registry object, and a description whose first line - the label under a node in lineage, where three nodes would
otherwise read only "patient" - names the layer and the object."""

from __future__ import annotations

from collections.abc import Iterable

from dagster import AssetsDefinition, AssetSpec, map_asset_specs

from senseimig_dagster import settings
from senseimig_dagster.objects import REGISTRY

OBJECT_NAMES = frozenset(o.name for o in REGISTRY)
LAYER_TAG, OBJECT_TAG = "layer", "sensei_object"
OBJECT_ROLES = {"raw": "as received from Sensei", "staging": "shaped into Dataverse columns",
                "dataverse": "written to Dataverse"}  # what a per-object asset is in its layer


def layer_of(spec: AssetSpec) -> str:
    return spec.group_name or "default"


def object_of(spec: AssetSpec) -> str | None:
    """The registry object an asset carries: its key's last part when that names one."""
    name = spec.key.path[-1]
    return name if name in OBJECT_NAMES else None


def label(spec: AssetSpec) -> str:
    """One line, unique in the graph: layer, then the object (or what the asset is), then its role in the layer."""
    layer, obj = layer_of(spec), object_of(spec)
    what = spec.key.path[-1].replace("_", " ")
    role = OBJECT_ROLES.get(layer) if obj else None
    return f"{layer.capitalize()} · {what}" + (f" — {role}" if role else "")


def labelled_spec(spec: AssetSpec) -> AssetSpec:
    obj = object_of(spec)
    tags = {**spec.tags, LAYER_TAG: layer_of(spec), **({OBJECT_TAG: obj} if obj else {})}
    body = f"\n\n{spec.description}" if spec.description else ""
    return spec.replace_attributes(owners=[settings.asset_owner()], tags=tags, description=label(spec) + body)


def labelled(assets: Iterable[AssetsDefinition]) -> list[AssetsDefinition]:
    """``assets`` with owner, tags and labelled descriptions; keys, dependencies and checks unchanged."""
    return list(map_asset_specs(labelled_spec, list(assets)))
