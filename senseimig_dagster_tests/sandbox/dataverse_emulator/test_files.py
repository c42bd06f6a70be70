"""Note attachments (Microsoft Learn: "Use file data with Attachment and Note records"): the org's maxuploadfilesize
on every write, block upload and download; each test fails if the emulator were more lenient than Dataverse."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from senseimig_dagster.sandbox.dataverse_emulator.app import DataverseEmulator
from senseimig_dagster.sandbox.dataverse_emulator.seed import load_seed
from senseimig_dagster_tests.support import environments

SEED = load_seed()
ORG = SEED.organization["organizationid"]
NOTE_TYPE = "Microsoft.Dynamics.CRM.annotation"


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[DataverseEmulator]:
    with environments.emulator(tmp_path / "dv.sqlite", key_delay=None, column_delay=None) as app:  # seeded
        yield app


def too_big(r: httpx.Response) -> None:
    assert r.status_code == 400, r.text
    assert r.json() == {"error": {"code": "0x80044a02", "message": "Attachment file size is too big."}}


def set_limit(client: httpx.Client, size: int) -> None:
    assert client.patch(f"/organizations({ORG})", json={"maxuploadfilesize": size}).status_code == 204


def note_id(r: httpx.Response) -> str:
    assert r.status_code == 204, r.text
    return re.search(r"\(([^)]+)\)$", r.headers["OData-EntityId"])[1]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def block_id(n: int) -> str:
    return b64(f"block-{n:06d}".encode())  # equal lengths, as the docs require


def upload(client: httpx.Client, blocks: list[bytes], **target: object) -> httpx.Response:
    r = client.post("/InitializeAnnotationBlocksUpload", json={"Target": {"@odata.type": NOTE_TYPE, **target}})
    assert r.status_code == 200, r.text
    token = r.json()["FileContinuationToken"]
    for n, block in enumerate(blocks):
        r = client.post("/UploadBlock", json={"BlockId": block_id(n), "BlockData": b64(block),
                                              "FileContinuationToken": token})
        assert r.status_code == 204 and r.content == b"", r.text
    return client.post("/CommitAnnotationBlocksUpload", json={
        "Target": {"@odata.type": NOTE_TYPE, **target}, "FileContinuationToken": token,
        "BlockList": [block_id(n) for n in range(len(blocks))]})


# -- the size limit -----------------------------------------------------------------------------------------------
def test_the_default_limit_is_5_mb_of_base64(client: httpx.Client) -> None:
    limit = SEED.organization["maxuploadfilesize"]
    assert limit == 5_242_880
    too_big(client.post("/annotations", json={"subject": "X-ray", "documentbody": "A" * (limit + 1)}))
    note_id(client.post("/annotations", json={"subject": "X-ray", "documentbody": "A" * limit}))


def test_the_limit_is_read_from_the_organization_at_write_time(client: httpx.Client) -> None:
    set_limit(client, 1000)
    too_big(client.post("/annotations", json={"subject": "Scan", "documentbody": "QUJD" * 251}))  # 1004 chars
    note = note_id(client.post("/annotations", json={"subject": "Scan", "documentbody": "QUJD" * 250}))
    too_big(client.patch(f"/annotations({note})", json={"documentbody": "QUJD" * 251}))  # on update as well
    set_limit(client, 2000)
    assert client.patch(f"/annotations({note})", json={"documentbody": "QUJD" * 251}).status_code == 204


def test_filesize_is_set_by_the_platform_and_read_only(client: httpx.Client) -> None:
    note = note_id(client.post("/annotations", json={"subject": "Form", "documentbody": b64(b"0123456789")}))
    assert client.get(f"/annotations({note})", params={"$select": "filesize"}).json()["filesize"] == 10
    assert client.patch(f"/annotations({note})", json={"filesize": 1}).status_code == 400


# -- block upload ---------------------------------------------------------------------------------------------------
def test_block_upload_commits_the_assembled_note(client: httpx.Client) -> None:
    contact = note_id(client.post("/contacts", json={"lastname": "Ng"}))
    blocks = [b"%PDF-" + bytes(range(256)) * 40, b"middle" * 500, b"end"]
    r = upload(client, blocks, subject="Consent form", filename="consent.pdf", mimetype="application/pdf",
               **{"objectid_contact@odata.bind": f"/contacts({contact})"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["@odata.context"].endswith("$metadata#Microsoft.Dynamics.CRM.CommitAnnotationBlocksUploadResponse")
    assert body["FileSizeInBytes"] == sum(map(len, blocks))
    note = body["AnnotationId"]
    value = client.get(f"/annotations({note})/documentbody/$value")
    assert value.status_code == 200 and base64.b64decode(value.text) == b"".join(blocks)
    got = client.get(f"/annotations({note})", params={"$select": "subject,filename,_objectid_value"}).json()
    assert (got["subject"], got["filename"], got["_objectid_value"]) == ("Consent form", "consent.pdf", contact)


def test_block_upload_can_fill_an_existing_note(client: httpx.Client) -> None:
    note = note_id(client.post("/annotations", json={"subject": "Placeholder"}))
    r = upload(client, [b"abc", b"def"], annotationid=note)
    assert r.status_code == 200 and r.json()["AnnotationId"] == note
    assert base64.b64decode(client.get(f"/annotations({note})/documentbody/$value").text) == b"abcdef"


def test_commit_over_the_limit_is_0x80044a02_and_creates_nothing(client: httpx.Client) -> None:
    set_limit(client, 100)
    too_big(upload(client, [b"x" * 60, b"y" * 60], subject="Panoramic"))
    assert client.get("/annotations/$count").text == "0"


def test_upload_block_rules(client: httpx.Client) -> None:
    r = client.post("/InitializeAnnotationBlocksUpload", json={"Target": {"@odata.type": NOTE_TYPE, "subject": "S"}})
    token = r.json()["FileContinuationToken"]

    def put(block_id: str, data: bytes, file_token: str = token) -> httpx.Response:
        return client.post("/UploadBlock", json={"BlockId": block_id, "BlockData": b64(data),
                                                 "FileContinuationToken": file_token})

    assert put(block_id(0), b"x" * (4 * 1024 * 1024 + 1)).status_code == 400  # blocks are at most 4 MB
    assert put(b64(b"i" * 65), b"x").status_code == 400  # BlockId: base64 of at most 64 bytes
    assert put(block_id(0), b"x").status_code == 204
    assert put(b64(b"short"), b"x").status_code == 400  # BlockIds of one file have equal length
    assert put(block_id(1), b"x", "not-a-token").status_code == 400
    r = client.post("/CommitAnnotationBlocksUpload", json={
        "Target": {"@odata.type": NOTE_TYPE}, "FileContinuationToken": token, "BlockList": [block_id(0), block_id(9)]})
    assert r.status_code == 400 and r.json()["error"]["code"]  # a block that was never uploaded


def test_the_target_must_be_an_annotation(client: httpx.Client) -> None:
    r = client.post("/InitializeAnnotationBlocksUpload", json={"Target": {"subject": "S"}})
    assert r.status_code == 400 and set(r.json()["error"]) == {"code", "message"}
    r = client.get("/InitializeAnnotationBlocksUpload")
    assert r.status_code == 405


# -- download ---------------------------------------------------------------------------------------------------------
def test_block_download_and_value_of_a_missing_note(client: httpx.Client) -> None:
    content = bytes(range(256)) * 10
    note = note_id(client.post("/annotations", json={"subject": "S", "filename": "a.bin", "documentbody": b64(content)}))
    r = client.post("/InitializeAnnotationBlocksDownload", json={"Target": {"@odata.type": NOTE_TYPE, "annotationid": note}})
    assert r.status_code == 200, r.text
    assert (r.json()["FileSizeInBytes"], r.json()["FileName"]) == (len(content), "a.bin")
    token, parts = r.json()["FileContinuationToken"], []
    for offset in range(0, len(content), 1000):
        r = client.post("/DownloadBlock", json={"Offset": offset, "BlockLength": 1000, "FileContinuationToken": token})
        parts.append(base64.b64decode(r.json()["Data"]))
    assert b"".join(parts) == content
    missing = "00000000-0000-0000-0000-0000000000aa"
    r = client.get(f"/annotations({missing})/documentbody/$value")
    assert r.status_code == 404 and r.json()["error"]["code"] == "0x80040217"
