"""Dental code facts: CDT codes with what anatomy they need, teeth and canonical surfaces."""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal

from senseimig_dagster.sandbox.generator.model import Location, Proc


@dataclass(frozen=True, slots=True)
class Cdt:
    code: str
    needs: str  # "" none, "T" tooth, "TS" tooth + surfaces, "Q" quadrant, "A" arch
    fee: int  # UCR fee in dollars
    category: str  # coverage category: preventive, basic, major, ortho, none
    surfaces: int = 0  # surfaces a TS code implies (4 = four or more)


CDT: dict[str, Cdt] = {
    c.code: c
    for c in (
        Cdt("D0120", "", 65, "preventive"),
        Cdt("D0140", "", 95, "preventive"),
        Cdt("D0150", "", 120, "preventive"),
        Cdt("D0180", "", 130, "preventive"),
        Cdt("D0210", "", 160, "preventive"),
        Cdt("D0220", "T", 35, "preventive"),
        Cdt("D0230", "T", 28, "preventive"),
        Cdt("D0272", "", 60, "preventive"),
        Cdt("D0274", "", 80, "preventive"),
        Cdt("D0330", "", 130, "preventive"),
        Cdt("D0350", "", 70, "preventive"),
        Cdt("D1110", "", 115, "preventive"),
        Cdt("D1120", "", 80, "preventive"),
        Cdt("D1206", "", 45, "preventive"),
        Cdt("D1208", "", 40, "preventive"),
        Cdt("D1351", "T", 55, "preventive"),
        Cdt("D1354", "T", 40, "preventive"),
        Cdt("D2140", "TS", 150, "basic", 1),
        Cdt("D2150", "TS", 185, "basic", 2),
        Cdt("D2330", "TS", 165, "basic", 1),
        Cdt("D2331", "TS", 205, "basic", 2),
        Cdt("D2391", "TS", 185, "basic", 1),
        Cdt("D2392", "TS", 235, "basic", 2),
        Cdt("D2393", "TS", 285, "basic", 3),
        Cdt("D2394", "TS", 330, "basic", 4),
        Cdt("D2740", "T", 1350, "major"),
        Cdt("D2750", "T", 1250, "major"),
        Cdt("D2930", "T", 320, "basic"),
        Cdt("D2950", "T", 300, "major"),
        Cdt("D2954", "T", 380, "major"),
        Cdt("D3220", "T", 240, "basic"),
        Cdt("D3310", "T", 950, "major"),
        Cdt("D3320", "T", 1100, "major"),
        Cdt("D3330", "T", 1300, "major"),
        Cdt("D4341", "Q", 275, "basic"),
        Cdt("D4342", "Q", 200, "basic"),
        Cdt("D4355", "", 190, "basic"),
        Cdt("D4910", "", 165, "basic"),
        Cdt("D5110", "A", 1900, "major"),
        Cdt("D6010", "T", 2300, "major"),
        Cdt("D7140", "T", 185, "basic"),
        Cdt("D7210", "T", 320, "basic"),
        Cdt("D7230", "T", 450, "basic"),
        Cdt("D8080", "", 6000, "ortho"),
        Cdt("D8090", "", 6500, "ortho"),
        Cdt("D8670", "", 175, "ortho"),
        Cdt("D9110", "", 120, "basic"),
        Cdt("D9944", "A", 650, "major"),
        Cdt("D9986", "", 0, "none"),
        Cdt("D9987", "", 0, "none"),
    )
}

PERMANENT = tuple(range(1, 33))
PRIMARY = tuple("ABCDEFGHIJKLMNOPQRST")
_ANTERIOR = frozenset([*range(6, 12), *range(22, 28), *"CDEFGHMNOPQR"])
_MOLARS = frozenset([1, 2, 3, 14, 15, 16, 17, 18, 19, 30, 31, 32])
MULTI_ROOTED = _MOLARS | {5, 12}  # furcation is charted on these
WISDOM = (1, 16, 17, 32)
_CANONICAL = "MOIDBFL"  # surface order in the stored string, e.g. "MOD"
_QUADRANTS = ("UR", "UL", "LL", "LR")


def is_anterior(tooth: str) -> bool:
    return (int(tooth) if tooth.isdigit() else tooth) in _ANTERIOR


def quadrant_of(tooth: int) -> str:
    return _QUADRANTS[(tooth - 1) // 8]


def surfaces_for(rng: random.Random, tooth: str, count: int) -> str:
    """``count`` distinct surfaces valid for the tooth, in canonical order (4 means four or five)."""
    anterior = is_anterior(tooth)
    if count == 1:
        picked = (
            rng.choice(("M", "D", "F", "L", "I")) if anterior else rng.choice(("O", "O", "O", "B", "L", "M"))
        )
    else:
        pool = ["M", "I", "D", "F", "L"] if anterior else ["M", "O", "D", "B", "L"]
        # caries spreads from a proximal surface into the biting or facial/lingual one
        core = [rng.choice(("M", "D")), rng.choice(("F", "L", "I")) if anterior else "O"]
        rest = [s for s in pool if s not in core]
        rng.shuffle(rest)
        picked = "".join((core + rest)[: count + (count == 4 and rng.random() < 0.3)])
    return "".join(s for s in _CANONICAL if s in picked)


def restoration_code(tooth: str, surfaces: int, amalgam: bool) -> str:
    if is_anterior(tooth):
        return "D2330" if surfaces == 1 else "D2331"
    if amalgam and surfaces <= 2:
        return "D2140" if surfaces == 1 else "D2150"
    return ("D2391", "D2392", "D2393", "D2394")[min(surfaces, 4) - 1]


def proc(code: str, location: Location, tooth: str | None = None, surfaces: str | None = None) -> Proc:
    cdt = CDT[code]
    fee = Decimal(round(cdt.fee * location.fee_factor))
    return Proc(code, tooth, surfaces, fee, cdt.category)


def endo_code(tooth: int) -> str:
    if tooth in _MOLARS:
        return "D3330"
    return "D3310" if is_anterior(str(tooth)) else "D3320"


def random_quadrants(rng: random.Random, k: int) -> list[str]:
    return sorted(rng.sample(_QUADRANTS, k), key=_QUADRANTS.index)
