"""What a field map writes, object by object: which objects have rows of their own in Dataverse, which are merged
into another's rows, the tables each writes, and the writers a writer waits for. Read by staging, the writers, the
checks and the asset graph; all of it follows from the map and the registry."""

from __future__ import annotations

from collections.abc import Iterable

from senseimig_dagster.mapping.model import FieldMapFile
from senseimig_dagster.objects import get, load_order


def written_objects(fmap: FieldMapFile) -> list[str]:
    """Objects with rows of their own in Dataverse, parents first: not ``match`` / ``skip``, not merged."""
    return [o.name for o in load_order() if (om := fmap.objects.get(o.name)) is not None
            and om.mode == "upsert" and om.merge is None]


def merged_objects(fmap: FieldMapFile) -> list[str]:
    return [name for name, om in fmap.objects.items() if om.merge is not None]


def merge_root(fmap: FieldMapFile, name: str) -> str:
    """The written object whose rows carry ``name``'s values: itself, or what it is merged into (transitively: an
    insurance plan through the policy holding it)."""
    seen = {name}
    while (om := fmap.objects.get(name)) is not None and om.merge is not None and om.merge.into not in seen:
        name = om.merge.into
        seen.add(name)
    return name


def accounted_by(fmap: FieldMapFile, name: str) -> list[str]:
    """The objects whose rows a written object's conservation accounts for: itself and the objects merged into it."""
    return [name, *(m for m in merged_objects(fmap) if m != name and merge_root(fmap, m) == name)]


def tables_of(fmap: FieldMapFile, objects: Iterable[str]) -> set[str]:
    return {t for name in objects if name in fmap.objects for t in fmap.objects[name].tables}


def written_tables(fmap: FieldMapFile) -> set[str]:
    """Every table the map writes rows to (where any writer's lookups may point)."""
    return tables_of(fmap, written_objects(fmap))


def writer_parents(fmap: FieldMapFile, name: str) -> list[str]:
    """Written objects that must load before ``name``: its registry parents, a merged parent standing for the
    object it is merged into (a claim's policy lives on the patient), matched users left to the owner resolution."""
    written = set(written_objects(fmap))
    out: list[str] = []
    for parent in get(name).parents:
        parent = merge_root(fmap, parent)
        if parent in written and parent != name and parent not in out:
            out.append(parent)
    return out
