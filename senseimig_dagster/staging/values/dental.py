"""CDT codes, teeth and surfaces (the ADA's CDT code set, Universal tooth numbering). All O(n), pure Polars.

Product code must not import the sandbox, so the code list below is a copy (the same codes the generator's
``sandbox/generator/codes.py`` uses); it is the *common* codes only. A well-formed code missing from it
is a ``unknown_cdt_code`` warning (kept), since CDT has hundreds more; a malformed one (``D99999``) quarantines
the row.
"""

from __future__ import annotations

import polars as pl

from senseimig_dagster.staging.values import cleaned, first_reason

# Common CDT codes (ADA descriptors are copyrighted, so only codes are kept).
# fmt: off
KNOWN_CDT_CODES: frozenset[str] = frozenset((
    "D0120", "D0140", "D0150", "D0180", "D0210", "D0220", "D0230", "D0272", "D0274", "D0330", "D0350",
    "D1110", "D1120", "D1206", "D1208", "D1351", "D1354",
    "D2140", "D2150", "D2330", "D2331", "D2391", "D2392", "D2393", "D2394", "D2740", "D2750", "D2930", "D2950",
    "D2954",
    "D3220", "D3310", "D3320", "D3330",
    "D4341", "D4342", "D4355", "D4910",
    "D5110", "D6010",
    "D7140", "D7210", "D7230",
    "D8080", "D8090", "D8670",
    "D9110", "D9944", "D9986", "D9987",
))
# CDT category ranges, as (first code, category); a code belongs to the last range starting at or below.
CDT_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("D0000", "Diagnostic"), ("D1000", "Preventive"), ("D2000", "Restorative"), ("D3000", "Endodontics"),
    ("D4000", "Periodontics"), ("D5000", "Removable prosthodontics"), ("D5900", "Maxillofacial prosthetics"),
    ("D6000", "Implant services"), ("D6200", "Fixed prosthodontics"), ("D7000", "Oral and maxillofacial surgery"),
    ("D8000", "Orthodontics"), ("D9000", "Adjunctive general services"),
)
# fmt: on
CDT_FORMAT = r"^D\d{4}$"

# Universal numbering. Supernumerary numbers (51-82, AS-TS) are not in the common charting set, so they are
# not accepted: they would need a per-practice decision.
PERMANENT_TEETH = tuple(str(n) for n in range(1, 33))
PRIMARY_TEETH = tuple("ABCDEFGHIJKLMNOPQRST")
TEETH = PERMANENT_TEETH + PRIMARY_TEETH
# Incisors and canines: permanent 6-11 and 22-27, primary C-H and M-R; everything else is posterior.
ANTERIOR_TEETH = frozenset([*(str(n) for n in (*range(6, 12), *range(22, 28))), *"CDEFGHMNOPQR"])
QUADRANTS = ("UR", "UL", "LL", "LR")
ARCHES = ("U", "L")  # Sensei's "Tooth/Quad" column may hold these instead of a tooth

# Canonical surface order of the stored string ("MOD"); B (buccal) and F (facial) name the same surface.
SURFACE_ORDER = "MOIDBFL"
SURFACE_RULE = "letters M O I D B/F L, each once; O only on back teeth, I only on front teeth"


def clean_cdt_code(code: pl.Expr) -> pl.Expr:
    """Upper-cased, trimmed CDT code; ``invalid_cdt_code`` (not ``D`` + 4 digits) or ``unknown_cdt_code``."""
    value = code.cast(pl.String).str.strip_chars().str.to_uppercase()
    value = pl.when(value != "").then(value)
    malformed = value.is_not_null() & ~value.str.contains(CDT_FORMAT)
    unknown = value.is_not_null() & ~value.is_in(sorted(KNOWN_CDT_CODES))
    return cleaned(value, first_reason((malformed, "invalid_cdt_code"), (unknown, "unknown_cdt_code")))


def cdt_category(code: pl.Expr) -> pl.Expr:
    """The CDT category of a well-formed code (null otherwise)."""
    expr: pl.Expr = pl.lit(None, pl.String)
    for start, name in CDT_CATEGORIES:
        expr = pl.when(code >= start).then(pl.lit(name)).otherwise(expr)
    return pl.when(code.str.contains(CDT_FORMAT)).then(expr)


def _normalise_tooth(tooth: pl.Expr) -> pl.Expr:
    text = tooth.cast(pl.String).str.strip_chars().str.to_uppercase()
    text = text.str.replace(r"^0+(\d)", "$1")  # "03" -> "3"
    return pl.when(text != "").then(text)


def clean_tooth(tooth: pl.Expr, *, allow_areas: bool = False) -> pl.Expr:
    """A Universal tooth (``"1"``-``"32"``, ``"A"``-``"T"``) as text, from text or integers.

    ``allow_areas`` also accepts quadrants (UR UL LL LR) and arches (U L), which Sensei's "Tooth/Quad" column holds
    for quadrant and arch procedures. Anything else is ``invalid_tooth``.
    """
    value = _normalise_tooth(tooth)
    allowed = list(TEETH + (QUADRANTS + ARCHES if allow_areas else ()))
    return cleaned(value, first_reason((value.is_not_null() & ~value.is_in(allowed), "invalid_tooth")))


def tooth_detail(allow_areas: bool = False) -> str:
    return "Universal 1-32 or A-T" + (", quadrant UR/UL/LL/LR or arch U/L" if allow_areas else "")


def clean_surfaces(surfaces: pl.Expr, tooth: pl.Expr) -> pl.Expr:
    """Surfaces in canonical order (``"dom"`` -> ``"MOD"``; spaces, commas and dashes ignored) checked against
    the tooth: known letters only, no repeats (B and F together is a repeat), O only on posterior teeth and I only
    on anterior ones, and only on a tooth. ``invalid_surface`` otherwise."""
    text = surfaces.cast(pl.String).str.to_uppercase().str.replace_all(r"[\s,\-/]", "")
    text = pl.when(text != "").then(text)
    on_tooth = _normalise_tooth(tooth)
    anterior = on_tooth.is_in(sorted(ANTERIOR_TEETH))
    counts = {s: text.str.count_matches(s, literal=True) for s in SURFACE_ORDER}
    bad = (~text.str.contains(f"^[{SURFACE_ORDER}]+$")
           | pl.any_horizontal([n > 1 for n in counts.values()])
           | ((counts["B"] > 0) & (counts["F"] > 0))
           | ~on_tooth.is_in(list(TEETH)).fill_null(False)
           | ((counts["O"] > 0) & anterior)
           | ((counts["I"] > 0) & ~anterior))
    canonical = pl.concat_str([pl.when(counts[s] > 0).then(pl.lit(s)).otherwise(pl.lit("")) for s in SURFACE_ORDER])
    reason = first_reason((text.is_not_null() & bad, "invalid_surface"))
    return cleaned(pl.when(reason.is_null() & text.is_not_null()).then(canonical), reason)
