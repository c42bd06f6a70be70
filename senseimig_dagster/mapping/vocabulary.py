"""Words the proposer knows, read from ``vocabulary.yaml`` (data, so a word is added without touching code):
abbreviations, CRM and dental synonyms, the concepts behind standard columns, and the labels of the standard choice
columns the client-side copy lists without labels. Names are compared as canonical token phrases (:func:`canonical`).
"""

from __future__ import annotations

import re
from importlib import resources

from ruamel.yaml import YAML

_WORDS = YAML(typ="safe").load(resources.files(__package__).joinpath("vocabulary.yaml").read_text("utf-8"))
ABBREVIATIONS: dict[str, str] = _WORDS["abbreviations"]  # an abbreviation -> the words it stands for
SYNONYMS: dict[str, str] = _WORDS["synonyms"]  # sub-phrases rewritten to one canonical phrase
WHOLE_SYNONYMS: dict[str, str] = _WORDS["whole_synonyms"]  # whole names that mean a longer one
CONCEPTS: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in _WORDS["concepts"].items()}  # column -> phrases
# Labels of standard choice columns: column -> (option value, label) pairs.
STANDARD_OPTION_LABELS: dict[str, tuple[tuple[object, str], ...]] = {
    k: tuple((value, label) for value, label in pairs) for k, pairs in _WORDS["standard_option_labels"].items()}
VALUE_SYNONYMS: dict[str, str] = _WORDS["value_synonyms"]  # source values and option labels meaning the same
NOISE_PREFIXES: tuple[str, ...] = tuple(_WORDS["noise_prefixes"])  # decorations stripped from field names
NOISE_SUFFIXES: tuple[str, ...] = tuple(_WORDS["noise_suffixes"])

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])")
_SPLIT = re.compile(r"[^a-z0-9]+")


def raw_tokens(name: str) -> list[str]:
    """``PtDOB_Date`` -> ``['pt', 'dob', 'date']``: camel case, digits and separators split, lower case."""
    return [t for t in _SPLIT.split(_CAMEL.sub(" ", name).lower()) if t]


def source_forms(name: str) -> tuple[str, ...]:
    """The canonical phrases a source field name may stand for: with and without its decorations (``pt_nbr`` is
    the patient number, ``pt_dob`` a date of birth)."""
    words = raw_tokens(name)
    return tuple(dict.fromkeys((canonical(words), canonical(words, strip_noise=False))))


def canonical(words: list[str], *, strip_noise: bool = True) -> str:
    """Tokens -> one canonical phrase: decorations stripped, abbreviations expanded, synonym phrases rewritten."""
    if strip_noise:
        while len(words) > 1 and words[0] in NOISE_PREFIXES:
            words = words[1:]
        while len(words) > 1 and words[-1] in NOISE_SUFFIXES:
            words = words[:-1]
    phrase = " ".join(ABBREVIATIONS.get(w, w) for w in words)
    for _ in range(2):  # a rewrite may expose another ("bday" -> "birthday" -> "date of birth")
        phrase = _rewrite(phrase)
    return WHOLE_SYNONYMS.get(phrase, phrase)


def _rewrite(phrase: str) -> str:
    padded = f" {phrase} "
    for old in sorted(SYNONYMS, key=len, reverse=True):  # longest first: "cell phone" before "mobile"
        if f" {old} " in padded:
            padded = padded.replace(f" {old} ", f" {SYNONYMS[old]} ")
    return padded.strip()


def value_form(value: str) -> str:
    text = " ".join(raw_tokens(value))
    return VALUE_SYNONYMS.get(text, text)
