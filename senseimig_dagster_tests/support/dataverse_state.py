"""What the Dataverse emulator holds, read from its SQLite file, in the two forms the tests compare:

* :func:`snapshot` / :func:`diff`: every record by table and id, nulls and what every write changes anyway
  (``modifiedon``, ``versionnumber``, ETags) left out, plus the custom schema: a rollback must give back exactly the
  snapshot taken before the migration;
* :func:`keyed_state` / :func:`state_diff`: every record by alternate key, GUIDs that name another record replaced
  by that record's key, what Dataverse stamps at write time left out: two clean runs (or a crashed run recovered
  and a clean one) must give equal states.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

from senseimig_dagster.sandbox.dataverse_emulator import DataverseEmulator
from senseimig_dagster_tests.support.constants import SOURCE_KEY as KEY

# What every write changes anyway (a rollback's snapshot leaves them out).
IGNORED = {"modifiedon", "versionnumber", "@odata.etag"}
# ... and what Dataverse stamps at write time (differs between two clean runs).
VOLATILE = frozenset({*IGNORED, "modifiedby", "modifiedonbehalfby"})


# -- one environment before and after ---------------------------------------------------------------------------------
def snapshot(emulator: DataverseEmulator) -> dict[str, Any]:
    """Every record of every table (nulls dropped: Dataverse reads an unset and a cleared column alike) and the
    custom schema: tables, columns, lookups, keys and relationships."""
    rows = emulator.store._conn.execute("SELECT tbl, id, data FROM records ORDER BY tbl, id").fetchall()
    records = {(t, i): {k: v for k, v in json.loads(d).items() if k not in IGNORED and v is not None}
               for t, i, d in rows}
    catalog = emulator.catalog
    schema = {}
    for name, table in catalog.tables.items():
        schema[name] = (sorted(table.columns), sorted(table.lookups), sorted(k.schema_name for k in table.keys))
    return {"records": records, "schema": schema, "relationships": sorted(catalog.relationships)}


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs, by table and id (test output only)."""
    out = []
    for key in sorted(set(before["records"]) | set(after["records"])):
        if before["records"].get(key) != after["records"].get(key):
            out.append(f"record {key}: {before['records'].get(key)} != {after['records'].get(key)}")
    for name in sorted(set(before["schema"]) | set(after["schema"])):
        if before["schema"].get(name) != after["schema"].get(name):
            out.append(f"schema {name}")
    if before["relationships"] != after["relationships"]:
        out.append("relationships")
    return out


# -- two runs compared by keys ----------------------------------------------------------------------------------------
def records(database: Path) -> list[tuple[str, str, dict[str, Any]]]:
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT tbl, id, data FROM records ORDER BY tbl, id").fetchall()
    return [(t, i, json.loads(d)) for t, i, d in rows]


# Records with neither a source id nor a deterministic GUID: an activity party is its activity, role and party; a
# SharePoint location its regarding record and folder.
CONTENT_KEYED = {"activityparty": ("activityid", "participationtypemask", "partyid"),
                 "sharepointdocumentlocation": ("regardingobjectid", "relativeurl")}


def keyed_state(database: Path) -> tuple[dict[tuple[str, str], dict[str, Any]], list[tuple[str, str]]]:
    """Every record by (table, source id), or (table, id) when it has none (seed rows, deterministic ids), with
    GUIDs that name another record replaced by that record's (table, key); ``createdon`` only where the migration
    overrode it. Also the (table, key) pairs seen more than once."""
    rows = records(database)
    name_of = {i: f"{t}:{d.get(KEY) or i}" for t, i, d in rows}
    # A contact's SharePoint folder is named by its GUID (load/document_routes.py: folder_name), which differs
    # between two runs.
    name_of |= {i.replace("-", "").upper(): f"folder of {t}:{d.get(KEY) or i}" for t, i, d in rows}
    state: dict[tuple[str, str], dict[str, Any]] = {}
    seen: Counter[tuple[str, str]] = Counter()
    for table, record_id, data in rows:
        key = (table, str(data.get(KEY) or record_id))
        if table in CONTENT_KEYED:  # rows the platform gives random GUIDs: known by what they connect
            key = (table, "|".join(str(name_of.get(v, v)) for v in (data.get(c) for c in CONTENT_KEYED[table])))
        seen[key] += 1
        values = {}
        for column, value in data.items():
            if column in VOLATILE or value is None or column == f"{table}id":
                continue
            # Dataverse keeps the migration's clock in overriddencreatedon ("the date the record was migrated")
            # and the source's date in createdon; without an override createdon is the run's clock too.
            if column == "overriddencreatedon" or (column == "createdon" and not data.get("overriddencreatedon")):
                continue
            values[column] = name_of.get(value, value) if isinstance(value, str) else value
        state[key] = values
    return state, sorted(k for k, n in seen.items() if n > 1)


def state_diff(expected: dict, got: dict, limit: int = 10) -> list[str]:
    """Keys missing, extra or differing (with the differing column names only: values may be PHI)."""
    out = [f"missing {k}" for k in sorted(set(expected) - set(got))]
    out += [f"extra {k}" for k in sorted(set(got) - set(expected))]
    for k in sorted(set(expected) & set(got)):
        if expected[k] != got[k]:
            cols = sorted(c for c in set(expected[k]) | set(got[k]) if expected[k].get(c) != got[k].get(c))
            out.append(f"differs {k}: {cols}")
    return out[:limit]
