"""Client-side copy of the standard tables' writable columns and navigation properties, for checking a field map
without a live environment.

``standard_columns.json`` is derived from Microsoft's published metadata (``reference/dataverse-tables.json``, plus
the documented appointment/phonecall navigation names) by ``senseimig_dagster_tests/mapping/standard_copy.py``; a
test keeps the two in step. Product code must not import the sandbox, hence the copy. Per table: ``columns``
(logical name -> ``kind``, and where Microsoft gives them ``options``, ``max_length``, ``required``
(ApplicationRequired / SystemRequired), ``min`` and ``max``; DateTime columns with DateOnly behaviour have kind
``DateOnly``) and ``lookups`` (navigation property -> the column it sets and the tables it may point at).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

# Tables a field map may write to (DESIGN §4) or point lookups at.
TABLES = ("account", "annotation", "appointment", "contact", "email", "phonecall", "systemuser", "team")
COPY_PATH = str(resources.files(__package__).joinpath("standard_columns.json"))


@cache
def standard_tables() -> dict[str, dict[str, Any]]:
    return json.loads(resources.files(__package__).joinpath("standard_columns.json").read_text("utf-8"))
