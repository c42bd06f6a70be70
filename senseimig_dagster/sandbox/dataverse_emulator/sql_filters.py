"""``$filter`` conditions (``odata.parse_filter``) as a SQLite WHERE clause over the JSON records of ``store.py``.

Strings compare case- and accent-insensitively (``fold``, SQL Server's default ``_CI_AI`` collation); a null column
never compares (three-valued logic), except ``eq null`` and ``ne null``.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from senseimig_dagster.sandbox.dataverse_emulator.odata import AnyCondition, AnyOf, Compare, Like, Unlike


def where(table: str, filters: Any) -> tuple[str, list[Any]]:
    clauses, params = ["tbl=?"], [table]
    for column, value in filters:
        clause, more = _clause(column, value)
        clauses.append(clause)
        params += more
    return " AND ".join(clauses), params


def _clause(column: str, value: Any) -> tuple[str, list[Any]]:
    path = f'$."{column}"'
    if isinstance(value, AnyCondition):  # a or b, on any columns
        parts = [_clause(c, v) for c, v in value.conditions]
        return "(" + " OR ".join(p for p, _ in parts) + ")", [x for _, more in parts for x in more]
    if isinstance(value, AnyOf):  # c eq a or c eq b ...
        return f"fold(json_extract(data, ?)) IN ({', '.join('?' * len(value.values))})", \
            [path, *(fold(v) for v in value.values)]
    if isinstance(value, (Like, Unlike)):  # case- and accent-insensitive, like equality
        negated = "NOT " if isinstance(value, Unlike) else ""
        return f"fold(json_extract(data, ?)) {negated}LIKE fold(?) ESCAPE '\\'", [path, value.pattern]
    if isinstance(value, Compare):
        if value.value is None:  # "ne null": has a value (gt/lt null match nothing)
            return f"json_extract(data, ?) {'IS NOT' if value.operator == 'ne' else '<'} NULL", [path]
        side = "fold(json_extract(data, ?))" if isinstance(value.value, str) else "json_extract(data, ?)"
        return f"{side} {Compare.SQL[value.operator]} ?", [path, fold(value.value)]
    if isinstance(value, str):
        return "fold(json_extract(data, ?)) = ?", [path, fold(value)]
    return f"json_extract(data, ?) {'IS' if value is None else '='} ?", [path, fold(value)]


def fold(value: Any) -> Any:
    """What a value compares as under ``_CI_AI``: text without letter case or accents, anything else as it is."""
    if not isinstance(value, str):
        return value
    if value.isascii():
        return value.lower()
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
