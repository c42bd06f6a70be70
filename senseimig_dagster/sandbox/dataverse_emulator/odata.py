"""OData URL pieces of the emulator: resource paths, key segments, query options, Prefer and paging tokens.

Grammar kept deliberately small: ``$filter`` accepts ``col <eq|ne|gt|ge|lt|le> literal``, the string functions
(optionally negated with ``not``), joined by ``and``, with ``or`` inside one level of parentheses; anything else is
refused with 400 rather than guessed at, so a client never relies on leniency.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from senseimig_dagster.sandbox.dataverse_emulator import errors
from senseimig_dagster.sandbox.dataverse_emulator.errors import DataverseError

MAX_PAGE_SIZE = 5000  # default and maximum of odata.maxpagesize (L/webapi/query/page-results)
# Characters that break alternate-key retrieval/upsert (L/use-alternate-key-reference-record, and observed
# failures).
KEY_FORBIDDEN = frozenset("/<>*%&:\\?+")

_RESOURCE = re.compile(r"^/(?P<set>[A-Za-z_][A-Za-z0-9_]*)(?:\((?P<key>.*)\))?(?P<count>/\$count)?$", re.S)
_PAIR = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?:'((?:[^']|'')*)'|([^,']*))\s*(?:,|$)", re.S)
_COND = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*)\s+(eq|ne|gt|ge|lt|le)\s+"
                   r"('(?:[^']|'')*'|[^\s']+)\s*$", re.S)
_FUNCTION = re.compile(r"^\s*(contains|startswith|endswith)\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,\s*'((?:[^']|'')*)'\s*\)\s*$",
                       re.S)


def bad_request(message: str) -> DataverseError:
    # Query syntax faults: Dataverse answers 400; the exact code per fault is unverified (INVALID_ARGUMENT).
    return DataverseError(400, errors.INVALID_ARGUMENT, message)


@dataclass(frozen=True)
class Resource:
    entity_set: str
    id: str | None = None
    key: tuple[tuple[str, Any], ...] | None = None  # alternate-key pairs, in URL order
    count: bool = False
    key_text: str | None = None  # the alternate key as the URL wrote it, between the parentheses

    @property
    def addresses_record(self) -> bool:
        return self.id is not None or self.key is not None


def is_guid(text: str) -> bool:
    try:
        return len(text) == 36 and str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False


def parse_literal(text: str) -> Any:
    """An OData primitive literal: 'string' (with '' escaping), integer, decimal, true/false/null or a GUID."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    if is_guid(text):
        return text.lower()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise bad_request(f"Syntax error: '{text}' is not a valid literal.") from None


def parse_resource(path: str) -> Resource:
    """``/<set>``, ``/<set>(<guid>)``, ``/<set>(col='v',...)`` or ``/<set>/$count`` (path below the base URL)."""
    match = _RESOURCE.match(path)
    if match is None:
        raise bad_request(f"Resource not found for the segment '{path.lstrip('/')}'.")
    key_text = match["key"]
    if key_text is None:
        return Resource(match["set"], count=bool(match["count"]))
    if match["count"]:
        raise bad_request("$count is only supported on a collection.")
    if is_guid(key_text.strip()):
        return Resource(match["set"], id=key_text.strip().lower())
    pairs, pos = [], 0
    for m in _PAIR.finditer(key_text):
        if m.start() != pos or m.end() == m.start():
            break
        raw = m[2].replace("''", "'") if m[2] is not None else parse_literal(m[3])
        pairs.append((m[1], raw))
        pos = m.end()
    if not pairs or pos != len(key_text) or key_text.rstrip().endswith(","):
        raise bad_request(f"Bad Request - Error in query syntax: key '{key_text}' is not valid.")
    reject_reserved_key_values(pairs)
    return Resource(match["set"], key=tuple(pairs), key_text=key_text)


def reject_reserved_key_values(pairs: list[tuple[str, Any]] | tuple[tuple[str, Any], ...]) -> None:
    """400 when an alternate-key value holds one of ``/<>*%&:\\?+`` (in a URL, an ``@odata.id`` or a bind).

    L/use-alternate-key-reference-record [doc] only says "Alternate key values containing a '+' character are not
    currently supported for retrieval through OData"; the other characters come from observed failures.
    Refused everywhere so a client sanitises source ids; status 400 and this text are unverified."""
    for _, value in pairs:
        if isinstance(value, str) and KEY_FORBIDDEN.intersection(value):
            raise bad_request(
                "Bad Request - Error in query syntax: alternate key values must not contain any of "
                "'/', '<', '>', '*', '%', '&', ':', '\\', '?', '+'."
            )


