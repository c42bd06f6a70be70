"""Reading and writing the map file (YAML, round-trip: comments, order and quoting survive a confirm).

``load()`` returns the model and every problem found while reading (syntax, unknown keys, wrong value types),
each with its line; :mod:`.validate` adds the checks against the registry and Dataverse.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from senseimig_dagster.mapping.errors import MapError, MapInvalid
from senseimig_dagster.mapping.model import (
    STATUSES,
    TIME_ZONES,
    TRANSFORMS,
    Confirmation,
    FieldMap,
    FieldMapFile,
    Merge,
    ObjectMap,
    Route,
    value_key,
)

FORMAT_VERSION = 1
_TOP_KEYS = ("version", "prefix", "objects", "confirmation")
_OBJECT_KEYS = ("target", "mode", "match_on", "reason", "fields", "constants", "merge_into", "route")
_FIELD_KEYS = ("target", "targets", "transform", "status", "confidence", "reasons", "reason", "values", "time_zone",
               "lookup", "sources", "separator", "value", "via")
_MERGE_KEYS = ("object", "via", "slot_by", "slots", "latest_by")
_ROUTE_KEYS = ("by", "tables")
_CONFIRMATION_KEYS = ("by", "at", "hash", "digests")
_MODES = ("upsert", "match", "skip")


def yaml() -> YAML:
    y = YAML()  # round-trip
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap a reviewer's long lines
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def read_document(path: str | Path) -> CommentedMap:
    """The file as a round-trip document; a syntax error raises :class:`MapInvalid` with its line."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        doc = yaml().load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 0
        raise MapInvalid([MapError(str(path), line, f"YAML syntax error: {e.problem or e.context}",
                                   "correct the YAML at that line (indentation, a missing ':' or quote)")]) from None
    except YAMLError as e:
        raise MapInvalid([MapError(str(path), 0, f"YAML error: {type(e).__name__}", "correct the YAML")]) from None
    if not isinstance(doc, CommentedMap):
        raise MapInvalid([MapError(str(path), 1, "the map file is not a mapping",
                                   "start from the default map: senseimig mapping show --default")])
    return doc


def _line(node: Any, key: Any = None) -> int:
    lc = getattr(node, "lc", None)
    if lc is None:
        return 0
    if key is not None:
        try:
            return lc.key(key)[0] + 1
        except (KeyError, TypeError):
            pass
    return lc.line + 1


class _Reader:
    def __init__(self, path: str):
        self.path, self.errors = path, []

    def error(self, line: int, message: str, fix: str) -> None:
        self.errors.append(MapError(self.path, line, message, fix))

    def mapping(self, node: Any, line: int, what: str, allowed: tuple[str, ...]) -> CommentedMap | None:
        if not isinstance(node, CommentedMap):
            self.error(line, f"{what} must be a mapping", f"write {what} as 'key: value' lines or {{...}}")
            return None
        for key in node:
            if key not in allowed:
                self.error(_line(node, key), f"unknown key {key!r} in {what}",
                           f"remove it or use one of: {', '.join(allowed)}")
        return node

    def typed(self, node: CommentedMap, key: str, check: Callable[[Any], bool], expect: str, default: Any = None):
        if key not in node or node[key] is None:
            return default
        value = node[key]
        if not check(value):
            self.error(_line(node, key), f"{key!r} must be {expect}", f"write {key} as {expect}")
            return default
        return value

    def text(self, node: CommentedMap, key: str, default: Any = None) -> Any:
        return self.typed(node, key, lambda v: isinstance(v, str), "a string", default)

    def texts(self, node: CommentedMap, key: str) -> tuple[str, ...]:
        value = self.typed(node, key, lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
                           "a list of strings", [])
        return tuple(value)

    def pairs(self, node: CommentedMap, key: str) -> tuple[tuple[str, Any], ...]:
        value = self.typed(node, key, lambda v: isinstance(v, CommentedMap), "a mapping", None)
        return tuple((value_key(k), v) for k, v in value.items()) if value else ()


