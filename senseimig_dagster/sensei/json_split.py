"""A page the JSON parser refuses, split down to the record: the envelope (``data``, ``next_page_token``,
``total_count``) is recovered from the page's structure, each record of ``data`` is parsed on its own, and only the
records that do not parse are set aside as :class:`Unparsed`, with their position and a named reason:

- ``invalid_encoding``: bytes that are not UTF-8, or an escape that is not a character (a lone ``\\ud800``);
- ``malformed_record``: anything else that is not JSON.

A body whose envelope cannot be recovered (cut short in transit, not an object) gives None: the caller retries it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

from senseimig_dagster.objects import PRIMARY_KEY

INVALID_ENCODING = "invalid_encoding"
MALFORMED_RECORD = "malformed_record"

# JSON's structural tokens: a whole string (escapes included), or one of the six punctuation characters.
# Scalars between them are not tokens: a member's or element's text is the span between two tokens.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},:]', re.S)


@dataclass(frozen=True)
class Unparsed:
    """A record of a page that did not parse: safe-to-show cause, its text as received (local rejects only)."""

    reason: str
    cause: str
    raw: str
    source_id: str | None = None


@dataclass(frozen=True)
class SplitPage:
    records: list[Any]  # parsed records and Unparsed, in page order
    next_token: str | None
    total_count: int | None


def split_page(body: bytes) -> SplitPage | None:
    """The page record by record; None when its envelope is not a complete ``{data: [...], ...}`` object."""
    spans = _spans(body)
    if spans is None:
        return None
    members, elements = spans
    try:
        token = orjson.loads(members.get(b'"next_page_token"', b"null"))
        total = orjson.loads(members[b'"total_count"']) if b'"total_count"' in members else None
    except orjson.JSONDecodeError:
        return None
    if b'"data"' not in members or not isinstance(token, str | None):
        return None
    return SplitPage([_record(e) for e in elements], token, total if isinstance(total, int) else None)


def _spans(body: bytes) -> tuple[dict[bytes, bytes], list[bytes]] | None:
    """The top-level members' value texts (by key token) and the texts of ``data``'s elements."""
    members: dict[bytes, bytes] = {}
    elements: list[bytes] = []
    depth, key, value_start, element_start, in_data, closed = 0, None, 0, 0, False, False
    for m in _TOKEN.finditer(body):
        tok = m.group()
        if closed:
            return None  # something after the page object
        if depth == 0:
            if tok != b"{" or body[:m.start()].strip():
                return None
            depth = 1
        elif depth == 1:
            if tok.startswith(b'"') and key is None:
                key = tok
            elif tok == b":" and key is not None:
                value_start = m.end()
            elif tok in (b",", b"}") and key is not None:
                members[key], key = body[value_start:m.start()].strip(), None
                closed = tok == b"}"
                depth = 0 if closed else 1
            elif tok in (b"[", b"{"):
                depth += 1
                in_data, element_start = key == b'"data"' and tok == b"[", m.end()
            elif tok == b"}" and key is None and not members:
                closed, depth = True, 0  # {}
            elif not tok.startswith(b'"'):
                return None
        elif tok in (b"[", b"{"):
            depth += 1
        elif tok in (b"]", b"}"):
            depth -= 1
            if depth == 1 and in_data:
                _element(elements, body[element_start:m.start()])
                in_data = False
        elif tok == b"," and depth == 2 and in_data:
            _element(elements, body[element_start:m.start()])
            element_start = m.end()
    if not closed or body[body.rfind(b"}") + 1:].strip():
        return None
    return members, elements


def _element(elements: list[bytes], text: bytes) -> None:
    if text.strip():  # "[a, ,b]" or a trailing comma: no record there
        elements.append(text.strip())


def _record(text: bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as e:
        return Unparsed(INVALID_ENCODING, f"not UTF-8 (byte {e.start} of the record)",
                        text.decode("utf-8", "backslashreplace"))
    try:
        value = json.loads(decoded)  # Python's parser accepts lone surrogate escapes, orjson does not
    except ValueError:
        return Unparsed(MALFORMED_RECORD, "not valid JSON", decoded)
    return Unparsed(INVALID_ENCODING, "an escape that is not a character (a lone surrogate)", decoded,
                    _clean_id(value))


def _clean_id(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    found = value.get(PRIMARY_KEY)
    if not isinstance(found, str) or not found:
        return None
    try:
        found.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return found