def parse_expand_item(text: str) -> tuple[str, dict[str, str]]:
    """``OptionSet($select=Options;$expand=X)`` -> ("OptionSet", {"$select": "Options", "$expand": "X"}): one
    navigation property with its nested query options, separated by ``;`` (OData 4.0 URL conventions §5.1.2)."""
    name, paren, rest = text.strip().partition("(")
    if not paren:
        return name, {}
    if not rest.endswith(")"):
        raise bad_request(f"Syntax error in $expand: '{text}'.")
    nested: dict[str, str] = {}
    for option in _split_outside_parens(rest[:-1], ";"):
        key, eq, value = option.partition("=")
        if not eq or not key.strip().startswith("$"):
            raise bad_request(f"Syntax error in $expand: '{text}'.")
        nested[key.strip()] = value.strip()
    return name.strip(), nested


def split_expand(text: str | None) -> list[str]:
    """``a($select=x,y),b/$ref`` -> ["a($select=x,y)", "b/$ref"]: the items of ``$expand``."""
    return [] if not text else [p.strip() for p in _split_outside_parens(text, ",")]


def _split_outside_parens(text: str, separator: str) -> list[str]:
    parts, depth, current = [], 0, []
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == separator and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


_ALIAS = re.compile(r"'(?:[^']|'')*'|@[A-Za-z_][A-Za-z0-9_]*")


def resolve_aliases(text: str | None, params: dict[str, str]) -> str:
    """``$filter=name eq @p1&@p1='x'`` -> ``name eq 'x'``: parameter aliases (Microsoft's "Use parameter aliases
    with system query options"; an alias without a value is null), replaced outside string literals."""
    if not text:
        return text or ""
    return _ALIAS.sub(lambda m: m[0] if m[0].startswith("'") else params.get(m[0], "null"), text)


def parse_select(text: str | None) -> list[str] | None:
    if not text:
        return None
    return [c.strip() for c in text.split(",") if c.strip()]


@dataclass(frozen=True)
class Like:
    """``contains``/``startswith``/``endswith`` on a string column: a SQL LIKE pattern (a filter value)."""

    pattern: str


def _like(function: str, text: str) -> Like:
    escaped = text.replace("''", "'").replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return Like({"contains": f"%{escaped}%", "startswith": f"{escaped}%", "endswith": f"%{escaped}"}[function])


@dataclass(frozen=True)
class Compare:
    """``ne``/``gt``/``ge``/``lt``/``le`` and a literal (a filter value). A null column never compares (SQL's
    three-valued logic, as Dataverse's SQL Server evaluates it), except ``ne null``, which means "has a value"."""

    operator: str
    value: Any
    SQL = {"ne": "!=", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}


@dataclass(frozen=True)
class Unlike:
    """``not contains(...)`` and the like: a negated :class:`Like`."""

    pattern: str


@dataclass(frozen=True)
class AnyCondition:
    """``a or b`` where the alternatives are not all equalities on one column (a filter item; its column is "")."""

    conditions: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class AnyOf:
    """The values of ``c eq a or c eq b ...`` on one column (a filter value)."""

    values: tuple[Any, ...]


def _split_outside_quotes(text: str, word: str) -> list[str]:
    """Split on `` word `` (and/or) where it is outside quotes and parentheses."""
    parts, depth, quoted, start, i = [], 0, False, 0, 0
    token = f" {word} "
    while i < len(text):
        ch = text[i]
        if ch == "'":
            quoted = not quoted  # a doubled quote flips twice: still inside
        elif not quoted and ch in "()":
            depth += 1 if ch == "(" else -1
        elif not quoted and depth == 0 and text[i:i + len(token)].lower() == token:
            parts.append(text[start:i])
            i += len(token)
            start = i
            continue
        i += 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


# Dataverse query functions (L/webapi/query/filter-rows, "Dataverse query functions"); aliases are resolved first.
_QUERY_FUNCTION = re.compile(r"^\s*Microsoft\.Dynamics\.CRM\.(LastXHours|LastXDays|OlderThanXDays)\(\s*PropertyName\s*="
                             r"\s*'([A-Za-z_][A-Za-z0-9_]*)'\s*,\s*PropertyValue\s*=\s*'?(\d+)'?\s*\)\s*$", re.S)
_HOURS = {"LastXHours": 1, "LastXDays": 24, "OlderThanXDays": 24}


def _query_function(match: re.Match) -> tuple[str, Compare]:
    """``LastXHours``/``LastXDays`` -> ``ge`` now minus X; ``OlderThanXDays`` -> ``lt`` it (UTC: the emulator's
    users have no time zone, and the documentation leaves day boundaries to the user's)."""
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=_HOURS[match[1]] * int(match[3]))
    return match[2], Compare("lt" if match[1].startswith("Older") else "ge", since.strftime("%Y-%m-%dT%H:%M:%SZ"))


def _condition(part: str) -> tuple[str, Any]:
    query_function = _QUERY_FUNCTION.match(part)
    if query_function is not None:
        return _query_function(query_function)
    negated = re.match(r"^\s*not\s+(.*)$", part, re.S)
    function = _FUNCTION.match(negated[1] if negated else part)
    if function is not None:  # the standard string functions (Microsoft's "Query data": contains, ...)
        like = _like(function[1], function[3])
        return function[2], Unlike(like.pattern) if negated else like
    m = _COND.match(part)
    if m is None:
        raise bad_request("The emulator supports only comparisons of a column with a literal joined by 'and', and "
                          f"'or' between equalities on one column, in $filter: '{part}'.")
    value = parse_literal(m[3])
    return m[1], value if m[2] == "eq" else Compare(m[2], value)


