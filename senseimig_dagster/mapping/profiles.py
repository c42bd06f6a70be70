"""Value profiles of source columns, from a sample of the raw tables.

A profile keeps counts and shares only (what share of values look like e-mail addresses, phones, dates, money,
NPIs, CDT codes, tooth numbers, UUIDs; the longest value; how many distinct values). The one exception is a
low-cardinality column's categories, kept in memory so a picklist can map them to options; they reach the map
file only as a picklist's keys, and never for a field the registry marks as PHI. Reasons quote shares, never
values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import duckdb
import polars as pl

from senseimig_dagster.objects import OBJECTS, FieldType
from senseimig_dagster.sensei.records import LINEAGE_COLUMNS

SAMPLE_ROWS = 2000
MAX_CATEGORIES = 12  # more distinct values than this is not a picklist
MIN_CATEGORY_ROWS = 2  # a category seen once may identify a person: never offered as a picklist key

_PATTERNS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"),
    "phone": re.compile(r"^\+?1?[\s.-]?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4}(\s*(x|ext\.?)\s*\d+)?$"),
    "date": re.compile(r"^(\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{4})$"),
    "datetime": re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$"),
    "money": re.compile(r"^-?\$?\d{1,10}\.\d{2}$"),
    "npi": re.compile(r"^\d{10}$"),
    "cdt": re.compile(r"^D\d{4}$"),
    "tooth": re.compile(r"^([1-9]|[12]\d|3[0-2]|[A-T])$"),
    "uuid": re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"),
    "integer": re.compile(r"^-?\d+$"),
}
SEMANTIC_LABELS = {"email": "e-mail addresses", "phone": "phone numbers", "date": "dates", "datetime": "timestamps",
                   "money": "money amounts", "npi": "NPIs with a valid check digit", "cdt": "CDT codes",
                   "tooth": "tooth numbers", "uuid": "UUIDs"}
_DUCKDB_KINDS = (("[]", "json"), ("STRUCT", "json"), ("JSON", "json"), ("BOOL", "bool"), ("TIMESTAMP", "datetime"), ("DATE", "date"), ("DECIMAL", "decimal"),
                 ("DOUBLE", "decimal"), ("FLOAT", "decimal"), ("INT", "int"))


@dataclass(frozen=True)
class ColumnProfile:
    name: str
    duck_type: str
    kind: FieldType  # the source type the map checks against: the registry's when known, else from DuckDB + values
    rows: int  # sampled rows
    non_null: int
    distinct: int
    max_length: int  # longest value as text (0 for non-text)
    shares: dict[str, float] = field(default_factory=dict)  # semantic -> share of non-null values
    categories: tuple[tuple[str, int], ...] = ()  # value -> count, when low-cardinality (see module docstring)
    phi: bool = False
    references: str | None = None  # registry object this field points at, when the field is a registry field
    registry_field: bool = False

    def share(self, semantic: str) -> float:
        return self.shares.get(semantic, 0.0)

    @property
    def semantic(self) -> str | None:
        """The dominant value pattern (≥ 80 % of values), if any."""
        best = max(((s, v) for s, v in self.shares.items() if s not in ("integer", "tooth")), key=lambda x: x[1],
                   default=(None, 0.0))
        return best[0] if best[1] >= 0.8 else None


def _npi_ok(digits: str) -> bool:
    """Luhn over ``80840`` + the first nine digits (the NPI check digit rule)."""
    total = 0
    for i, ch in enumerate(reversed("80840" + digits[:9])):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return (10 - total % 10) % 10 == int(digits[9])


def _kind_of(duck_type: str) -> FieldType:
    upper = duck_type.upper()
    return next((kind for prefix, kind in _DUCKDB_KINDS if prefix in upper), "str")  # type: ignore[return-value]


def profile_series(name: str, series: pl.Series, duck_type: str, *, registry_object: str | None = None) -> ColumnProfile:
    """Profile one column; ``registry_object`` given and ``name`` a field of it: the registry's type and flags."""
    spec = OBJECTS.get(registry_object or "")
    reg = spec.field(name) if spec is not None and name in spec.field_names else None
    values = series.drop_nulls()
    if series.dtype in (pl.List, pl.Struct, pl.Object):
        values = values.cast(pl.String, strict=False).drop_nulls()
    text = values.cast(pl.String, strict=False).drop_nulls()
    text = text.filter(text.str.strip_chars() != "")
    n = text.len()
    shares: dict[str, float] = {}
    if n:
        stripped = text.str.strip_chars()
        for semantic, pattern in _PATTERNS.items():
            hits = stripped.str.contains(pattern.pattern)
            if semantic == "npi" and hits.any():
                hits = hits & stripped.map_elements(lambda s: len(s) == 10 and s.isdigit() and _npi_ok(s),
                                                    return_dtype=pl.Boolean)
            share = float(hits.sum()) / n
            if share:
                shares[semantic] = round(share, 3)
    kind: FieldType = reg.type if reg is not None else _kind_of(duck_type)
    if reg is None and kind == "str" and shares.get("uuid", 0) >= 0.9:
        kind = "uuid"
    distinct = text.n_unique() if n else 0
    categories: tuple[tuple[str, int], ...] = ()
    if 0 < distinct <= MAX_CATEGORIES and n >= 2 * distinct and kind in ("str", "bool"):
        counts = text.value_counts(sort=True)
        categories = tuple((str(v), int(c)) for v, c in counts.rows() if c >= MIN_CATEGORY_ROWS)
    max_length = int(text.str.len_chars().max() or 0) if n and kind in ("str", "text", "uuid", "json") else 0
    return ColumnProfile(name, duck_type, kind, series.len(), n, distinct, max_length, shares, categories,
                         phi=bool(reg and reg.phi), references=reg.references if reg else None,
                         registry_field=reg is not None)


def profile_frame(frame: pl.DataFrame, duck_types: dict[str, str], registry_object: str | None = None
                  ) -> list[ColumnProfile]:
    return [profile_series(c, frame[c], duck_types.get(c, "VARCHAR"), registry_object=registry_object)
            for c in frame.columns if c not in LINEAGE_COLUMNS]


def profile_raw(conn: duckdb.DuckDBPyConnection, schema: str = "raw", objects: list[str] | None = None,
                sample_rows: int = SAMPLE_ROWS, *, registry_names: bool = True) -> dict[str, list[ColumnProfile]]:
    """Profiles of every raw table present (``<schema>.<object>``), from a reservoir sample of ``sample_rows``.
    ``registry_names``: columns named like registry fields take the registry's type and PHI flag."""
    present = {r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [schema]).fetchall()}
    out: dict[str, list[ColumnProfile]] = {}
    for name in objects or list(OBJECTS):
        if name not in present:
            continue
        types = dict(conn.execute("SELECT column_name, data_type FROM information_schema.columns "
                                  "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                                  [schema, name]).fetchall())
        keep = [c for c in types if c not in LINEAGE_COLUMNS]
        select = ", ".join(f'"{c}"' for c in keep)
        frame = conn.sql(f'SELECT {select} FROM "{schema}"."{name}" USING SAMPLE {int(sample_rows)} ROWS').pl()
        out[name] = profile_frame(frame, types, name if registry_names else None)
    return out
