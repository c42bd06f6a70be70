"""Evidence for one source column against one candidate column, combined into a confidence.

How the evidence combines (the calibration the accuracy harness checks, ``benchmarks/mapping_accuracy.py``):

1. **Name** ``n`` in [0, 1]: the best ``rapidfuzz`` ratio between the source name's canonical forms
   (:func:`.vocabulary.source_forms`) and the candidate's forms (logical name without the publisher prefix, display
   name, concept phrases); a concept phrase equal to the source form scores 1.0 ("via synonym"). Name evidence is
   rescaled to ``(n - 0.55) / 0.45``: two unrelated short names often share 60-70 % of their letters, so only
   the part above that says anything.
2. **Type** factor ``t``: 1 for a natural pair (DATE -> DateOnly), less for a possible but odd one (BIGINT ->
   String 0.7), 0 (candidate dropped) for what the map's validation would refuse; a picklist's factor is the share
   of sampled rows whose value found an option by label; a value longer than the column's MaxLength halves it.
3. **Values** ``v``: +0.05 when the column's meaning (e-mail, phone, NPI, CDT, tooth) is what ≥ 80 % of the values
   look like, -0.45 when it is a column for such values and few look like them, -0.15 when the values are clearly
   e-mails/phones/NPIs/CDT codes and the column is not for them.

``confidence = clamp(name * t + v - 0.05 [column only in the environment], 0, 0.99)``; the proposer then takes
0.1 off when a different column scores within 0.05 (ambiguous).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz import fuzz

from senseimig_dagster.mapping import vocabulary
from senseimig_dagster.mapping.candidates import Candidate
from senseimig_dagster.mapping.profiles import SEMANTIC_LABELS, ColumnProfile

CONCEPT_SCORE = 1.0
NAME_FLOOR = 0.55
_DIRECT: dict[str, dict[str, float]] = {
    "uuid": {"String": 1.0, "Memo": 0.8, "Uniqueidentifier": 1.0},
    "str": {"String": 1.0, "Memo": 0.95},
    "text": {"Memo": 1.0, "String": 0.95},
    "int": {"Integer": 1.0, "BigInt": 1.0, "Decimal": 0.9, "Double": 0.9, "Money": 0.8, "String": 0.7, "Memo": 0.6},
    "decimal": {"Decimal": 1.0, "Money": 1.0, "Double": 0.9},
    "bool": {"Boolean": 1.0},
    "json": {"Memo": 1.0, "String": 0.9},
}
_CHOICE = frozenset({"Picklist", "State", "Status"})
_STRONG = ("email", "phone", "npi", "cdt")
_DIGITS = re.compile(r"\d+")
_ROW_ID_COLUMN = "sourcesystemid"


@dataclass(frozen=True)
class Scored:
    candidate: Candidate
    transform: str
    confidence: float
    reasons: tuple[str, ...]
    values: tuple[tuple[str, Any], ...] = ()
    time_zone: str | None = None

    @property
    def target(self) -> str:
        return self.candidate.name


@dataclass
class TargetForms:
    """The comparable forms of one candidate (precomputed once per catalog table)."""

    candidate: Candidate
    forms: list[str] = field(default_factory=list)
    concepts: list[str] = field(default_factory=list)
    semantic: str | None = None


def _strip_prefix(name: str, prefix: str, known: bool) -> str:
    head, sep, rest = name.partition("_")
    if sep and (head.lower() == prefix or not known):
        return rest
    return name


def target_forms(c: Candidate, prefix: str, slots: tuple[str, ...] = ()) -> TargetForms:
    bare = _strip_prefix(c.name, prefix, c.known)
    for placeholder in ("{slot}", "{Slot}", "_{table}"):
        bare = bare.replace(placeholder, "")
    forms = [vocabulary.canonical(vocabulary.raw_tokens(bare), strip_noise=False)]
    if c.display:
        words = [w for w in vocabulary.raw_tokens(c.display) if w not in slots]
        forms.append(vocabulary.canonical(words, strip_noise=False))
    concepts = list(dict.fromkeys([*vocabulary.CONCEPTS.get(c.name, ()),
                                   *vocabulary.CONCEPTS.get(bare.lower().replace("_", ""), ())]))
    text = " ".join([*forms, *concepts, c.name.lower()])
    semantic = ("email" if "email" in text else "phone" if any(w in text for w in ("phone", "fax")) else
                "npi" if "npi" in text else "cdt" if "cdt" in text or "procedurecode" in text else
                "tooth" if "tooth" in text else None)
    return TargetForms(c, [f for f in dict.fromkeys(forms) if f], concepts, semantic)


def name_score(field_name: str, sources: tuple[str, ...], t: TargetForms) -> tuple[float, str]:
    best, why = 0.0, ""
    for s in sources:
        for concept in t.concepts:
            if s == concept and best < CONCEPT_SCORE:
                best, why = CONCEPT_SCORE, f"name: '{field_name}' ~ '{t.candidate.name}' via synonym {concept!r}"
        for f in t.forms:
            score = max(fuzz.ratio(s, f), fuzz.ratio(s.replace(" ", ""), f.replace(" ", ""))) / 100
            if _DIGITS.findall(s) != _DIGITS.findall(f) and set(_DIGITS.findall(s)) != set(_DIGITS.findall(f)):
                score *= 0.85  # numbers carry meaning: address1 is not address2, telephone1 not telephone2
            if score > best:
                best = score
                why = (f"name: '{field_name}' = '{t.candidate.name}' after normalisation" if score == 1 else
                       f"name: '{field_name}' ~ '{t.candidate.name}' ({score:.2f})")
    return best, why


def option_values(p: ColumnProfile, c: Candidate) -> tuple[tuple[tuple[str, Any], ...], float, str] | None:
    """Source categories -> option values by label similarity; ``None`` without categories or labels."""
    options = c.options if c.kind != "Boolean" or c.options else ((True, "Yes"), (False, "No"))
    if c.kind == "Boolean" and not any(isinstance(v, bool) for v, _ in options):
        options = ((True, "Yes"), (False, "No"))
    categories = p.categories
    if p.kind == "bool":
        categories = tuple((v, n) for v, n in categories) or (("true", 1), ("false", 1))
    if p.phi or not categories or not options or not all(label for _, label in options):
        return None
    labels = [(v, vocabulary.value_form(label)) for v, label in options]
    pairs, mapped_rows, total = [], 0, sum(n for _, n in categories)
    for value, count in categories:
        form = vocabulary.value_form(value)
        score, option = max(((fuzz.ratio(form, lf) / 100, v) for v, lf in labels), key=lambda x: x[0])
        if score >= 0.85:
            pairs.append((value, option))
            mapped_rows += count
        else:
            pairs.append((value, None))
    if not mapped_rows:
        return None
    coverage = mapped_rows / total
    matched = sum(o is not None for _, o in pairs)
    return tuple(pairs), coverage, (f"options: {matched} of {len(pairs)} values matched by label "
                                    f"({coverage:.0%} of sampled rows); the rest -> empty")


def fit(p: ColumnProfile, c: Candidate) -> tuple[str, float, list[str], dict[str, Any]] | None:
    """(transform, type factor, reasons, extra FieldMap keys), or ``None`` when the pair is not writable."""
    kind, src = c.kind, p.kind
    ok = f"type: {p.duck_type} -> {kind}"
    if c.is_lookup:
        if src != "uuid":
            return None
        return "lookup", 1.0, [f"{ok} (an id: bound by alternate key)"], {}
    if kind in _CHOICE or (kind == "Boolean" and src != "bool"):
        mapped = option_values(p, c)
        if mapped is None:
            return None
        values, coverage, reason = mapped
        return "picklist", coverage if coverage < 0.9 else 1.0, [f"{ok} via picklist", reason], {"values": values}
    if kind == "DateOnly" or kind == "DateTime":
        dates, stamps = p.share("date"), p.share("datetime")
        if src == "date" or (src == "str" and dates >= 0.9):
            factor = (1.0 if kind == "DateOnly" else 0.85) * (1.0 if src == "date" else 0.9)
            return "date", factor, [f"{ok} ok", f"values: {dates:.0%} dates"], {}
        if src == "datetime" or (src == "str" and stamps >= 0.9):
            if kind == "DateOnly":
                return "date", 0.8, [f"{ok}: the time of day is dropped"], {}
            return "datetime", 1.0 if src == "datetime" else 0.85, [f"{ok} ok (UTC)"], {"time_zone": "utc"}
        return None
    factor = _DIRECT.get(src, {}).get(kind)
    if factor is None:
        return None
    reasons = [f"{ok} ok" if factor == 1 else f"{ok} possible ({factor:.2f})"]
    if c.max_length and p.max_length > c.max_length:
        factor *= 0.5
        reasons.append(f"length: longest sampled value {p.max_length} > MaxLength {c.max_length}")
    return "direct", factor, reasons, {}


def value_adjustment(p: ColumnProfile, t: TargetForms) -> tuple[float, str | None]:
    if p.non_null == 0 or p.kind == "json":  # a JSON list's text is no single e-mail, code or phone
        return 0.0, None
    if t.candidate.name.endswith(_ROW_ID_COLUMN) and p.non_null >= 5 and p.distinct < 0.95 * p.non_null:
        return -0.4, f"values: {p.distinct / p.non_null:.0%} distinct, not a row id"
    if t.semantic is not None:
        share = p.share(t.semantic)
        label = SEMANTIC_LABELS.get(t.semantic, t.semantic)
        if share >= 0.8:
            return 0.05, f"values: {share:.0%} {label}"
        if p.non_null >= 5 and share < 0.3:
            return -0.45, f"values: only {share:.0%} {label}"
        return 0.0, None
    semantic = p.semantic
    if semantic in _STRONG:
        return -0.15, f"values: {p.share(semantic):.0%} {SEMANTIC_LABELS[semantic]}, not what the column is for"
    return 0.0, None


def score(field_name: str, sources: tuple[str, ...], p: ColumnProfile, t: TargetForms) -> Scored | None:
    fitted = fit(p, t.candidate)
    if fitted is None:
        return None
    transform, factor, type_reasons, extra = fitted
    n, name_reason = name_score(field_name, sources, t)
    name = max(0.0, (n - NAME_FLOOR) / (1 - NAME_FLOOR))
    adjust, value_reason = value_adjustment(p, t)
    reasons = [name_reason, *type_reasons, *([value_reason] if value_reason else [])]
    confidence = name * factor + adjust
    if not t.candidate.known:
        confidence -= 0.05
        reasons.append("column found only in the environment (not in the schema plan)")
    confidence = round(min(0.99, max(0.0, confidence)), 2)
    return Scored(t.candidate, transform, confidence, tuple(reasons), extra.get("values", ()),
                  extra.get("time_zone"))