def parse_filter(text: str | None) -> list[tuple[str, Any]]:
    """``a eq 'x' and (b eq 3 or b eq 4)`` -> [("a", "x"), ("b", AnyOf((3, 4)))]. Only ``eq`` (on a column, or on
    ``<lookup navigation property>/<its target's primary key>``) and ``contains``/``startswith``/``endswith``
    (:class:`Like`), joined by ``and``, with ``or`` between equalities on one column (how clients fetch records by
    a list of keys)."""
    if not text:
        return []
    conditions: list[tuple[str, Any]] = []
    for part in _split_outside_quotes(text.strip(), "and"):
        if part.startswith("(") and part.endswith(")"):
            part = part[1:-1].strip()
        alternatives = [_condition(p) for p in _split_outside_quotes(part, "or")]
        if len(alternatives) == 1:
            conditions.append(alternatives[0])
            continue
        if len({c for c, _ in alternatives}) != 1 or any(isinstance(v, (Like, Unlike, Compare))
                                                           for _, v in alternatives):
            conditions.append(("", AnyCondition(tuple(alternatives))))
            continue
        conditions.append((alternatives[0][0], AnyOf(tuple(v for _, v in alternatives))))
    return conditions


def parse_orderby(text: str | None) -> list[tuple[str, bool]]:
    """``a desc,b`` -> [("a", True), ("b", False)] (True = descending)."""
    if not text:
        return []
    out = []
    for part in text.split(","):
        bits = part.split()
        if not bits or len(bits) > 2 or (len(bits) == 2 and bits[1] not in ("asc", "desc")):
            raise bad_request(f"Invalid $orderby clause '{part.strip()}'.")
        out.append((bits[0], len(bits) == 2 and bits[1] == "desc"))
    return out


def parse_prefer(header: str | None) -> dict[str, str]:
    """``return=representation,odata.maxpagesize=10`` -> {"return": "representation", "odata.maxpagesize": "10"}.
    Preferences are separated by commas (RFC 7240) outside quotes (``odata.include-annotations="a,b"`` is one); a
    semicolon separates them too, as Microsoft's query data sample sends ``odata.maxpagesize=4; odata...``."""
    prefs: dict[str, str] = {}
    for item in re.findall(r'(?:[^,;"]|"[^"]*")+', header or ""):
        name, _, value = item.strip().partition("=")
        if name:
            prefs[name.strip().lower()] = value.strip().strip('"')
    return prefs


def page_size(prefs: dict[str, str]) -> int | None:
    """The odata.maxpagesize asked for, capped at 5000; None when not sent."""
    raw = prefs.get("odata.maxpagesize")
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise bad_request(f"The value '{raw}' of odata.maxpagesize is not valid.")
    return min(int(raw), MAX_PAGE_SIZE)


def _query_fingerprint(entity_set: str, filter_text: str, orderby_text: str) -> str:
    return hashlib.sha256(f"{entity_set}\0{filter_text}\0{orderby_text}".encode()).hexdigest()[:16]


def encode_skiptoken(entity_set: str, filter_text: str, orderby_text: str, offset: int) -> str:
    """An opaque token (Dataverse uses an XML paging cookie; clients must follow nextLink unchanged)."""
    raw = json.dumps({"q": _query_fingerprint(entity_set, filter_text, orderby_text), "o": offset})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


# The inner pagingcookie may arrive decoded once more (the query data sample sends it so): only the page number counts.
_PAGING_COOKIE = re.compile(r'^<cookie pagenumber="(\d+)".*/>$', re.S)


def decode_skiptoken(token: str, entity_set: str, filter_text: str, orderby_text: str, page_size: int = MAX_PAGE_SIZE
                     ) -> int:
    """The offset a token stands for; a token from another query or a forged one is 400. Dataverse's own form, the
    XML paging cookie of Microsoft's examples (``<cookie pagenumber="2" pagingcookie="..." />``), is read by its
    page number: page N starts after N-1 pages of ``page_size`` (the same rows, as the order is stable)."""
    cookie = _PAGING_COOKIE.match(token.strip())
    if cookie is not None and int(cookie[1]) >= 1:
        return (int(cookie[1]) - 1) * page_size
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset = int(data["o"])
        same = data["q"] == _query_fingerprint(entity_set, filter_text, orderby_text)
    except (ValueError, KeyError, TypeError):
        raise bad_request("The $skiptoken value is not valid.") from None
    if not same or offset < 0:
        raise bad_request("The $skiptoken value is not valid for this query.")
    return offset


def read_json(environ: dict) -> dict[str, Any]:
    """The request body as a JSON object, or 400 with Dataverse's error body."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise bad_request("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body