def _read_field(r: _Reader, name: str, node: Any, line: int) -> FieldMap | None:
    node = r.mapping(node, line, f"field {name!r}", _FIELD_KEYS)
    if node is None:
        return None
    transform = r.text(node, "transform")
    if transform is None:
        r.error(line, f"field {name!r} has no transform", f"add transform: one of {', '.join(TRANSFORMS)}")
        return None
    if transform not in TRANSFORMS:
        r.error(_line(node, "transform"), f"unknown transform {transform!r} for field {name!r}",
                f"use one of: {', '.join(TRANSFORMS)}")
        return None
    status = r.text(node, "status", "accepted")
    if status not in STATUSES:
        r.error(_line(node, "status"), f"unknown status {status!r}", f"use one of: {', '.join(STATUSES)}")
        status = "proposed"
    time_zone = r.text(node, "time_zone")
    if time_zone is not None and time_zone not in TIME_ZONES:
        r.error(_line(node, "time_zone"), f"unknown time_zone {time_zone!r}", f"use one of: {', '.join(TIME_ZONES)}")
    if "target" in node and "targets" in node:
        r.error(line, f"field {name!r} has both target and targets", "keep one of them")
    target = r.text(node, "target")
    targets = (target,) if target else r.texts(node, "targets")
    confidence = r.typed(node, "confidence", lambda v: isinstance(v, int | float) and not isinstance(v, bool)
                         and 0 <= v <= 1, "a number from 0 to 1")
    return FieldMap(
        name=name, transform=transform, targets=targets, status=status,
        confidence=float(confidence) if confidence is not None else None, reasons=r.texts(node, "reasons"),
        reason=r.text(node, "reason", ""), values=r.pairs(node, "values"), time_zone=time_zone,
        lookup=r.text(node, "lookup"), sources=r.texts(node, "sources"), separator=r.text(node, "separator"),
        value=node.get("value"), via=r.text(node, "via"), line=line)


def _read_merge(r: _Reader, node: Any, line: int) -> Merge | None:
    node = r.mapping(node, line, "merge_into", _MERGE_KEYS)
    if node is None:
        return None
    into, via = r.text(node, "object"), r.text(node, "via")
    if not into or not via:
        r.error(line, "merge_into needs object and via", "name the object merged into and the field linking them")
        return None
    return Merge(into, via, r.text(node, "slot_by"), tuple((k, str(v)) for k, v in r.pairs(node, "slots")),
                 r.text(node, "latest_by"), line)


def _read_route(r: _Reader, node: Any, line: int) -> Route | None:
    node = r.mapping(node, line, "route", _ROUTE_KEYS)
    if node is None:
        return None
    by, tables = r.text(node, "by"), r.pairs(node, "tables")
    if not by or not tables:
        r.error(line, "route needs by and tables", "name the field and map each of its values to a table")
        return None
    return Route(by, tuple((k, str(v)) for k, v in tables), line)


def _read_object(r: _Reader, name: str, node: Any, line: int) -> ObjectMap | None:
    node = r.mapping(node, line, f"object {name!r}", _OBJECT_KEYS)
    if node is None:
        return None
    table = r.text(node, "target")
    mode = r.text(node, "mode", "upsert")
    if mode not in _MODES:
        r.error(_line(node, "mode"), f"unknown mode {mode!r}", f"use one of: {', '.join(_MODES)}")
        mode = "upsert"
    if not table:
        r.error(line, f"object {name!r} has no target table", "add target: <table logical name>")
        return None
    fields: dict[str, FieldMap] = {}
    raw_fields = node.get("fields")
    if raw_fields is not None and r.mapping(raw_fields, _line(node, "fields"), f"fields of {name!r}", tuple(raw_fields)
                                            if isinstance(raw_fields, CommentedMap) else ()):
        for field_name, field_node in raw_fields.items():
            at = _line(raw_fields, field_name)
            # An unreadable field was reported; a stand-in keeps validation from also calling it missing.
            fields[str(field_name)] = _read_field(r, str(field_name), field_node, at) or FieldMap(
                str(field_name), "skip", reason="(unreadable, reported above)", line=at)
    constants = node.get("constants")
    constant_lines: dict[str, int] = {}
    if isinstance(constants, CommentedMap):
        constant_lines = {str(k): _line(constants, k) for k in constants}
    elif constants is not None:
        r.error(_line(node, "constants"), "constants must be a mapping", "write constants as {column: value}")
    merge = _read_merge(r, node["merge_into"], _line(node, "merge_into")) if "merge_into" in node else None
    route = _read_route(r, node["route"], _line(node, "route")) if "route" in node else None
    return ObjectMap(name=name, table=table, fields=fields, mode=mode, match_on=r.text(node, "match_on"),
                     reason=r.text(node, "reason", ""), constants=r.pairs(node, "constants"), merge=merge,
                     route=route, line=line, constant_lines=constant_lines)


