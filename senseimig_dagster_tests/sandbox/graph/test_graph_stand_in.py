"""Wire behaviour of the Graph drive stand-in (in-process over httpx's WSGI transport, tokens from the Entra
stand-in): statuses, Graph error codes, fragment rules, size limits, names, persistence."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import httpx
import pytest

from senseimig_dagster.graph.quickxor import QuickXorHash, quick_xor_hash
from senseimig_dagster.sandbox.entra import EntraStandIn
from senseimig_dagster.sandbox.graph import DriveStore, GraphStandIn, SiteSpec
from senseimig_dagster.sandbox.graph.server import single_port_app

TENANT = "22222222-2222-4333-8444-555555555555"
Q = 327_680
SITE = "/v1.0/sites/contoso.sharepoint.com:/sites/dental"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Env:
    def __init__(self, db: Path, clock: Clock, **limits) -> None:
        self.entra = EntraStandIn(apps={"app": "pw"}, tenant=TENANT, seed=1)
        self.store = DriveStore(db, clock=clock)
        self.graph = GraphStandIn(self.store, token_validator=self.entra.token_info, **limits)
        self.http = httpx.Client(transport=httpx.WSGITransport(app=single_port_app(self.entra, self.graph)),
                                 base_url="https://graph.test")
        self.token = self.token_for("https://graph.microsoft.com/.default")
        self.auth = {"Authorization": f"Bearer {self.token}"}
        site = self.get(SITE).json()
        self.drive = next(d for d in self.get(f"/v1.0/sites/{site['id']}/drives").json()["value"]
                          if d["name"] == "contact")
        self.root = self.get(f"/v1.0/drives/{self.drive['id']}/root").json()["id"]

    def token_for(self, scope: str) -> str:
        r = self.http.post(f"/{TENANT}/oauth2/v2.0/token", data={"grant_type": "client_credentials",
                                                                 "client_id": "app", "client_secret": "pw",
                                                                 "scope": scope})
        return r.json()["access_token"]

    def get(self, path: str, **kw) -> httpx.Response:
        return self.http.get(path, headers={**self.auth, **kw.pop("headers", {})}, **kw)

    def call(self, method: str, path: str, **kw) -> httpx.Response:
        return self.http.request(method, path, headers={**self.auth, **kw.pop("headers", {})}, **kw)

    def items(self, suffix: str = "") -> str:
        return f"/v1.0/drives/{self.drive['id']}/items/{self.root}{suffix}"

    def session(self, name: str, **item) -> str:
        r = self.call("POST", self.items(f":/{name}:/createUploadSession"), json={"item": item} if item else None)
        assert r.status_code == 200, r.text
        assert r.json()["nextExpectedRanges"] == ["0-"] and r.json()["expirationDateTime"].endswith("Z")
        return r.json()["uploadUrl"]

    def fragment(self, url: str, data: bytes, start: int, total: int, **headers) -> httpx.Response:
        return self.http.put(url, content=data[start:start + headers.pop("length", Q)] if data else b"",
                             headers={"Content-Range": f"bytes {start}-{start + len(data[start:start + Q]) - 1}"
                                                       f"/{total}", **headers})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def env(tmp_path: Path, clock: Clock) -> Env:
    e = Env(tmp_path / "g.sqlite", clock)
    yield e
    e.store.close()


def _code(r: httpx.Response) -> tuple[int, str, str | None]:
    err = r.json()["error"]
    return r.status_code, err["code"], err["innerError"].get("code")


# -- QuickXorHash ---------------------------------------------------------------------------------------------------
def test_quickxorhash_known_vector_and_streaming() -> None:
    # "hello world" -> these 20 bytes in two public implementations (the quickxorhash Rust crate's doc example and
    # the Python quickxorhash package's README, a wrapper of the C library), both from Microsoft's published code.
    expected = bytes([104, 40, 3, 27, 216, 240, 6, 16, 220, 225, 13, 114, 107, 3, 25, 0, 0, 0, 0, 0])
    assert quick_xor_hash(b"hello world") == base64.b64encode(expected).decode()
    data = os.urandom(5000)
    h = QuickXorHash()
    for i in range(0, len(data), 333):  # chunks that don't align with the 160-byte period
        h.update(data[i:i + 333])
    assert h.b64digest() == quick_xor_hash(data) != quick_xor_hash(data[:-1] + bytes([data[-1] ^ 1]))


# -- auth and sites ---------------------------------------------------------------------------------------------
def test_bearer_required_with_graph_error_shape(env: Env) -> None:
    r = env.http.get(SITE)
    assert _code(r)[:2] == (401, "InvalidAuthenticationToken")
    assert r.json()["error"]["innerError"]["request-id"] == r.headers["request-id"]
    other = env.token_for("https://org.crm.dynamics.com/.default")  # a valid token for another resource
    r = env.http.get(SITE, headers={"Authorization": f"Bearer {other}"})
    assert _code(r)[:2] == (401, "InvalidAuthenticationToken")


def test_site_drives_and_unknown_site(env: Env) -> None:
    site = env.get(SITE).json()
    host, site_guid, web_guid = site["id"].split(",")
    assert host == "contoso.sharepoint.com" and len(site_guid) == 36 == len(web_guid)
    assert site["webUrl"] == "https://contoso.sharepoint.com/sites/dental"
    assert env.drive["webUrl"] == "https://contoso.sharepoint.com/sites/dental/contact"
    assert env.drive["id"].startswith("b!") and env.drive["driveType"] == "documentLibrary"
    assert _code(env.get("/v1.0/sites/contoso.sharepoint.com:/sites/nope"))[:2] == (404, "itemNotFound")
    assert env.get("/v1.0/drives/b!nope").status_code == 404


# -- folders and names --------------------------------------------------------------------------------------------
def test_folder_create_and_conflict_behaviours(env: Env) -> None:
    def post(name: str, behaviour: str | None = None) -> httpx.Response:
        body = {"name": name, "folder": {}}
        if behaviour:
            body["@microsoft.graph.conflictBehavior"] = behaviour
        return env.call("POST", env.items("/children"), json=body)

    r = post("Ann_01")
    assert r.status_code == 201 and r.json()["folder"] == {"childCount": 0}
    assert r.json()["parentReference"]["id"] == env.root and r.json()["eTag"].startswith('"{')
    assert _code(post("Ann_01", "fail"))[:2] == (409, "nameAlreadyExists")
    assert _code(post("ann_01"))[:2] == (409, "nameAlreadyExists")  # fail is the default; names ignore case
    renamed = post("Ann_01", "rename")
    assert renamed.status_code == 201 and renamed.json()["name"] == "Ann_01 1"
    assert env.get(f"/v1.0/drives/{env.drive['id']}/root:/Ann_01").json()["id"] == r.json()["id"]
    children = env.get(env.items("/children")).json()["value"]
    assert [c["name"] for c in children] == ["Ann_01", "Ann_01 1"]


@pytest.mark.parametrize("name", ['a"b', "a*b", "a<b", "a>b", "a?b", "a|b", "a\\b", "CON", "lpt1.txt", ".lock",
                                  "desktop.ini", "x_vti_y", "~$draft.docx", " lead", "tail ", "dot.", "a:b", "a/b"])
def test_forbidden_names_400(env: Env, name: str) -> None:
    r = env.call("POST", env.items("/children"), json={"name": name, "folder": {}})
    assert _code(r) == (400, "invalidRequest", "invalidPath")
    assert name.strip() not in r.json()["error"]["message"] or not name.strip()


def test_path_over_400_characters_400(env: Env) -> None:
    # /sites/dental/contact/ is 22 characters: a 378-character name makes 400 exactly, which is fine.
    ok = env.call("PUT", env.items(f":/{'n' * 374}.pdf:/content"), content=b"x")
    assert ok.status_code == 201
    r = env.call("PUT", env.items(f":/{'n' * 375}.pdf:/content"), content=b"x")
    assert _code(r) == (400, "invalidRequest", "pathIsTooLong")


# -- simple upload and download --------------------------------------------------------------------------------
def test_simple_upload_created_then_replaced_and_download(env: Env) -> None:
    data = os.urandom(5000)
    r = env.call("PUT", env.items(":/scan.pdf:/content"), content=data)
    assert r.status_code == 201
    item = r.json()
    assert item["size"] == 5000 and item["file"]["mimeType"] == "application/pdf"
    assert item["file"]["hashes"] == {"quickXorHash": quick_xor_hash(data)}
    assert item["webUrl"] == "https://contoso.sharepoint.com/sites/dental/contact/scan.pdf"
    again = env.call("PUT", env.items(":/SCAN.pdf:/content"), content=data[:10])
    assert again.status_code == 200 and again.json()["id"] == item["id"] and again.json()["eTag"] != item["eTag"]
    failing = env.call("PUT", env.items(":/scan.pdf:/content"), content=b"x",
                       params={"@microsoft.graph.conflictBehavior": "fail"})
    assert _code(failing)[:2] == (409, "nameAlreadyExists")

    redirect = env.get(f"/v1.0/drives/{env.drive['id']}/items/{item['id']}/content")
    assert redirect.status_code == 302
    location = redirect.headers["Location"]
    assert env.http.get(location).content == data[:10]  # no Authorization needed
    part = env.http.get(location, headers={"Range": "bytes=2-5"})
    assert part.status_code == 206 and part.content == data[2:6] and part.headers["Content-Range"] == "bytes 2-5/10"
    beyond = env.http.get(location, headers={"Range": "bytes=10-"})
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == "bytes */10"


def test_simple_upload_size_limit_413(tmp_path: Path, clock: Clock) -> None:
    env = Env(tmp_path / "s.sqlite", clock, simple_upload_limit=1000)
    assert env.call("PUT", env.items(":/a.bin:/content"), content=b"x" * 1000).status_code == 201
    r = env.call("PUT", env.items(":/b.bin:/content"), content=b"x" * 1001)
    assert _code(r) == (413, "invalidRequest", "maxFileSizeExceeded")


# -- upload sessions ---------------------------------------------------------------------------------------------
def test_upload_session_fragment_rules(env: Env) -> None:
    data = os.urandom(3 * Q + 77)
    total = len(data)
    url = env.session("ortho.dcm")
    assert url.startswith("https://graph.test/_upload/")
    with_bearer = env.http.put(url, content=data[:Q], headers={"Content-Range": f"bytes 0-{Q - 1}/{total}",
                                                               **env.auth})
    assert with_bearer.status_code == 401  # the uploadUrl is pre-authenticated; a bearer token is refused
    odd = env.http.put(url, content=data[:1000], headers={"Content-Range": f"bytes 0-999/{total}"})
    assert _code(odd)[:2] == (400, "invalidRequest")  # not a multiple of 320 KiB and not the last
    first = env.fragment(url, data, 0, total)
    assert first.status_code == 202 and first.json()["nextExpectedRanges"] == [f"{Q}-"]
    assert _code(env.fragment(url, data, 0, total)) == (416, "invalidRange", "fragmentOverlap")
    assert _code(env.fragment(url, data, 2 * Q, total)) == (416, "invalidRange", "fragmentOutOfOrder")
    assert _code(env.fragment(url, data, Q, total + 1)) == (400, "invalidRequest", "fragmentLengthMismatch")
    status = env.http.get(url)
    assert status.status_code == 200 and status.json()["nextExpectedRanges"] == [f"{Q}-"]
    assert env.fragment(url, data, Q, total).status_code == 202
    assert env.fragment(url, data, 2 * Q, total).status_code == 202
    done = env.fragment(url, data, 3 * Q, total)
    assert done.status_code == 201, done.text
    assert done.json()["size"] == total and done.json()["file"]["hashes"]["quickXorHash"] == quick_xor_hash(data)
    assert _code(env.http.get(url)) == (404, "itemNotFound", "uploadSessionNotFound")  # completed: gone


def test_fragment_over_60_mib_413(env: Env) -> None:
    url = env.session("big.bin")
    size = 60 * 1024 * 1024 + Q
    r = env.http.put(url, content=bytes(size), headers={"Content-Range": f"bytes 0-{size - 1}/{size * 2}"})
    assert _code(r) == (413, "invalidRequest", "maxFragmentLengthExceeded")


def test_total_over_max_file_size_413(tmp_path: Path, clock: Clock) -> None:
    env = Env(tmp_path / "m.sqlite", clock, max_file_size=2 * Q)
    url = env.session("big.bin")
    r = env.http.put(url, content=bytes(Q), headers={"Content-Range": f"bytes 0-{Q - 1}/{2 * Q + 1}"})
    assert _code(r) == (413, "invalidRequest", "maxFileSizeExceeded")


def test_replace_via_session_returns_200_and_fail_conflicts(env: Env) -> None:
    assert env.call("PUT", env.items(":/x.bin:/content"), content=b"old").status_code == 201
    url = env.session("x.bin", **{"@microsoft.graph.conflictBehavior": "replace"})
    r = env.http.put(url, content=b"new!", headers={"Content-Range": "bytes 0-3/4"})
    assert r.status_code == 200 and r.json()["size"] == 4
    r = env.call("POST", env.items(":/x.bin:/createUploadSession"),
                 json={"item": {"@microsoft.graph.conflictBehavior": "fail"}})
    assert _code(r)[:2] == (409, "nameAlreadyExists")


def test_cancel_and_expiry_404(env: Env, clock: Clock) -> None:
    url = env.session("c.bin")
    assert env.http.delete(url).status_code == 204
    assert _code(env.http.get(url)) == (404, "itemNotFound", "uploadSessionNotFound")
    url = env.session("d.bin")
    data = os.urandom(2 * Q)
    assert env.fragment(url, data, 0, len(data)).status_code == 202
    clock.now += env.graph.session_lifetime - 1  # each fragment extends the expiry
    assert env.http.get(url).status_code == 200
    clock.now += 2
    assert _code(env.fragment(url, data, Q, len(data))) == (404, "itemNotFound", "uploadSessionNotFound")


def test_delete_folder_recursively(env: Env) -> None:
    folder = env.call("POST", env.items("/children"), json={"name": "P", "folder": {}}).json()
    base = f"/v1.0/drives/{env.drive['id']}/items"
    file = env.call("PUT", f"{base}/{folder['id']}:/a.pdf:/content", content=b"abc").json()
    assert env.get(f"{base}/{folder['id']}").json()["folder"]["childCount"] == 1
    assert env.call("DELETE", f"{base}/{folder['id']}").status_code == 204
    assert _code(env.get(f"{base}/{file['id']}"))[:2] == (404, "itemNotFound")
    assert env.call("DELETE", f"{base}/{folder['id']}").status_code == 404


def test_restart_keeps_sites_files_and_open_sessions(tmp_path: Path, clock: Clock) -> None:
    db = tmp_path / "r.sqlite"
    env = Env(db, clock)
    drive_id = env.drive["id"]
    data = os.urandom(2 * Q + 5)
    stored = env.call("PUT", env.items(":/keep.pdf:/content"), content=data).json()
    url = env.session("resume.bin")
    assert env.fragment(url, data, 0, len(data)).status_code == 202
    env.store.close()

    again = Env(db, clock)  # a new store and app over the same file
    assert again.drive["id"] == drive_id
    location = again.get(f"/v1.0/drives/{drive_id}/items/{stored['id']}/content").headers["Location"]
    assert again.http.get(location).content == data
    assert again.http.get(url).json()["nextExpectedRanges"] == [f"{Q}-"]
    assert again.fragment(url, data, Q, len(data)).status_code == 202
    assert again.fragment(url, data, 2 * Q, len(data)).status_code == 201
    again.store.close()


def test_configurable_sites(tmp_path: Path, clock: Clock) -> None:
    entra = EntraStandIn(apps={"app": "pw"}, tenant=TENANT)
    store = DriveStore(tmp_path / "c.sqlite", clock=clock)
    GraphStandIn(store, token_validator=entra.token_info,
                 sites=[SiteSpec("fabrikam.sharepoint.com", "/sites/imaging", ("contact", "account"))])
    site = store.site_by_path("fabrikam.sharepoint.com", "/sites/imaging")
    assert site is not None and [d.name for d in store.drives(site.id)] == ["account", "contact"]
    assert store.site_by_path("contoso.sharepoint.com", "/sites/dental") is None
    store.close()


def test_throttle_429_with_retry_after(tmp_path: Path, clock: Clock) -> None:
    from senseimig_dagster.sandbox.graph import Throttle

    env = Env(tmp_path / "t.sqlite", clock, throttle=Throttle(limit=5, window=10))  # Env's setup used 3
    assert env.get(SITE).status_code == 200 and env.get(SITE).status_code == 200
    r = env.get(SITE)
    assert _code(r) == (429, "activityLimitReached", "throttledRequest") and r.headers["Retry-After"] == "10"
    clock.now += 10
    assert env.get(SITE).status_code == 200
