"""Checks a parsed map against the object registry and the Dataverse targets; collects every problem.

What is checked: objects and fields exist in the registry and every field is mapped or skipped; target tables,
columns and navigation properties exist; source type and column kind fit the transform; picklist options exist;
no column is written twice for one row; lookups point at an object that loads no later (self-references allowed)
and whose table the navigation property can reach; merge and route rules name real fields. Lengths are staging's
business, not the map's.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from senseimig_dagster.mapping import mapfile
from senseimig_dagster.mapping.errors import MapError, MapInvalid
from senseimig_dagster.mapping.model import SLOT, SLOT_CAPITALISED, TABLE, FieldMap, FieldMapFile, ObjectMap
from senseimig_dagster.mapping.schema_plan import default_plan
from senseimig_dagster.mapping.targets import TargetCatalog
from senseimig_dagster.objects import OBJECTS, FieldType, load_order

_VALUE_KINDS: dict[FieldType, frozenset[str]] = {
    "uuid": frozenset({"String", "Memo", "Uniqueidentifier"}),
    "str": frozenset({"String", "Memo"}),
    "text": frozenset({"String", "Memo"}),
    "int": frozenset({"Integer", "BigInt", "Decimal", "Double", "Money", "String", "Memo"}),
    "decimal": frozenset({"Decimal", "Double", "Money"}),
    "bool": frozenset({"Boolean"}),
    "date": frozenset(),
    "datetime": frozenset(),
    "json": frozenset({"Memo", "String"}),
}
_TEXT_KINDS = frozenset({"String", "Memo"})
_CHOICE_KINDS = frozenset({"Picklist", "State", "Status"})
_DATE_SOURCES: dict[str, frozenset[str]] = {"date": frozenset({"date", "datetime", "str"}),
                                            "datetime": frozenset({"datetime", "str"})}
_DATE_KINDS: dict[str, frozenset[str]] = {"date": frozenset({"DateOnly", "DateTime"}),
                                          "datetime": frozenset({"DateTime"})}
_NEEDS_TARGET = {"direct", "picklist", "date", "datetime", "concat", "split", "lookup", "constant"}


class _Check:
    def __init__(self, fmap: FieldMapFile, catalog: TargetCatalog):
        self.fmap, self.catalog, self.errors = fmap, catalog, []
        self.order = {o.name: i for i, o in enumerate(load_order())}

    def error(self, line: int, message: str, fix: str) -> None:
        self.errors.append(MapError(self.fmap.path, line, message, fix))

    # -- objects ----------------------------------------------------------------------------------------------------
    def run(self) -> list[MapError]:
        for name, obj in self.fmap.objects.items():
            if name not in OBJECTS:
                self.error(obj.line, f"unknown object {name!r}", f"use a registry object: {', '.join(OBJECTS)}")
                continue
            self.check_object(obj)
        for name in OBJECTS:
            if name not in self.fmap.objects:
                self.error(0, f"object {name!r} is missing from the map",
                           f"add objects.{name} (or mode: skip with a reason)")
        self.check_duplicates()
        return self.errors

    def check_object(self, obj: ObjectMap) -> None:
        source = OBJECTS[obj.name]
        for table in obj.tables:
            if table not in self.catalog.tables:
                self.error(obj.route.line if obj.route and table != obj.table else obj.line,
                           f"{obj.name}: unknown target table {table!r}",
                           "use a table of the schema plan or a standard table (contact, account, ...)")
        if obj.mode == "skip":
            if not obj.reason:
                self.error(obj.line, f"{obj.name}: skipped object without a reason", "add reason: why")
            return
        if obj.mode == "match" and not (obj.match_on and obj.match_on in obj.fields
                                        and obj.fields[obj.match_on].written):
            self.error(obj.line, f"{obj.name}: mode match needs match_on naming a mapped field",
                       "set match_on: <field> and map that field to the column it matches")
        for name, fm in obj.fields.items():
            if name not in source.field_names:
                self.error(fm.line, f"{obj.name}: unknown field {name!r}",
                           f"use a field of {obj.name}: {', '.join(source.field_names)}")
            else:
                self.check_field(obj, fm)
        for name in source.field_names:
            if name not in obj.fields:
                self.error(obj.line, f"{obj.name}.{name} is neither mapped nor skipped",
                           f"add fields.{name} with a target, or transform: skip and a reason")
        self.check_constants(obj)
        self.check_merge(obj)
        if obj.route and obj.route.by not in source.field_names:
            self.error(obj.route.line, f"{obj.name}: route by unknown field {obj.route.by!r}",
                       f"use a field of {obj.name}")

    def slots(self, obj: ObjectMap) -> tuple[str, ...]:
        """Slot names available to ``obj``'s targets: its own merge's, or those of the object it merges into."""
        seen: set[str] = set()
        while obj.merge and obj.name not in seen:
            seen.add(obj.name)
            if obj.merge.slots:
                return tuple(dict.fromkeys(s for _, s in obj.merge.slots))
            obj = self.fmap.objects.get(obj.merge.into, obj)
        return ()

    def root(self, obj: ObjectMap) -> str:
        seen: set[str] = set()
        while obj.merge and obj.merge.into in self.fmap.objects and obj.name not in seen:
            seen.add(obj.name)
            obj = self.fmap.objects[obj.merge.into]
        return obj.name

    def concrete(self, obj: ObjectMap, target: str, line: int) -> Iterator[tuple[str, str]]:
        """(table, name) pairs a target stands for, placeholders expanded."""
        names = [target]
        if SLOT in target or SLOT_CAPITALISED in target:
            slots = self.slots(obj)
            if not slots:
                self.error(line, f"{obj.name}: target {target!r} uses {SLOT} but no merge_into slots apply",
                           "add merge_into.slots or write the column name in full")
                return
            names = [target.replace(SLOT, s).replace(SLOT_CAPITALISED, s.capitalize()) for s in slots]
        for table in obj.tables:
            if TABLE in target and not obj.route:
                self.error(line, f"{obj.name}: target {target!r} uses {TABLE} without a route",
                           "add route: or write the column name in full")
                return
            for name in names:
                yield table, name.replace(TABLE, table)

    # -- fields -----------------------------------------------------------------------------------------------------
    def source_type(self, obj: ObjectMap, fm: FieldMap) -> FieldType | None:
        f = OBJECTS[obj.name].field(fm.name)
        if fm.via is None:
            return f.type
        ref = OBJECTS.get(f.references or "")
        if ref is None or fm.via not in ref.field_names:
            self.error(fm.line, f"{obj.name}.{fm.name}: via {fm.via!r} is not a field of the referenced object",
                       "via needs a reference field and a field of the object it references")
            return None
        return ref.field(fm.via).type

    def check_field(self, obj: ObjectMap, fm: FieldMap) -> None:
        where = f"{obj.name}.{fm.name}"
        if fm.transform == "skip":
            if not fm.reason:
                self.error(fm.line, f"{where}: skipped without a reason", 'add reason: "why it is not migrated"')
            return
        if not fm.targets:
            self.error(fm.line, f"{where}: transform {fm.transform} needs a target", "add target: <column>")
            return
        source_type = self.source_type(obj, fm)
        if source_type is None:
            return
        if fm.transform == "lookup":
            self.check_lookup(obj, fm)
            return
        if fm.transform == "split" and (len(fm.targets) < 2 or fm.separator is None):
            self.error(fm.line, f"{where}: split needs at least two targets and a separator",
                       "list the parts as targets: [a, b] and add separator")
        if fm.transform == "concat":
            unknown = [s for s in fm.sources if s not in OBJECTS[obj.name].field_names]
            if len(fm.sources) < 2 or unknown or len(fm.targets) != 1:
                self.error(fm.line, f"{where}: concat needs one target and two or more sources of {obj.name}",
                           "list the joined fields as sources: [a, b] (unknown: " + ", ".join(unknown) + ")")
        if fm.transform == "datetime" and fm.time_zone is None:
            self.error(fm.line, f"{where}: datetime without time_zone",
                       "add time_zone: utc (source is UTC) or location (the row's location's local time)")
        for target in fm.targets:
            for table, name in self.concrete(obj, target, fm.line):
                column = self.column(obj, table, name, fm.line, fm.transform)
                if column is not None:
                    self.check_kind(where, fm, source_type, column.kind, column.options, name, fm.line)

    def column(self, obj: ObjectMap, table: str, name: str, line: int, transform: str):
        column = self.catalog.column(table, name)
        if column is not None:
            return column
        lookup = self.catalog.lookup(table, name) or self.catalog.lookup_case_insensitive(table, name)
        if lookup is not None:
            self.error(line, f"{obj.name}: {name!r} on {table} is a lookup, not a value column",
                       f"use transform: lookup with target: {lookup.navigation_property}")
        else:
            self.error(line, f"{obj.name}: column {name!r} does not exist on {table}",
                       "use an existing column (see the schema plan / the table's metadata) or add it to the plan")
        return None

    def check_kind(self, where: str, fm: FieldMap, source_type: str, kind: str, options: tuple[int, ...],
                   column: str, line: int) -> None:
        t = fm.transform
        if t == "picklist":
            self.check_picklist(where, fm, kind, options, column, line)
            return
        if t == "constant":
            self.check_value(where, fm.value, kind, options, column, line)
            return
        if t in _DATE_KINDS:
            if source_type not in _DATE_SOURCES[t] or kind not in _DATE_KINDS[t]:
                self.error(line, f"{where}: {t} from a {source_type} field into {column} ({kind}) is not possible",
                           f"a {t} transform reads {'/'.join(sorted(_DATE_SOURCES[t]))} into "
                           f"{'/'.join(sorted(_DATE_KINDS[t]))} columns")
            return
        if t in ("concat", "split"):
            if kind not in _TEXT_KINDS:
                self.error(line, f"{where}: {t} writes text but {column} is {kind}", "target a String or Memo column")
            return
        if kind in ("DateOnly", "DateTime"):
            self.error(line, f"{where}: {column} is a {kind} column", "use transform: date or datetime")
        elif kind in _CHOICE_KINDS:
            self.error(line, f"{where}: {column} is a choice ({kind}) column",
                       "use transform: picklist with values mapping each source value to an option")
        elif kind not in _VALUE_KINDS[source_type]:  # type: ignore[index]
            self.error(line, f"{where}: a {source_type} field cannot be written to {column} ({kind})",
                       f"target a column of kind {'/'.join(sorted(_VALUE_KINDS[source_type])) or 'date'}"  # type: ignore[index]
                       " or change the transform")

    def check_picklist(self, where: str, fm: FieldMap, kind: str, options: tuple[int, ...], column: str,
                       line: int) -> None:
        if kind not in _CHOICE_KINDS and kind != "Boolean":
            self.error(line, f"{where}: picklist into {column}, which is {kind}", "target a choice or Boolean column")
            return
        if not fm.values:
            self.error(line, f"{where}: picklist without values", "add values: {source value: option value}")
        for source_value, option in fm.values:
            if option is None:
                continue
            if kind == "Boolean":
                if not isinstance(option, bool):
                    self.error(line, f"{where}: value {source_value!r} maps to {option!r}, but {column} is Boolean",
                               "map to true or false")
            elif isinstance(option, bool) or not isinstance(option, int) or option not in options:
                self.error(line, f"{where}: value {source_value!r} maps to option {option!r}, which {column} "
                                 "does not have", f"use one of {', '.join(map(str, options))} or null")

    def check_value(self, where: str, value: Any, kind: str, options: tuple[int, ...], column: str,
                    line: int) -> None:
        ok = {"Boolean": isinstance(value, bool),
              "String": isinstance(value, str), "Memo": isinstance(value, str),
              "Integer": isinstance(value, int) and not isinstance(value, bool),
              "Decimal": isinstance(value, int | float) and not isinstance(value, bool),
              }.get(kind, kind in _CHOICE_KINDS and isinstance(value, int) and value in options)
        if value is None or not ok:
            hint = f"one of {', '.join(map(str, options))}" if kind in _CHOICE_KINDS else f"a {kind} value"
            self.error(line, f"{where}: constant {value!r} does not fit {column} ({kind})", f"use {hint}")

    def check_constants(self, obj: ObjectMap) -> None:
        for column, value in obj.constants:
            line = obj.constant_lines.get(column, obj.line)
            for table, name in self.concrete(obj, column, line):
                target = self.column(obj, table, name, line, "constant")
                if target is not None:
                    self.check_value(f"{obj.name} constants", value, target.kind, target.options, name, line)

    # -- lookups ----------------------------------------------------------------------------------------------------
    def check_lookup(self, obj: ObjectMap, fm: FieldMap) -> None:
        where = f"{obj.name}.{fm.name}"
        field = OBJECTS[obj.name].field(fm.name)
        parent_name = fm.lookup or field.references
        if len(fm.targets) != 1 or parent_name is None:
            self.error(fm.line, f"{where}: a lookup needs one target and the object it points at",
                       "write target: <navigation property> and lookup: <object>")
            return
        if field.references and parent_name != field.references:
            self.error(fm.line, f"{where}: field references {field.references} but the lookup names {parent_name}",
                       f"set lookup: {field.references}")
            return
        parent = self.fmap.objects.get(parent_name)
        if parent_name not in OBJECTS or parent is None:
            self.error(fm.line, f"{where}: lookup to unknown object {parent_name!r}", "name an object of the map")
            return
        if parent.mode == "skip" or parent.merge:
            self.error(fm.line, f"{where}: {parent_name} has no rows of its own to point at",
                       "write the id as text into a String column, or skip the field")
            return
        if parent_name != obj.name and self.order[parent_name] > self.order[self.root(obj)]:
            self.error(fm.line, f"{where}: lookup to {parent_name}, which loads after {obj.name}",
                       f"point at an object loaded before {obj.name} (see objects.load_order()) or store the id "
                       "as text")
        for table, nav in self.concrete(obj, fm.targets[0], fm.line):
            lookup = self.catalog.lookup(table, nav)
            if lookup is None:
                near = self.catalog.lookup_case_insensitive(table, nav)
                fix = (f"navigation properties are case-sensitive: write {near.navigation_property}" if near
                       else "use a navigation property of the table (e.g. parentcustomerid_account, smig_PatientId)")
                self.error(fm.line, f"{where}: {table} has no navigation property {nav!r}", fix)
            elif not set(parent.tables) & set(lookup.targets):
                self.error(fm.line, f"{where}: {nav} points at {'/'.join(lookup.targets)} but {parent_name} is "
                                    f"written to {'/'.join(parent.tables)}",
                           f"use the navigation property that targets {parent.table}")

    # -- merge and duplicates ---------------------------------------------------------------------------------------
    def check_merge(self, obj: ObjectMap) -> None:
        m = obj.merge
        if m is None:
            return
        fields = OBJECTS[obj.name].field_names
        into = OBJECTS.get(m.into)
        if into is None or m.into not in self.fmap.objects:
            self.error(m.line, f"{obj.name}: merge_into unknown object {m.into!r}", "name an object of the map")
            return
        own = m.via in fields and OBJECTS[obj.name].field(m.via).references == m.into
        other, _, other_field = m.via.partition(".")
        reverse = other == m.into and other_field in into.field_names and \
            into.field(other_field).references == obj.name
        if not (own or reverse):
            self.error(m.line, f"{obj.name}: merge_into via {m.via!r} does not link {obj.name} and {m.into}",
                       f"use a field of {obj.name} referencing {m.into}, or {m.into}.<field> referencing {obj.name}")
        for key in (m.slot_by, m.latest_by):
            if key is not None and key not in fields:
                self.error(m.line, f"{obj.name}: merge_into names unknown field {key!r}", f"use a field of {obj.name}")
        if self.fmap.objects[m.into].table != obj.table:
            self.error(m.line, f"{obj.name}: merged into {m.into} but targets {obj.table}",
                       f"set target: {self.fmap.objects[m.into].table}")

    def check_duplicates(self) -> None:
        seen: dict[tuple[str, str, str], str] = {}  # (row owner, table, column) -> "object.field (line n)"
        for obj in self.fmap.objects.values():
            if obj.name not in OBJECTS or obj.mode == "skip":
                continue
            owner = self.root(obj)
            writes = [(fm.name, fm.line, t, fm.transform == "lookup") for fm in obj.fields.values() if fm.written
                      for t in fm.targets]
            writes += [("constants", obj.constant_lines.get(c, obj.line), c, False) for c, _ in obj.constants]
            for source, line, target, is_lookup in writes:
                for table, name in self._quiet_concrete(obj, target):
                    lookup = self.catalog.lookup(table, name) if is_lookup else None
                    column = lookup.attribute if lookup else name.lower()
                    here = f"{obj.name}.{source} (line {line})"
                    first = seen.setdefault((owner, table, column), here)
                    if first != here:
                        self.error(line, f"{here} writes {table}.{column}, already written by {first}",
                                   "map one of them elsewhere or skip it")

    def _quiet_concrete(self, obj: ObjectMap, target: str) -> Iterator[tuple[str, str]]:
        errors = len(self.errors)
        pairs = list(self.concrete(obj, target, 0))
        del self.errors[errors:]  # placeholder problems are reported once, by the field check
        return iter(pairs)


def validate(fmap: FieldMapFile, catalog: TargetCatalog | None = None) -> list[MapError]:
    """Every problem of a parsed map; empty when it is valid."""
    return _Check(fmap, catalog or TargetCatalog(default_plan(fmap.prefix))).run()


def load_valid(path: str | Path, catalog: TargetCatalog | None = None) -> FieldMapFile:
    """The map at ``path``; raises :class:`MapInvalid` listing every problem (reading and checking).

    Parsing and checking a whole map takes over a second and every writer asks for it, so a valid map is cached by
    its bytes (a file edited in place is read again); the model is frozen, so sharing it is safe."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        data = None  # mapfile.load reports it, naming the file
    if catalog is not None or data is None:
        return _load_valid(path, catalog)
    return _cached(str(Path(path).resolve()), hashlib.sha256(data).hexdigest())


@functools.lru_cache(maxsize=8)
def _cached(path: str, digest: str) -> FieldMapFile:
    return _load_valid(path, None)


def _load_valid(path: str | Path, catalog: TargetCatalog | None) -> FieldMapFile:
    fmap, errors = mapfile.load(path)
    if fmap is not None:
        errors = [*errors, *validate(fmap, catalog)]
    if errors or fmap is None:
        raise MapInvalid(errors)
    return fmap
