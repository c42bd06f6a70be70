"""The registry declares each object's Dataverse target once; the shipped default map must agree with it (the map
may be changed by a person for their migration, the default may not drift from the registry the schema plan is
derived from)."""

from __future__ import annotations

import pytest

from senseimig_dagster.mapping import default_map
from senseimig_dagster.mapping.schema_plan import default_plan
from senseimig_dagster.objects import REGISTRY, UNKEYED_TABLES, SenseiObject


@pytest.mark.parametrize("obj", REGISTRY, ids=lambda o: o.name)
def test_the_default_map_writes_each_object_where_the_registry_declares(obj: SenseiObject) -> None:
    om = default_map().objects[obj.name]
    assert om.table == obj.target.table
    assert (om.merge is not None) == obj.target.merged
    assert tuple(t for t in om.tables if t != om.table) == obj.target.also


def test_every_written_table_is_in_the_schema_plan_with_the_key_the_registry_declares() -> None:
    plan = {t.logical_name: t for t in default_plan().tables}
    for obj in REGISTRY:
        if obj.target.merged or obj.target.table == "systemuser":
            continue
        for table in (obj.target.table, *obj.target.also):
            assert table in plan, f"{obj.name}: {table}"
            assert bool(plan[table].keys) == (table not in UNKEYED_TABLES), table
