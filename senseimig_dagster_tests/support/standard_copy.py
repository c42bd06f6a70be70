"""Builds the product's ``dataverse/standard_tables.json`` from the emulator's catalog (Microsoft's metadata plus the
documented appointment/phonecall navigation names). Run ``python -m senseimig_dagster_tests.support.standard_copy``
to refresh the copy; ``mapping/test_validate.py`` checks it has not drifted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from senseimig_dagster.dataverse.standard_tables import COPY_PATH
from senseimig_dagster.sandbox.dataverse_emulator import Catalog

_LOOKUP_TYPES = {"Lookup", "Customer", "Owner", "PartyList"}
# Tables a field map may write to or point lookups at: the copy carries their columns and lookups. Every other table
# of Microsoft's metadata gets its entity set and primary key only.
WRITABLE = ("account", "annotation", "appointment", "contact", "email", "phonecall", "systemuser", "team")


def build() -> dict[str, Any]:
    catalog = Catalog.load()
    out: dict[str, Any] = {}
    for name, table in sorted(catalog.tables.items()):
        out[name] = {"entity_set": table.entity_set, "primary_id": table.primary_id}
        if name not in WRITABLE:
            continue
        columns = {}
        for c in sorted(table.columns.values(), key=lambda c: c.logical_name):
            if c.type in _LOOKUP_TYPES or not (c.valid_for_create or c.valid_for_update):
                continue  # lookups are written through navigation properties; read-only columns never
            kind = "DateOnly" if c.type == "DateTime" and c.datetime_behavior == "DateOnly" else c.type
            facts: dict[str, Any] = {"kind": kind}
            if c.options:
                facts["options"] = list(c.options)
            if c.max_length is not None:
                facts["max_length"] = c.max_length
            if c.required in ("ApplicationRequired", "SystemRequired"):
                facts["required"] = c.required
            if c.min is not None:
                facts["min"] = c.min
            if c.max is not None:
                facts["max"] = c.max
            columns[c.logical_name] = facts
        lookups = {nav: {"attribute": lk.attribute, "targets": list(lk.targets)}
                   for nav, lk in sorted(table.lookups.items())}
        out[name] |= {"columns": columns, "lookups": lookups}
    return out


def render() -> str:
    return json.dumps(build(), indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    Path(COPY_PATH).write_text(render(), encoding="utf-8")
