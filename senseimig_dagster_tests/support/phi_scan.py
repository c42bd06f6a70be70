"""The tenant's PHI values and a scan of files for them: what the leak test looks for in every file a migration left
outside its encrypted stores.

Values are the registry's PHI fields of a generated tenant (names, e-mails, phones, birth dates, addresses, note and
message text, document names), as the source serves them. Left out, because they match by chance in any file:
short values (fewer than ``MIN_LENGTH`` characters: an SSN's last four digits, a two-letter state, a nickname),
bare digit strings (a patient number is a substring of a float in Dagster's event log), and values the tenant also
holds in fields that are not PHI (a patient's city that is also a practice's city, shown in the inventory). Long
text is looked for by its first ``TEXT_PREFIX`` characters.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from senseimig_dagster.objects import REGISTRY

MIN_LENGTH = 6
TEXT_PREFIX = 32
_SCANNED_TYPES = frozenset({"str", "text", "date"})


def tenant_phi(tenant: Path) -> set[str]:
    """Every PHI value of the generated ``tenant`` (JSONL per object) worth looking for (see above)."""
    phi: set[str] = set()
    public: set[str] = set()
    for obj in REGISTRY:
        path = tenant / f"{obj.endpoint}.jsonl"
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            for f in obj.fields:
                value = row.get(f.name)
                if isinstance(value, str):
                    (phi if f.phi and f.type in _SCANNED_TYPES else public).add(value.strip())
    return {v[:TEXT_PREFIX] for v in phi - public if len(v) >= MIN_LENGTH and not v.isdigit()}


def files_under(*folders: Path, skip: Iterable[Path] = ()) -> list[Path]:
    """Every regular file under ``folders``, except those in ``skip``."""
    skipped = {p.resolve() for p in skip}
    return sorted(p for folder in folders for p in folder.rglob("*") if p.is_file() and p.resolve() not in skipped)


def leaks(files: Iterable[Path], values: set[str]) -> dict[str, list[str]]:
    """Per file holding any of ``values`` (as UTF-8 bytes): how many values and a masked sample of them."""
    needles = [(v, v.encode("utf-8")) for v in sorted(values)]
    out: dict[str, list[str]] = {}
    for path in files:
        data = path.read_bytes()
        found = [v for v, b in needles if b in data]
        if found:
            out[str(path)] = [f"{len(found)} values, e.g. {found[0][:2]}…({len(found[0])} chars)"]
    return out
