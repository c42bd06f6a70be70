"""The mapping proposer: ranks target columns for every source field and writes a reviewable map file.

Inputs: per Sensei object the profiles of its raw table (:mod:`.profiles`: names, DuckDB types, value shares from a
sample) and the candidate columns of its target table (:mod:`.candidates`: schema plan + standard copy, or the
environment's ``EntityDefinitions``). Each field gets its candidates ranked by :func:`.scoring.score`; the best
at or above the threshold is proposed (``status: proposed``, confidence, reasons), the rest are left unmapped
(``transform: skip``, reason naming the best candidate) and listed. One column takes at most one field per row
written (objects merged into another's row share it): conflicts go to the higher confidence, the loser takes its
next candidate.

Seeded, not inferred (``seed_fields``): object-level structure is always taken from the base map (by default the
shipped default map): target table, mode and match column, constants, ``merge_into`` and ``route``. With
``seed_fields`` (the default for real runs) also, by registry field name, what no name or value can reveal:
lookups of fields the registry marks as references, ``via`` fields, and the structural fields that drive merge and
route (``via``/``slot_by``/``latest_by``/``route.by``) or belong to a ``match`` object. Every other field —
including every custom or renamed one — is inferred. The accuracy harness runs with ``seed_fields=False``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
from ruamel.yaml.comments import CommentedMap

from senseimig_dagster.mapping import default_map_path, mapfile, vocabulary
from senseimig_dagster.mapping.candidates import Candidate, CandidateCatalog, offline
from senseimig_dagster.mapping.errors import MapInvalid
from senseimig_dagster.mapping.model import FieldMap, FieldMapFile, ObjectMap
from senseimig_dagster.mapping.profiles import ColumnProfile, profile_raw
from senseimig_dagster.mapping.scoring import Scored, TargetForms, score, target_forms
from senseimig_dagster.mapping.validate import validate
from senseimig_dagster.objects import OBJECTS

DEFAULT_THRESHOLD = 0.6
AMBIGUITY_MARGIN, AMBIGUITY_PENALTY = 0.05, 0.1
SEEDED_REASON = "seeded: default map (structure, not inferred)"


@dataclass(frozen=True)
class FieldProposal:
    object: str
    field: str
    ranked: tuple[Scored, ...]  # best first
    chosen: Scored | None = None
    seeded: FieldMap | None = None
    reason: str = ""  # why unmapped

    @property
    def mapped(self) -> bool:
        return self.chosen is not None


@dataclass
class Proposal:
    threshold: float
    fields: dict[str, list[FieldProposal]] = field(default_factory=dict)

    def all(self) -> list[FieldProposal]:
        return [p for ps in self.fields.values() for p in ps]

    def inferred(self) -> list[FieldProposal]:
        return [p for p in self.all() if p.seeded is None]

    def unmapped(self) -> list[str]:
        return [f"{p.object}.{p.field}" for p in self.inferred() if not p.mapped]

    def summary(self) -> dict[str, object]:
        """Counts and names only: safe for logs and Dagster metadata."""
        inferred = self.inferred()
        mapped = [p.chosen.confidence for p in inferred if p.chosen]
        return {"mapped": len(mapped), "unmapped": len(inferred) - len(mapped),
                "seeded": len(self.all()) - len(inferred),
                "mean_confidence": round(sum(mapped) / len(mapped), 3) if mapped else 0.0,
                "threshold": self.threshold, "unmapped_fields": self.unmapped()}


# -- the candidates of one object ----------------------------------------------------------------------------------
def _slots(base: dict[str, ObjectMap], obj: ObjectMap) -> tuple[str, ...]:
    seen: set[str] = set()
    while obj.merge and obj.name not in seen:
        seen.add(obj.name)
        if obj.merge.slots:
            return tuple(dict.fromkeys(s for _, s in obj.merge.slots))
        obj = base.get(obj.merge.into, obj)
    return ()


def _root(base: dict[str, ObjectMap], obj: ObjectMap) -> str:
    seen: set[str] = set()
    while obj.merge and obj.merge.into in base and obj.name not in seen:
        seen.add(obj.name)
        obj = base[obj.merge.into]
    return obj.name


def _templated(c: Candidate, prefix: str, slots: tuple[str, ...]) -> str | None:
    """``smig_primaryplanname`` -> ``smig_{slot}planname``; ``smig_PrimaryCarrierId`` -> ``smig_{Slot}CarrierId``."""
    head = f"{prefix}_"
    if not c.name.lower().startswith(head):
        return None
    rest = c.name[len(head):]
    for slot in slots:
        if rest.lower().startswith(slot):
            tail = rest[len(slot):]
            return head + ("{Slot}" if rest[:1].isupper() else "{slot}") + tail
    return None


def object_candidates(catalog: CandidateCatalog, base: dict[str, ObjectMap], obj: ObjectMap) -> list[Candidate]:
    if obj.mode == "skip":
        return []
    columns = catalog.columns(obj.table)
    if obj.mode == "match":
        keys = {t for f in obj.fields.values() if f.name == obj.match_on for t in f.targets}
        return [c for c in columns if c.name in keys]
    taken = {c for c, _ in obj.constants}
    slots = _slots(base, obj)
    if slots:
        out: dict[str, Candidate] = {}
        for c in columns:
            name = _templated(c, catalog.prefix, slots)
            if name is not None:
                out.setdefault(name, Candidate(c.table, name, c.kind, c.display, c.max_length, c.options,
                                               c.lookup_targets, c.known))
        return list(out.values())
    if obj.route:
        tables = obj.tables
        others = [{c.name for c in catalog.columns(t)} for t in tables]
        out = {}
        for c in columns:
            if c.is_lookup and c.name.endswith(f"_{obj.table}"):
                name = c.name[: -len(obj.table)] + "{table}"
                if all(name.replace("{table}", t) in names for t, names in zip(tables, others, strict=True)):
                    out[name] = Candidate(c.table, name, "Lookup", c.display, lookup_targets=c.lookup_targets,
                                          known=c.known)
            elif not c.is_lookup and all(c.name in names for names in others):
                out[c.name] = c
        return [c for n, c in out.items() if n not in taken]
    return [c for c in columns if c.name not in taken]


# -- seeding ---------------------------------------------------------------------------------------------------------
def _structural(obj: ObjectMap) -> set[str]:
    names = set()
    if obj.merge:
        names |= {obj.merge.via, obj.merge.slot_by or "", obj.merge.latest_by or ""}
    if obj.route:
        names.add(obj.route.by)
    return names - {""}


def _seed(obj: ObjectMap, p: ColumnProfile) -> FieldMap | None:
    fm = obj.fields.get(p.name)
    if fm is None or not p.registry_field:
        return None
    if obj.mode == "match" or fm.via or (fm.transform == "lookup" and p.references) or p.name in _structural(obj):
        return fm
    return None


# -- ranking and conflicts -------------------------------------------------------------------------------------------
def _rank(p: ColumnProfile, forms: list[TargetForms], production: bool) -> list[Scored]:
    sources = vocabulary.source_forms(p.name)
    scored = []
    for t in forms:
        if production and t.candidate.is_lookup:
            continue  # a lookup needs the registry object it points at: seeded from references, never guessed
        s = score(p.name, sources, p, t)
        if s is not None and s.confidence > 0:
            scored.append(s)
    scored.sort(key=lambda s: (-s.confidence, not s.candidate.known, s.target))
    best: list[Scored] = []
    for s in scored:  # one entry per column: its best transform
        if all(b.target != s.target for b in best):
            best.append(s)
    if len(best) >= 2 and best[1].confidence >= best[0].confidence - AMBIGUITY_MARGIN:
        first = best[0]
        best[0] = Scored(first.candidate, first.transform, round(max(0.0, first.confidence - AMBIGUITY_PENALTY), 2),
                         (*first.reasons, f"ambiguous: '{best[1].target}' scores {best[1].confidence:.2f}"),
                         first.values, first.time_zone)  # still ranked first: the evidence preferred it
    return best[:5]


def _column_keys(target: str, slots: tuple[str, ...]) -> set[str]:
    names = [target.replace("{slot}", s).replace("{Slot}", s.capitalize()) for s in slots] if "{" in target and \
        slots else [target]
    return {n.lower() for n in names}


def propose(profiles: dict[str, list[ColumnProfile]], catalog: CandidateCatalog, base: FieldMapFile, *,
            threshold: float = DEFAULT_THRESHOLD, seed_fields: bool = True) -> Proposal:
    """Rank and choose a target for every profiled field of every object in ``base`` (the structure's source)."""
    proposal = Proposal(threshold)
    taken: dict[tuple[str, str], str] = {}  # (row owner, column) -> "object.field"
    pending: list[tuple[str, ColumnProfile, list[Scored], str, tuple[str, ...]]] = []
    for name, obj in base.objects.items():
        if name not in profiles:
            continue
        slots = _slots(base.objects, obj)
        owner = _root(base.objects, obj)
        forms = [target_forms(c, catalog.prefix, slots) for c in object_candidates(catalog, base.objects, obj)]
        for column, _ in obj.constants:
            taken.update({(owner, k): f"{name} constants" for k in _column_keys(column, slots)})
        proposal.fields[name] = []
        for p in profiles[name]:
            seeded = _seed(obj, p) if seed_fields else None
            if seeded is not None:
                proposal.fields[name].append(FieldProposal(name, p.name, (), seeded=seeded))
                for target in seeded.targets if seeded.written else ():
                    taken.update({(owner, k): f"{name}.{p.name}" for k in _column_keys(target, slots)})
                continue
            pending.append((name, p, _rank(p, forms, seed_fields and p.registry_field), owner, slots))
    # Greedy by confidence: the strongest claim on a column wins, the loser moves to its next candidate.
    queue = sorted(pending, key=lambda x: -(x[2][0].confidence if x[2] else 0))
    for name, p, ranked, owner, slots in queue:
        chosen, notes = None, []
        for s in ranked:
            if s.confidence < threshold:
                break
            keys = _column_keys(s.target, slots)
            holder = next((taken[(owner, k)] for k in keys if (owner, k) in taken), None)
            if holder is None:
                chosen = s
                taken.update({(owner, k): f"{name}.{p.name}" for k in keys})
                break
            notes.append(f"'{s.target}' ({s.confidence:.2f}) already taken by {holder}")
        if chosen is not None and notes:
            chosen = Scored(chosen.candidate, chosen.transform, chosen.confidence, (*chosen.reasons, *notes),
                            chosen.values, chosen.time_zone)
        reason = ""
        if chosen is None:
            best = ranked[0] if ranked else None
            reason = (f"no candidate above {threshold:.2f}: best was {best.target} ({best.confidence:.2f})" if best
                      else f"no candidate above {threshold:.2f}: no writable column fits its type")
            if notes:
                reason += "; " + "; ".join(notes)
        proposal.fields[name].append(FieldProposal(name, p.name, tuple(ranked), chosen, reason=reason))
    for name in proposal.fields:  # the profile's column order, not the queue's
        order = {p.name: i for i, p in enumerate(profiles[name])}
        proposal.fields[name].sort(key=lambda fp: order.get(fp.field, 0))
    return proposal


# -- the map file ----------------------------------------------------------------------------------------------------
def _flow(items: Iterable[tuple[str, object]]) -> CommentedMap:
    node = CommentedMap(items)
    node.fa.set_flow_style()
    return node


def _field_node(fp: FieldProposal, obj: ObjectMap) -> CommentedMap:
    if fp.seeded is not None:
        fm = fp.seeded
        items: list[tuple[str, object]] = []
        if fm.transform == "skip":
            items += [("transform", "skip"), ("reason", fm.reason)]
        else:
            items += [("targets", list(fm.targets)) if len(fm.targets) > 1 else ("target", fm.targets[0]),
                      ("transform", fm.transform)]
            optional = [("lookup", fm.lookup), ("via", fm.via), ("time_zone", fm.time_zone),
                        ("separator", fm.separator), ("sources", list(fm.sources) or None),
                        ("values", _flow(fm.values) if fm.values else None)]
            items += [(k, v) for k, v in optional if v is not None]
        items.append(("reasons", [SEEDED_REASON]))
        return _flow(items)
    s = fp.chosen
    if s is None:
        best = fp.ranked[0].confidence if fp.ranked else 0.0
        return _flow([("transform", "skip"), ("reason", fp.reason), ("confidence", best), ("status", "proposed")])
    items = [("target", s.target), ("transform", s.transform)]
    if s.transform == "lookup":
        ref = OBJECTS[obj.name].field(fp.field).references if fp.field in OBJECTS[obj.name].field_names else None
        items.append(("lookup", ref))
    if s.time_zone:
        items.append(("time_zone", s.time_zone))
    if s.values:
        items.append(("values", _flow(s.values)))
    items += [("confidence", s.confidence), ("reasons", list(s.reasons)), ("status", "proposed")]
    return _flow(items)


def write_map(proposal: Proposal, base_path: str | Path, out: str | Path) -> Path:
    """The proposal as a map file: the base map's document with each proposed object's fields replaced (its
    object-level settings and comments kept), registry fields only, no confirmation. Fields absent from the raw
    table are skipped with a reason."""
    doc = mapfile.read_document(base_path)
    doc.pop("confirmation", None)
    base, _ = mapfile.parse(doc, str(base_path))
    assert base is not None
    for name, node in doc["objects"].items():
        if name not in proposal.fields:
            continue
        obj = base.objects[name]
        by_field = {fp.field: fp for fp in proposal.fields[name]}
        fields = CommentedMap()
        for field_name in OBJECTS[name].field_names:
            fp = by_field.get(field_name)
            fields[field_name] = _field_node(fp, obj) if fp else _flow(
                [("transform", "skip"), ("reason", "not in the raw table's sample"), ("status", "proposed")])
        node["fields"] = fields
    path = Path(out)
    path.write_text(mapfile.dump(doc), encoding="utf-8")
    return path


def check_written(path: str | Path, catalog: CandidateCatalog) -> FieldMapFile:
    """Read the written file back and validate it against the catalog (environment columns included)."""
    fmap, errors = mapfile.load(path)
    if fmap is not None:
        errors = [*errors, *validate(fmap, catalog.target_catalog())]
    if errors or fmap is None:
        raise MapInvalid(errors)
    return fmap


def propose_file(conn: duckdb.DuckDBPyConnection, out: str | Path, catalog: CandidateCatalog | None = None, *,
                 base_path: str | Path | None = None, threshold: float = DEFAULT_THRESHOLD,
                 schema: str = "raw") -> Proposal:
    """Profile the raw tables in ``conn``, propose, write ``out`` and check it validates (raises ``MapInvalid``)."""
    base_path = base_path or default_map_path()
    catalog = catalog or offline()
    base, errors = mapfile.load(base_path)
    if base is None or errors:
        raise MapInvalid(errors)
    proposal = propose(profile_raw(conn, schema), catalog, base, threshold=threshold)
    write_map(proposal, base_path, out)
    check_written(out, catalog)
    return proposal
