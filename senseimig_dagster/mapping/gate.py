"""The confirmation gate: nothing is written to Dataverse under a map that is invalid, unconfirmed, or changed
since it was confirmed.

``check_confirmed`` names each object and field at issue (from the per-entry digests stored at confirmation);
``gate_problems`` does the same for a map file. The gate as Dagster checks is ``assets/gate.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from senseimig_dagster.mapping import mapfile
from senseimig_dagster.mapping.confirm import proposed_fields
from senseimig_dagster.mapping.digest import digests, map_hash
from senseimig_dagster.mapping.model import FieldMapFile
from senseimig_dagster.mapping.validate import validate

GATE_CHECK_NAME = "mapping_confirmed"


@dataclass(frozen=True)
class GateProblem:
    object: str | None
    field: str | None
    problem: str

    def __str__(self) -> str:
        where = ".".join(p for p in (self.object, self.field) if p) or "map"
        return f"{where}: {self.problem}"


def _entry(key: str) -> tuple[str | None, str | None]:
    if key == "_map":
        return None, None
    obj, _, field = key.partition(".")
    return obj, field or None


def check_confirmed(fmap: FieldMapFile) -> list[GateProblem]:
    """Empty when the map is confirmed and unchanged since; otherwise one problem per object/field at issue."""
    c = fmap.confirmation
    if c is None:
        pending = [GateProblem(*_entry(p.rsplit(": ", 1)[1]), "still proposed") for p in proposed_fields(fmap)]
        return [GateProblem(None, None, f"{fmap.path} is not confirmed: review it, then run "
                                        f"`senseimig mapping confirm {fmap.path} --by NAME`"), *pending]
    if c.hash == map_hash(fmap):
        return []
    since = f"since confirmed by {c.by} at {c.at}; re-confirm after review"
    if not c.digests:
        return [GateProblem(None, None, f"content changed {since}")]
    now = digests(fmap)
    problems = []
    for key in sorted(set(now) | set(c.digests)):
        if key not in c.digests:
            problems.append(GateProblem(*_entry(key), f"added {since}"))
        elif key not in now:
            problems.append(GateProblem(*_entry(key), f"removed {since}"))
        elif now[key] != c.digests[key]:
            problems.append(GateProblem(*_entry(key), f"changed {since}"))
    return problems or [GateProblem(None, None, f"content changed {since}")]


def gate_problems(path: str | Path) -> list[GateProblem]:
    """Problems of the map file at ``path``: missing, unreadable, invalid, unconfirmed or changed.

    Every writer step asks before it writes, and parsing and validating the map (a YAML round trip) takes about a
    second, so the answer is cached per file version: path, inode, modification time and size. An edit (in place or
    by replacing the file) changes them, and the map is read again."""
    try:
        stat = Path(path).stat()
    except FileNotFoundError:
        return [GateProblem(None, None, f"no field map at {path}: write one (start from the default map) and "
                                        "confirm it")]
    return list(_problems_of(str(path), stat.st_ino, stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _problems_of(path: str, inode: int, mtime_ns: int, size: int) -> tuple[GateProblem, ...]:
    fmap, errors = mapfile.load(path)
    if fmap is not None:
        errors = [*errors, *validate(fmap)]
    if errors or fmap is None:
        return tuple(GateProblem(None, None, f"invalid: {e}") for e in errors)
    return tuple(check_confirmed(fmap))


def problems_markdown(problems: Sequence[GateProblem]) -> str:
    rows = "\n".join(f"| {p.object or ''} | {p.field or ''} | {p.problem.replace('|', '/')} |" for p in problems)
    return f"| object | field | problem |\n|---|---|---|\n{rows}"
