"""File columns, as Microsoft Learn's "Use file column data" describes them: each test fails if the emulator were
more lenient than Dataverse (a size over MaxSizeInKB accepted, chunks answered 200/204 instead of 206, gaps
tolerated)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from senseimig_dagster.sandbox.dataverse_emulator import Catalog, DataverseEmulator, RecordStore, file_columns
from senseimig_dagster_tests.support.constants import EMULATOR_BASE as BASE
from senseimig_dagster_tests.support.web_api import create_contact, error_of

ATTRIBUTES = "/EntityDefinitions(LogicalName='contact')/Attributes"
FILE_TYPE = "Microsoft.Dynamics.CRM.FileAttributeMetadata"
LABEL = {"LocalizedLabels": [{"Label": "X-ray", "LanguageCode": 1033}]}


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[DataverseEmulator]:
    catalog = Catalog.load(column_delay=0)
    store = RecordStore(tmp_path / "dv.sqlite", catalog)
    yield DataverseEmulator(catalog, store)
    store.close()


def add_file_column(client: httpx.Client, schema: str = "smig_XRay", **extra: object) -> None:
    body = {"@odata.type": FILE_TYPE, "SchemaName": schema, "DisplayName": LABEL,
            "RequiredLevel": {"Value": "None"}, **extra}
    r = client.post(ATTRIBUTES, json=body)
    assert r.status_code == 204, r.text


@pytest.fixture
def contact(client: httpx.Client) -> str:
    add_file_column(client, MaxSizeInKB=1)  # 1024 bytes: sizes above it are refused
    return create_contact(client, {"lastname": "Ng"})


def start_chunked(client: httpx.Client, contact: str, name: str = "scan.pdf") -> str:
    r = client.patch(f"/contacts({contact})/smig_xray", params={"x-ms-file-name": name},
                     headers={"x-ms-transfer-mode": "chunked"})
    assert r.status_code == 200, r.text  # "Use file column data": the first chunked request answers 200 OK
    assert r.headers["x-ms-chunk-size"] == "4194304" and r.headers["accept-ranges"] == "bytes"
    assert re.fullmatch(rf"{BASE}/contacts\({contact}\)/smig_xray\?sessiontoken=.+", r.headers["location"])
    return r.headers["location"]


def chunk(client: httpx.Client, location: str, data: bytes, start: int, total: int, **headers: str) -> httpx.Response:
    sent = {"Content-Type": "application/octet-stream", "x-ms-file-name": "scan.pdf",
            "Content-Range": f"bytes {start}-{start + len(data) - 1}/{total}", **headers}
    return client.patch(location, content=data, headers=sent)


def test_file_column_is_created_with_max_size_and_a_read_only_name_column(client: httpx.Client) -> None:
    add_file_column(client, MaxSizeInKB=2048)
    add_file_column(client, "smig_Consent")  # MaxSizeInKB omitted: the documented default
    for column, size in (("smig_xray", 2048), ("smig_consent", 32768)):
        r = client.get(f"{ATTRIBUTES}(LogicalName='{column}')/{FILE_TYPE}", params={"$select": "MaxSizeInKB"})
        assert r.status_code == 200 and r.json()["MaxSizeInKB"] == size
    assert client.get(f"{ATTRIBUTES}(LogicalName='smig_xray')").json()["AttributeTypeName"] == {"Value": "FileType"}
    error_of(client.post(ATTRIBUTES, json={"@odata.type": FILE_TYPE, "SchemaName": "smig_Big", "DisplayName": LABEL,
                                           "MaxSizeInKB": 10_485_761}), 400)
    # Neither the file column nor its name column can be written through a record body.
    error_of(client.post("/contacts", json={"lastname": "Ng", "smig_xray": "x"}), 400)
    error_of(client.post("/contacts", json={"lastname": "Ng", "smig_xray_name": "a.pdf"}), 400)


def test_chunked_upload_is_206_per_chunk_then_204_and_downloads_whole(client: httpx.Client, contact: str) -> None:
    data = bytes(range(256)) * 4  # 1024 bytes: exactly MaxSizeInKB
    location = start_chunked(client, contact)
    statuses = [chunk(client, location, data[s:s + 400], s, len(data)).status_code for s in (0, 400, 800)]
    assert statuses == [206, 206, 204]
    record = client.get(f"/contacts({contact})").json()
    assert uuid.UUID(record["smig_xray"]) and record["smig_xray_name"] == "scan.pdf"
    r = client.get(f"/contacts({contact})/smig_xray/$value")
    assert r.status_code == 200 and r.content == data
    assert (r.headers["x-ms-file-size"], r.headers["x-ms-file-name"], r.headers["mimetype"]) == (
        "1024", "scan.pdf", "application/pdf")
    ranged = client.get(f"/contacts({contact})/smig_xray/$value", headers={"Range": "bytes=1000-1023"})
    assert ranged.status_code == 206 and ranged.content == data[1000:] and ranged.headers["x-ms-chunk-size"]
    # The session is over: its token no longer accepts chunks.
    error_of(chunk(client, location, b"x", 0, 1), 400)


@pytest.mark.parametrize("start, size, total", [(300, 100, 600), (100, 100, 600), (200, 50, 600), (200, 100, 700)],
                         ids=["gap", "overlap", "short-body", "changed-total"])
def test_chunk_that_does_not_continue_the_upload_is_400(client: httpx.Client, contact: str, start: int, size: int,
                                                        total: int) -> None:
    data = b"a" * 600
    location = start_chunked(client, contact)
    assert chunk(client, location, data[:200], 0, 600).status_code == 206
    bad = {"Content-Range": f"bytes {start}-{start + 99}/{total}"}
    error_of(chunk(client, location, data[start:start + size], start, total, **bad), 400)
    # The refused chunk changed nothing: the right continuation still completes the file.
    assert chunk(client, location, data[200:], 200, 600).status_code == 204
    assert client.get(f"/contacts({contact})/smig_xray/$value").content == data


def test_chunk_without_file_name_or_range_is_400(client: httpx.Client, contact: str) -> None:
    location = start_chunked(client, contact)
    error_of(client.patch(location, content=b"abc", headers={"Content-Range": "bytes 0-2/3"}), 400)
    error_of(client.patch(location, content=b"abc", headers={"x-ms-file-name": "scan.pdf"}), 400)
    error_of(client.patch(f"/contacts({contact})/smig_xray", headers={"x-ms-transfer-mode": "chunked"}), 400)


def test_file_over_max_size_is_refused_with_the_documented_error(client: httpx.Client, contact: str) -> None:
    too_big = b"z" * 1025
    single = client.patch(f"/contacts({contact})/smig_xray", content=too_big,
                          headers={"Content-Type": "application/octet-stream", "x-ms-file-name": "big.bin"})
    err = error_of(single, 400)
    assert err == {"code": "0x80044a02", "message": "Attachment file size is too big."}
    location = start_chunked(client, contact)
    assert error_of(chunk(client, location, too_big[:500], 0, len(too_big)), 400)["code"] == "0x80044a02"
    error_of(client.get(f"/contacts({contact})/smig_xray/$value"), 404)  # nothing was stored


def test_single_request_upload_replaces_and_delete_clears(client: httpx.Client, contact: str) -> None:
    headers = {"Content-Type": "application/octet-stream"}
    for name, content in (("a.txt", b"first"), ("b.txt", b"second")):
        r = client.patch(f"/contacts({contact})/smig_xray", content=content, headers={**headers, "x-ms-file-name": name})
        assert r.status_code == 204 and r.content == b""
    r = client.get(f"/contacts({contact})/smig_xray/$value")
    assert (r.content, r.headers["x-ms-file-name"], r.headers["mimetype"]) == (b"second", "b.txt", "text/plain")
    assert client.delete(f"/contacts({contact})/smig_xray").status_code == 204
    assert client.get(f"/contacts({contact})").json()["smig_xray"] is None
    error_of(client.get(f"/contacts({contact})/smig_xray/$value"), 404)
    missing = str(uuid.uuid4())
    err = error_of(client.patch(f"/contacts({missing})/smig_xray", content=b"x", headers={"x-ms-file-name": "a"}), 404)
    assert err["message"] == f"contact With Id = {missing} Does Not Exist"


def test_single_request_above_128_mb_is_refused(client: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    add_file_column(client, MaxSizeInKB=1_048_576)  # a 1 GB column still takes at most 128 MB per request
    contact = create_contact(client, {"lastname": "Ng"})
    monkeypatch.setattr(file_columns, "SINGLE_REQUEST_MAX_BYTES", 8)  # stands for 128 MB, without sending it
    r = client.patch(f"/contacts({contact})/smig_xray", content=b"123456789", headers={"x-ms-file-name": "a.bin"})
    assert error_of(r, 413)["code"] == "0x80044a02"
