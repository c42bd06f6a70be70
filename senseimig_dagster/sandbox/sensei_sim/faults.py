"""Deterministic fault injection, all off by default.

A rule names an object (registry name), a 1-based page number of a listing and what goes wrong there. Transport
faults (``http_500``, ``malformed_json``, ``slow``, ``reset``) model a flaky service: they fire ``times`` times and
then the page is served normally, so a retrying client recovers. Data faults (``duplicate_record``,
``unknown_field``, ``wrong_type``, ``lone_surrogate``, ``invalid_utf8``) model a source that really holds that
record; give them ``times=None`` (every time) when the page may be fetched more than once.

    Faults([Fault("patient", page=2, kind="http_500", times=3), Fault("patient", 1, "unknown_field", times=None)])
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal

import orjson

from senseimig_dagster.objects import MODIFIED_AT, PRIMARY_KEY, SenseiObject

FaultKind = Literal["http_500", "malformed_json", "slow", "reset",  # transport: fire `times` times, then heal
                    "duplicate_record", "unknown_field", "wrong_type",  # data: a record on the page is bad
                    "lone_surrogate", "invalid_utf8"]  # data: a record the JSON parser refuses (so the page)
DATA_FAULTS = frozenset({"duplicate_record", "unknown_field", "wrong_type", "lone_surrogate", "invalid_utf8"})
EXTRA_FIELD = "x_sim_unknown_field"


@dataclass(frozen=True)
class Fault:
    object: str
    page: int
    kind: FaultKind
    times: int | None = 1  # responses affected; None = every response
    seconds: float = 5.0  # ``slow``: how long the server stalls before answering
    row: int = 0  # data faults: which record of the page (0-based; clamped to the page)
    field: str | None = None  # ``wrong_type``: the field to break (default: the first non-text field)


@dataclass
class Faults:
    rules: list[Fault] = field(default_factory=list)
    _fired: dict[int, int] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def take(self, object_name: str, page: int) -> list[Fault]:
        """The rules that fire for this response (each use counts against ``times``)."""
        hits = []
        with self._lock:
            for i, rule in enumerate(self.rules):
                if rule.object != object_name or rule.page != page:
                    continue
                if rule.times is None or self._fired.get(i, 0) < rule.times:
                    self._fired[i] = self._fired.get(i, 0) + 1
                    hits.append(rule)
        return hits

    def fired(self, rule: Fault) -> int:
        with self._lock:
            return sum(n for i, n in self._fired.items() if self.rules[i] is rule)


def corrupt(obj: SenseiObject, lines: list[bytes], rule: Fault) -> list[bytes]:
    """A data fault applied to a page's records (a new list; stored bytes are never touched)."""
    if not lines:
        return lines
    lines, i = list(lines), min(rule.row, len(lines) - 1)
    if rule.kind == "duplicate_record":
        lines.insert(i + 1, lines[i])
        return lines
    record = orjson.loads(lines[i])
    text = rule.field or next(f.name for f in obj.fields if f.type in ("str", "text") and f.name != PRIMARY_KEY)
    if rule.kind in ("lone_surrogate", "invalid_utf8"):
        record[text] = "MARK"  # replaced in the bytes: orjson writes neither
        bad = b"\\ud800" if rule.kind == "lone_surrogate" else b"\xc3\x28"
        lines[i] = orjson.dumps(record).replace(b'"MARK"', b'"a' + bad + b'b"')
        return lines
    if rule.kind == "unknown_field":
        record[EXTRA_FIELD] = "injected by the simulator"
    else:
        name = rule.field or next(f.name for f in obj.fields
                                  if f.type not in ("uuid", "str", "text", "json")
                                  and f.name not in (PRIMARY_KEY, MODIFIED_AT))
        record[name] = f"not-a-{obj.field(name).type}"
    lines[i] = orjson.dumps(record)
    return lines