def _read_confirmation(r: _Reader, node: Any, line: int) -> Confirmation | None:
    node = r.mapping(node, line, "confirmation", _CONFIRMATION_KEYS)
    if node is None:
        return None
    by, at, hash_ = r.text(node, "by"), r.text(node, "at"), r.text(node, "hash")
    if not (by and at and hash_):
        r.error(line, "confirmation needs by, at and hash", "re-run: senseimig mapping confirm PATH --by NAME")
        return None
    flat: dict[str, str] = {}
    for name, entry in r.pairs(node, "digests"):  # object: {_: its settings, <field>: ...}, one line per object
        if isinstance(entry, CommentedMap):
            flat.update({name if k == "_" else f"{name}.{k}": str(v) for k, v in entry.items()})
        else:
            flat[name] = str(entry)
    return Confirmation(by, at, hash_, flat)


def _nested_digests(digests: dict[str, str]) -> CommentedMap:
    out = CommentedMap()
    for key in sorted(digests):
        name, _, field_name = key.partition(".")
        if name == "_map":
            out[name] = digests[key]
            continue
        entry = out.setdefault(name, CommentedMap())
        entry.fa.set_flow_style()
        entry[field_name or "_"] = digests[key]
    return out


def parse(doc: CommentedMap, path: str) -> tuple[FieldMapFile | None, list[MapError]]:
    r = _Reader(path)
    r.mapping(doc, 1, "the map file", _TOP_KEYS)
    version = doc.get("version")
    if version != FORMAT_VERSION:
        r.error(_line(doc, "version") or 1, f"unsupported map version {version!r}", f"set version: {FORMAT_VERSION}")
    prefix = r.text(doc, "prefix", "smig")
    objects: dict[str, ObjectMap] = {}
    raw_objects = doc.get("objects")
    if not isinstance(raw_objects, CommentedMap):
        r.error(_line(doc, "objects") or 1, "the map has no objects mapping", "add objects: with one entry per object")
    else:
        for name, node in raw_objects.items():
            parsed = _read_object(r, str(name), node, _line(raw_objects, name))
            if parsed:
                objects[str(name)] = parsed
    confirmation = (_read_confirmation(r, doc["confirmation"], _line(doc, "confirmation"))
                    if doc.get("confirmation") is not None else None)
    return FieldMapFile(FORMAT_VERSION, prefix, objects, confirmation, path), r.errors


def load(path: str | Path) -> tuple[FieldMapFile | None, list[MapError]]:
    """The map and the problems found reading it (a syntax error: no map, one error)."""
    try:
        doc = read_document(path)
    except MapInvalid as e:
        return None, e.errors
    return parse(doc, str(path))


def write_confirmation(path: str | Path, confirmation: Confirmation | None) -> None:
    """Set (or, with None, remove) the top-level confirmation block. Only those lines change: the rest of the file
    stays byte for byte as the reviewer left it (a round-trip dump would re-space aligned flow mappings)."""
    doc = read_document(path)  # also refuses a file that is not valid YAML
    lines = Path(path).read_text(encoding="utf-8").splitlines(keepends=True)
    keys = list(doc)
    if "confirmation" in doc:
        start = doc.lc.key("confirmation")[0]
        following = keys[keys.index("confirmation") + 1:]
        end = doc.lc.key(following[0])[0] if following else len(lines)
        while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
            end -= 1  # blank lines and comments before the next key belong to it
    else:
        start = end = len(lines)
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
    block = ""
    if confirmation is not None:
        body = CommentedMap([("by", confirmation.by), ("at", confirmation.at), ("hash", confirmation.hash)])
        body["digests"] = _nested_digests(confirmation.digests)
        block = dump(CommentedMap([("confirmation", body)]))
    Path(path).write_text("".join([*lines[:start], block, *lines[end:]]), encoding="utf-8")


def dump(doc: CommentedMap | CommentedSeq) -> str:
    out = io.StringIO()
    yaml().dump(doc, out)
    return out.getvalue()
