"""Client-side copy of Microsoft's published metadata for the standard tables the migration touches, so a field map
can be checked and a request addressed without a live environment.

``standard_tables.json`` is derived from Microsoft's metadata (the emulator's catalog: ``dataverse-tables.json`` plus
the documented appointment/phonecall navigation names) by ``senseimig_dagster_tests/support/standard_copy.py``; a
test keeps the two in step. Product code must not import the sandbox, hence the copy. Per table: ``entity_set`` and
``primary_id`` (activities share ``activityid``); for the tables a map may write to or point lookups at, also
``columns`` (logical name -> ``kind``, and where Microsoft gives them ``options``, ``max_length``, ``required``
(ApplicationRequired / SystemRequired), ``min`` and ``max``; DateTime columns with DateOnly behaviour have kind
``DateOnly``) and ``lookups`` (navigation property -> the column it sets and the tables it may point at).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

COPY_PATH = str(resources.files(__package__).joinpath("standard_tables.json"))


@cache
def _copy() -> dict[str, dict[str, Any]]:
    return json.loads(resources.files(__package__).joinpath("standard_tables.json").read_text("utf-8"))


@cache
def standard_tables() -> dict[str, dict[str, Any]]:
    """The standard tables a field map may write to or point lookups at: ``columns`` and ``lookups`` each."""
    return {name: facts for name, facts in _copy().items() if "columns" in facts}


@cache
def standard_entity_sets() -> dict[str, str]:
    """Entity set of every standard table in the copy (never a guessed plural)."""
    return {name: facts["entity_set"] for name, facts in _copy().items()}


def primary_id(table: str) -> str:
    """The table's primary key column: Microsoft's for standard tables (``activityid`` on activities), else
    ``<logical name>id`` (custom tables)."""
    facts = _copy().get(table)
    return facts["primary_id"] if facts else f"{table}id"


def is_activity(table: str) -> bool:
    """Activities (phone calls, e-mails, appointments) share activitypointer's key and its state machine."""
    return primary_id(table) == "activityid"
