"""Replaying Microsoft's documented Web API examples against the emulator and scoring what comes back.

The corpus (``senseimig_dagster_tests/sandbox/dataverse_emulator/conformance/*.yaml``) holds the literal HTTP
request and response of each example as the article prints it, with the article's URL and section. One file per
article: ``source`` (URL), ``area``, ``examples``: ``name``, ``section``, ``given`` (the documented preconditions:
records the example assumes exist, written through the Web API first, ``version`` giving a record its documented
ETag; or ``setup``, a named precondition of :data:`SETUPS`), ``documentation_error`` (optional: why the article's
own response cannot be produced, e.g. a misspelt property; the example is kept as documented and still fails), ``request`` and ``response`` (HTTP message text; ``[Organization URI]`` stands for the emulator).

Each example runs against a fresh emulator. What is compared, and why (the documentation is silent on what a
faithful replay must match, so this is the choice):

- the status code, exactly;
- the headers that matter when the article shows them: ``OData-EntityId`` and ``Location`` (the same URL once the
  host, the API version, server-assigned GUIDs and a value the article elides, "<... removed for brevity>", are set
  aside), ``Preference-Applied`` (the same preferences, case and order aside),
  ``ETag`` (a weak ETag), ``Content-Type`` (media type and ``odata.metadata``);
- the body's shape: every property the article shows is there with a value of the same JSON type, arrays as long;
  values where they are deterministic (not a GUID, a timestamp, an ETag or a URL, which the server assigns, nor an
  empty string, which older articles print for an error code, nor a placeholder "... removed for brevity");
  a body the article elides ("< binary content removed for brevity>") is not compared.
  ``@odata.context`` must be there; its text varies with the service's host and ``$select``. The environment's
  ``@Microsoft.Dynamics.CRM.globalmetadataversion`` is a server counter: its type is compared, not its value. A body an article
  cuts short with ", . . ." is compared for what it shows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from senseimig_dagster_tests.support.constants import EMULATOR_URL

ORG = "[Organization URI]"
_ORG = re.compile(r"(?:https?://)?\[Organization URI\]", re.IGNORECASE)  # also "Uri", "https://[Organization URI]"
_ELISION = re.compile(r",\s*\.\s*\.\s*\.")  # articles cut bodies short with ", . . ."
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_VERSION = re.compile(r"/api/data/v\d+\.\d+")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
_URL_ELISION = re.compile(r"<[^<>]*removed for brevity[^<>]*>")  # a value an article leaves out of a URL
_HEADERS = ("odata-entityid", "location", "preference-applied", "etag", "content-type")

Setup = Callable[[httpx.Client, Any], None]  # (client, the emulator app)
SETUPS: dict[str, Setup] = {}


def setup(name: str) -> Callable[[Setup], Setup]:
    def register(fn: Setup) -> Setup:
        SETUPS[name] = fn
        return fn
    return register


@dataclass(frozen=True)
class Message:
    start: str  # request line or status line
    headers: dict[str, str]  # lower-cased names
    body: str


@dataclass(frozen=True)
class Example:
    area: str
    source: str
    section: str
    name: str
    request: Message
    response: Message
    given: tuple[dict[str, Any], ...] = ()
    setups: tuple[str, ...] = ()
    documentation_error: str | None = None  # why the documented response can't be produced (still a failure)

    @property
    def title(self) -> str:
        return f"{self.area}: {self.name}"


@dataclass
class Outcome:
    example: Example
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def parse_message(text: str) -> Message:
    lines = text.strip("\n").replace("\r\n", "\n").split("\n")
    start, headers, i = lines[0].strip(), {}, 1
    # Articles break long URLs before an "&" or a nested "$expand=": continuation lines, never headers.
    while i < len(lines) and lines[i].lstrip().startswith(("&", "$")):
        start, i = start + lines[i].strip(), i + 1
    while i < len(lines) and lines[i].strip() and not lines[i].lstrip().startswith(("{", "[")):
        name, _, value = lines[i].partition(":")
        headers[name.strip().lower()] = value.strip()
        i += 1
    # Some articles start the body right after the headers, without the blank line.
    body_from = i + 1 if i < len(lines) and not lines[i].strip() else i
    return Message(start, headers, "\n".join(lines[body_from:]).strip())


def load_corpus(folder: Path) -> list[Example]:
    examples = []
    for path in sorted(folder.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for raw in doc["examples"]:
            setups = raw.get("setup") or ()
            examples.append(Example(
                area=doc["area"], source=doc["source"], section=raw["section"], name=raw["name"],
                request=parse_message(raw["request"]), response=parse_message(raw["response"]),
                given=tuple(raw.get("given") or ()), setups=(setups,) if isinstance(setups, str) else tuple(setups),
                documentation_error=raw.get("documentation_error")))
    return examples


# -- replay -------------------------------------------------------------------------------------------------------
class Aliases:
    """GUIDs of the article's environment -> the emulator's: the server assigns ids, the article shows its own."""

    def __init__(self) -> None:
        self.map: dict[str, str] = {}

    def rewrite(self, text: str) -> str:
        return GUID.sub(lambda m: self.map.get(m[0].lower(), m[0]), text)

    def same(self, documented: str, actual: str) -> bool:
        documented, actual = documented.lower(), actual.lower()
        if documented == actual:
            return True
        if documented in self.map:
            return self.map[documented] == actual
        self.map[documented] = actual
        return True


def _local(text: str) -> str:
    return _VERSION.sub("/api/data/v9.2", _ORG.sub(EMULATOR_URL, text))


def replay(example: Example, app: Callable) -> Outcome:
    outcome = Outcome(example)
    aliases = Aliases()
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=EMULATOR_URL) as client:
        try:
            for name in example.setups:
                SETUPS[name](client, app)
            for record in example.given:
                if "version" in record:  # the record's documented ETag, W/"<version>": the next write gets it
                    with app.store._lock:
                        app.store._conn.execute("INSERT INTO counters(name, value) VALUES ('version', ?) ON CONFLICT"
                                                "(name) DO UPDATE SET value = ?", (record["version"] - 1,) * 2)
                r = client.post(f"/api/data/v9.2/{record['set']}", json=record["record"])
                if r.status_code >= 300:
                    outcome.problems.append(f"precondition {record['set']}: {r.status_code} {r.text[:200]}")
                    return outcome
        except Exception as e:  # a precondition the emulator cannot meet is a failure of the example
            outcome.problems.append(f"precondition: {type(e).__name__}: {e}")
            return outcome
        method, _, rest = example.request.start.partition(" ")
        url = _local(rest.rsplit(" HTTP/", 1)[0].strip())
        headers = {k: _local(v) for k, v in example.request.headers.items()
                   if k not in ("host", "content-length", "authorization")}
        body = _local(example.request.body)
        if "multipart/mixed" in headers.get("content-type", ""):
            body = body.replace("\r\n", "\n").replace("\n", "\r\n")
            if not body.endswith("\r\n"):
                body += "\r\n"
        response = client.request(method, url, headers=headers, content=body.encode() if body else None)
    _compare(example.response, response, aliases, outcome.problems)
    return outcome


def _compare(expected: Message, actual: httpx.Response, aliases: Aliases, problems: list[str]) -> None:
    _compare_message(expected, actual.status_code, {k.lower(): v for k, v in actual.headers.items()}, actual.text,
                     aliases, problems)


def _compare_message(expected: Message, status: int, headers: dict[str, str], text: str, aliases: Aliases,
                     problems: list[str], where: str = "") -> None:
    documented = status_of(expected.start)
    if status != documented:
        problems.append(f"{where}status {status}, documented {documented}: {text[:300]}")
        return
    for name in _HEADERS:
        if name not in expected.headers:
            continue
        want, got = expected.headers[name], headers.get(name)
        if got is None:
            problems.append(f"{where}header {name} missing")
        elif name in ("odata-entityid", "location"):
            if not _same_url(_local(want), got, aliases):
                problems.append(f"{where}header {name}: {got!r}, documented {want!r}")
        elif name == "preference-applied" and _preferences(want) != _preferences(got):
            problems.append(f"{where}header {name}: {got!r}, documented {want!r}")
        elif name == "etag" and not re.fullmatch(r'W/"\d+"', got):
            problems.append(f"{where}header etag: {got!r} is not a weak ETag")
        elif name == "content-type" and _media(want) != _media(got):
            problems.append(f"{where}header content-type: {got!r}, documented {want!r}")
    if "multipart/mixed" in expected.headers.get("content-type", "") or expected.body.startswith("--batchresponse"):
        documented_parts, actual_parts = inner_messages(expected.body), inner_messages(text)
        if len(documented_parts) != len(actual_parts):
            problems.append(f"{where}{len(actual_parts)} responses in the batch, documented {len(documented_parts)}")
            return
        for i, (d, a) in enumerate(zip(documented_parts, actual_parts, strict=True)):
            _compare_message(d, status_of(a.start), a.headers, a.body, aliases, problems, f"part {i + 1}: ")
    elif expected.body.startswith(("{", "[")):
        try:
            documented_body = json.loads(_ELISION.sub("", expected.body))
        except ValueError as e:
            problems.append(f"corpus: the documented body is not JSON ({e})")
            return
        try:
            body = json.loads(text)
        except ValueError:
            problems.append(f"{where}body is not JSON: {text[:200]!r}")
            return
        problems.extend(where + p for p in shape_problems(documented_body, body, aliases))
    elif expected.body and "removed for brevity" not in expected.body and _plain(text) != _plain(expected.body):
        problems.append(f"{where}body {text[:200]!r}, documented {expected.body[:200]!r}")


_REASON_ONLY = {"OK": 200, "Created": 201, "NoContent": 204, "PartialContent": 206}  # some articles print "HTTP/1.1 NoContent"


def status_of(status_line: str) -> int:
    token = status_line.split()[1]
    return int(token) if token.isdigit() else _REASON_ONLY[token]


def inner_messages(text: str) -> list[Message]:
    """The HTTP responses inside a ``$batch`` response body, in order, change sets flattened."""
    out = []
    for part in re.split(r"^--\S+\s*$", text.replace("\r\n", "\n"), flags=re.MULTILINE):
        at = part.find("HTTP/1.1 ")
        if at >= 0:
            out.append(parse_message(part[at:]))
    return out


def _plain(text: str) -> str:
    """A text body without its UTF-8 byte order mark, which an article may print decoded as Windows-1252
    ("ï»¿2": the retrieve article's count of related rows, with its note on the BOM)."""
    return text.strip().removeprefix("\ufeff").removeprefix("ï»¿").strip()


def _preferences(header: str) -> set[str]:
    """The preferences of a Preference-Applied value, case aside: their order and separator (one header with
    "; " or ", ", or several headers) carry no meaning."""
    return {p.strip().lower() for p in re.findall(r'(?:[^,;"]|"[^"]*")+', header) if p.strip()}


def _media(content_type: str) -> tuple[str, str]:
    parts = [p.strip().lower() for p in content_type.split(";")]
    metadata = next((p for p in parts[1:] if p.startswith("odata.metadata")), "")
    return parts[0], metadata


def _same_url(documented: str, actual: str, aliases: Aliases) -> bool:
    elided = _URL_ELISION.search(documented)
    if elided is not None:  # "?sessiontoken=<sessiontoken value removed for brevity>": the value is the server's
        before, after = documented[:elided.start()], documented[elided.end():]
        pattern = re.escape(GUID.sub("<id>", before)) + "[^&]*" + re.escape(GUID.sub("<id>", after))
        guids_doc = GUID.findall(before)
        guids_got = GUID.findall(actual)[:len(guids_doc)]
        return re.fullmatch(pattern, GUID.sub("<id>", actual)) is not None and \
            all(aliases.same(d, g) for d, g in zip(guids_doc, guids_got, strict=True))
    guids_doc, guids_got = GUID.findall(documented), GUID.findall(actual)
    if len(guids_doc) != len(guids_got) or GUID.sub("<id>", documented) != GUID.sub("<id>", actual):
        return False
    return all(aliases.same(d, g) for d, g in zip(guids_doc, guids_got, strict=True))


# Keys whose values a server assigns like an ETag: @odata.context (its text varies with the host and $select) and
# the environment's metadata version counter.
_SERVER_COUNTERS = frozenset({"@odata.context", "@Microsoft.Dynamics.CRM.globalmetadataversion"})


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def _deterministic(value: Any) -> bool:
    # An empty string is not compared either: older articles print error bodies with "code": "" where Dataverse
    # sends the hex code its error reference lists (web-service-error-codes).
    return not (isinstance(value, str) and (value == "" or "removed for brevity" in value or GUID.search(value) or _TIMESTAMP.match(value)
                                            or value.startswith("W/") or "://" in value or _ORG.search(value)))


def shape_problems(documented: Any, actual: Any, aliases: Aliases, path: str = "$") -> Iterator[str]:
    if _kind(documented) != _kind(actual):
        yield f"{path}: {_kind(actual)}, documented {_kind(documented)}"
        return
    if isinstance(documented, dict):
        for key, value in documented.items():
            if key not in actual:
                yield f"{path}.{key} missing"
            elif key in _SERVER_COUNTERS:  # present, with the documented type: its value is the server's
                if _kind(value) != _kind(actual[key]):
                    yield f"{path}.{key}: {_kind(actual[key])}, documented {_kind(value)}"
            else:
                yield from shape_problems(value, actual[key], aliases, f"{path}.{key}")
    elif isinstance(documented, list):
        if len(documented) != len(actual):
            yield f"{path}: {len(actual)} items, documented {len(documented)}"
            return
        for i, (d, a) in enumerate(zip(documented, actual, strict=True)):
            yield from shape_problems(d, a, aliases, f"{path}[{i}]")
    elif isinstance(documented, str) and GUID.fullmatch(documented) and isinstance(actual, str):
        if not aliases.same(documented, actual):
            yield f"{path}: {actual!r}, documented {documented!r} (another record)"
    elif _deterministic(documented) and documented != actual:
        yield f"{path}: {actual!r}, documented {documented!r}"


# -- the table ----------------------------------------------------------------------------------------------------
def table(outcomes: list[Outcome]) -> str:
    areas: dict[str, list[Outcome]] = {}
    for o in outcomes:
        areas.setdefault(o.example.area, []).append(o)
    lines = [f"{'area':<28}{'examples':>9}{'pass':>6}{'%':>8}"]
    for area, group in sorted(areas.items()):
        passed = sum(o.passed for o in group)
        lines.append(f"{area:<28}{len(group):>9}{passed:>6}{100 * passed / len(group):>7.1f}%")
    passed = sum(o.passed for o in outcomes)
    lines.append(f"{'overall':<28}{len(outcomes):>9}{passed:>6}{percent(outcomes):>7.1f}%")
    failures = [o for o in outcomes if not o.passed]
    if failures:
        lines.append("failures:")
        lines += [f"  {o.example.title} [{o.example.section}]: {'; '.join(o.problems)[:400]}"
                  + (f"\n    known documentation error: {o.example.documentation_error}"
                     if o.example.documentation_error else "") for o in failures]
    return "\n".join(lines)


def percent(outcomes: list[Outcome]) -> float:
    return 100 * sum(o.passed for o in outcomes) / len(outcomes) if outcomes else 0.0
