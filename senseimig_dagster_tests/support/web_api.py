"""Speaking the Dataverse Web API to the emulator by hand, in process: a client, error bodies, and ``$batch``
requests built and responses parsed as the OData batch format describes them (multipart/mixed, change sets,
Content-ID references)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from senseimig_dagster_tests.support.constants import EMULATOR_BASE


def web_api_client(app: Callable, **options: object) -> httpx.Client:
    """A plain HTTP client of ``app`` (the emulator) at its Web API root, in process."""
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url=EMULATOR_BASE, **options)


def error_of(r: httpx.Response, status: int) -> dict:
    """The ``error`` of a Web API error response, which must have ``status`` and Dataverse's error shape."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json; odata.metadata=minimal"
    assert r.headers["odata-version"] == "4.0"
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return body["error"]


def create_contact(client: httpx.Client, body: dict) -> str:
    """POST a contact; its id from ``OData-EntityId`` (204, no body)."""
    r = client.post("/contacts", json=body)
    assert r.status_code == 204, r.text
    return re.fullmatch(rf"{EMULATOR_BASE}/contacts\((.+)\)", r.headers["odata-entityid"])[1]


# -- building requests --------------------------------------------------------------------------------------
def request(method: str, url: str, body: dict | None = None, content_id: str | None = None,
            headers: dict[str, str] | None = None) -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"{method} {url} HTTP/1.1"]
    if body is not None:
        lines.append("Content-Type: application/json; type=entry")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines.append("")
    lines.append("" if body is None else json.dumps(body))
    return "\r\n".join(lines) + ("\r\n" if body is None else "")


def changeset(boundary: str, *parts: str) -> str:
    return (f"Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"
            + "".join(f"--{boundary}\r\n{p}\r\n" for p in parts) + f"--{boundary}--")


def batch_body(boundary: str, *parts: str) -> str:
    return "".join(f"--{boundary}\r\n{p}\r\n" for p in parts) + f"--{boundary}--\r\n"


def post_batch(client: httpx.Client, *parts: str, boundary: str = "batch_AAA123", prefer: str | None = None,
               lf_only: bool = False) -> httpx.Response:
    body = batch_body(boundary, *parts)
    if lf_only:
        body = body.replace("\r\n", "\n")
    headers = {"Content-Type": f'multipart/mixed; boundary="{boundary}"'}
    if prefer:
        headers["Prefer"] = prefer
    return client.post("/$batch", content=body.encode(), headers=headers)


# -- reading responses --------------------------------------------------------------------------------------
@dataclass
class Part:
    headers: dict[str, str]  # MIME headers, lower-cased names
    status: int
    http_headers: dict[str, str]  # inner response headers, lower-cased names
    body: str
    changeset: list[Part] | None = None


def boundary_of(content_type: str) -> str:
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    assert match, content_type
    return match[1]


def split(text: str, boundary: str) -> list[str]:
    assert text.rstrip().endswith(f"--{boundary}--"), text
    chunks = text.split(f"--{boundary}")
    return [c.removeprefix("\r\n").removesuffix("\r\n") for c in chunks[1:-1]]


def head(text: str) -> tuple[dict[str, str], str]:
    block, _, rest = text.partition("\r\n\r\n")
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in block.split("\r\n"))}, rest


def parse_parts(content_type: str, text: str) -> list[Part]:
    out = []
    for chunk in split(text, boundary_of(content_type)):
        headers, rest = head(chunk)
        if headers["content-type"].startswith("multipart/mixed"):
            assert boundary_of(headers["content-type"]).startswith("changesetresponse_")
            out.append(Part(headers, 0, {}, "", parse_parts(headers["content-type"], rest)))
            continue
        assert headers["content-type"] == "application/http"
        assert headers["content-transfer-encoding"] == "binary"
        status_line, _, rest = rest.partition("\r\n")
        assert re.fullmatch(r"HTTP/1\.1 \d{3} [A-Za-z ]+", status_line), status_line
        http_block, _, body = rest.partition("\r\n\r\n")
        http_headers = {k.strip().lower(): v.strip()
                        for k, _, v in (line.partition(":") for line in http_block.split("\r\n") if line)}
        out.append(Part(headers, int(status_line.split()[1]), http_headers, body))
    return out


def parts_of(r: httpx.Response) -> list[Part]:
    assert r.headers["content-type"].startswith("multipart/mixed; boundary=batchresponse_"), r.text
    return parse_parts(r.headers["content-type"], r.text)
