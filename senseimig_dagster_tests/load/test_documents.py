"""The document load (load/document_routes.py, load/document_writer.py) against the Dataverse emulator in-process:
routing by the organization's own limit, notes in one request and in blocks, SharePoint locations, every bad-file
case, read-back verification, re-runs and rollback."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import orjson
import pytest

from senseimig_dagster.audit.log import AuditLog
from senseimig_dagster.audit.rollback import GRAPH_FILES, GRAPH_FOLDERS, Rollback
from senseimig_dagster.dataverse import DataverseClient
from senseimig_dagster.dataverse.metadata import DataverseMetadata
from senseimig_dagster.dataverse.schema_setup import SchemaSetup
from senseimig_dagster.load.document_routes import (
    BLOCK_BYTES,
    NOTE_SINGLE_MAX,
    SharePointLocations,
    SharePointNotConfigured,
    SourceMissing,
    assign_file_names,
    base64_length,
    block_ids,
    folder_name,
    max_upload_file_size,
    route,
    sanitise_file_name,
)
from senseimig_dagster.load.document_writer import DocumentInput, DocumentLoader, PreviousDocument, meta_hash
from senseimig_dagster.load.frames import deterministic_id
from senseimig_dagster.mapping.schema_plan import default_plan
from senseimig_dagster.objects import get
from senseimig_dagster.privacy.encryption import digest_key
from senseimig_dagster.resources import AuditStore
from senseimig_dagster.sandbox.dataverse_emulator import Catalog, DataverseEmulator, RecordStore
from senseimig_dagster.sandbox.dataverse_emulator.seed import (
    apply_seed,
    enable_document_management,
    load_seed,
)
from senseimig_dagster_tests.support.constants import EMULATOR_URL, SITE_URL

DEFAULT_LIMIT = 5_242_880


@dataclass
class Env:
    client: DataverseClient
    store: RecordStore
    requests: list[tuple[str, str, bytes]]  # method, path, body
    audit: AuditStore

    def contact(self, source_id: str) -> str:
        return self.client.create("contacts", {"lastname": "Doe", "smig_sourcesystemid": source_id})

    def actions(self, name: str) -> list[dict]:
        return [orjson.loads(b) for m, p, b in self.requests if m == "POST" and p.endswith("/" + name)]

    def set_limit(self, value: int) -> None:
        org = next(self.client.query("organizations", ["organizationid"]))["organizationid"]
        self.client.update("organizations", org, {"maxuploadfilesize": value})


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    catalog = Catalog.load()
    catalog.key_delay = catalog.column_delay = 0
    store = RecordStore(tmp_path / "dv.sqlite", catalog)
    # An environment before SharePoint setup (each test makes the site with sharepoint_site), with document
    # management on for contact (the regardingobjectid_contact lookup; seed.enable_document_management).
    apply_seed(store, replace(load_seed(), sharepoint=None))
    enable_document_management(catalog, ["contact"])
    app = DataverseEmulator(catalog, store)
    requests: list[tuple[str, str, bytes]] = []

    def recording(environ: dict, start_response: Callable) -> object:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        import io

        environ["wsgi.input"] = io.BytesIO(body)
        requests.append((environ["REQUEST_METHOD"], environ["PATH_INFO"], body))
        return app(environ, start_response)

    with DataverseClient(EMULATOR_URL, None, transport=httpx.WSGITransport(app=recording)) as client:
        SchemaSetup(DataverseMetadata(client), default_plan()).run()
        audit = AuditStore(path=str(tmp_path / "audit.duckdb"))
        requests.clear()
        yield Env(client, store, requests, audit)
    store.close()


def sharepoint_site(client: DataverseClient) -> str:
    """What Dynamics' SharePoint setup creates once: the default site and the contact library's location."""
    site = client.create("sharepointsites", {"name": "Default Site", "absoluteurl": SITE_URL, "isdefault": True})
    return client.create("sharepointdocumentlocations", {
        "name": "Documents on Default Site", "relativeurl": "contact",
        "parentsiteorlocation_sharepointsite@odata.bind": f"/sharepointsites({site})"})


def content_of(source_id: str, size: int) -> bytes:
    block = hashlib.sha256(source_id.encode()).digest() * 128
    return (block * (size // len(block) + 1))[:size]


@dataclass
class Source:
    """Sensei's content endpoint: bytes per id; ``missing`` answer 404; ``fetched`` records every call."""

    files: dict[str, bytes] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)
    fetched: list[str] = field(default_factory=list)

    def __call__(self, source_id: str) -> Iterator[bytes]:
        self.fetched.append(source_id)
        if source_id in self.missing:
            raise SourceMissing(source_id)
        data = self.files[source_id]
        for start in range(0, len(data), 1 << 20):
            yield data[start:start + (1 << 20)]


def doc(source: Source, source_id: str, size: int, patient: str = "p1", *, mime: str = "application/pdf",
        name: str = "scan.pdf", sha: str | None = None, store: bool = True) -> DocumentInput:
    data = content_of(source_id, size)
    if store:
        source.files[source_id] = data
    return DocumentInput(source_id, patient, name, mime, size, sha or hashlib.sha256(data).hexdigest(),
                         {"subject": "Consent", "filename": name, "mimetype": mime, "isdocument": True,
                          "smig_sourcesystemid": source_id,
                          "objectid_contact@odata.bind": f"/contacts(smig_sourcesystemid='{patient}')"},
                         {"overriddencreatedon": "2020-01-02T03:04:05Z"})


@dataclass
class FakeDrive:
    """GraphDrive's interface over a dict, for the loader's own logic (the wire is tested with the stand-in)."""

    library_url: str = SITE_URL + "/contact"
    items: dict[str, tuple[str, str, bytes]] = field(default_factory=dict)  # id -> folder, name, bytes
    folders: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    corrupt: bool = False

    def make_folder(self, folder: str) -> tuple[str, bool]:
        created = folder not in self.folders
        if created:
            self.folders.append(folder)
        return f"folder-{folder}", created

    def delete_folder_if_empty(self, item_id: str) -> str:
        folder = item_id.removeprefix("folder-")
        if folder not in self.folders:
            return "absent"
        if any(f == folder for f, _, _ in self.items.values()):
            return "not_empty"
        self.folders.remove(folder)
        return "deleted"

    def upload(self, folder: str, name: str, content: Callable[[int, int], bytes], size: int):
        data = b"".join(content(o, min(327_680, size - o)) for o in range(0, size, 327_680))
        item_id = next((i for i, (f, n, _) in self.items.items() if (f, n.lower()) == (folder, name.lower())),
                       f"item{len(self.items) + 1}")
        self.items[item_id] = (folder, name, data[:-1] + b"!" if self.corrupt else data)
        return type("DriveFile", (), {"id": item_id, "name": name, "size": size})()

    def download(self, item_id: str) -> Iterator[bytes]:
        yield self.items[item_id][2]

    def delete(self, item_id: str) -> None:
        self.deleted.append(item_id)
        self.items.pop(item_id, None)


def loader(env: Env, source: Source, conn, drive: FakeDrive | None = None, **kw) -> DocumentLoader:
    return DocumentLoader(env.client, source, AuditLog(conn), "run-1", "dataverse/document", drive=drive, **kw)


# -- routing and names (pure) ----------------------------------------------------------------------------------
def test_route_measures_base64_against_the_limit_and_sends_imaging_to_sharepoint() -> None:
    single_max = NOTE_SINGLE_MAX * 3 // 4  # raw bytes whose base64 is exactly 4 MiB
    assert base64_length(single_max) == NOTE_SINGLE_MAX
    assert route(single_max, "application/pdf", DEFAULT_LIMIT) == "note"
    assert route(single_max + 1, "application/pdf", DEFAULT_LIMIT) == "note_blocks"
    # 5 MB of base64 is 3,932,160 raw bytes: one byte more no longer fits a note at the default limit
    assert route(3_932_160, "application/pdf", DEFAULT_LIMIT) == "note_blocks"
    assert route(3_932_161, "application/pdf", DEFAULT_LIMIT) == "sharepoint"
    assert route(10_000, "application/dicom", DEFAULT_LIMIT) == "sharepoint"
    assert route(3_932_161, "application/pdf", 131_072_000) == "note_blocks"


def test_names_sharepoint_forbids_are_sanitised_and_repeats_numbered_stably() -> None:
    assert sanitise_file_name('FMX: 2024-01-02?.jpg') == "FMX_ 2024-01-02_.jpg"
    assert sanitise_file_name(" con.pdf ") == "_con.pdf"
    assert sanitise_file_name("~$draft.docx") == "_draft.docx"
    assert sanitise_file_name("x_VTI_y.pdf") == "x_vti-y.pdf"
    from senseimig_dagster.graph.names import valid_sharepoint_name  # the rules the Graph stand-in enforces

    nasty = ['a"b', "a*b", "a:b", "a<b>", "a?b", "a/b", "a\\b", "a|b", " lead", "trail ", "dots...", "CON",
             "nul.txt", "LPT1.pdf", ".lock", "desktop.ini", "~$x.docx", "_vti_x", "tab\tx", "", "x" * 500 + ".pdf"]
    assert {n: valid_sharepoint_name(sanitise_file_name(n)) for n in nasty} == dict.fromkeys(nasty)
    assert sanitise_file_name("notes.") == "notes"
    assert len(sanitise_file_name("a" * 300 + ".pdf")) == 200 and sanitise_file_name("a" * 300 + ".pdf")[-4:] == ".pdf"
    docs = [("d3", "F", "scan.pdf"), ("d1", "F", "Scan.pdf"), ("d2", "F", "scan.pdf"), ("d4", "G", "scan.pdf"),
            ("d5", "F", "a|b.pdf")]
    names = assign_file_names(docs)
    assert names == {"d1": ("Scan.pdf", []), "d2": ("scan (2).pdf", ["renamed_duplicate"]),
                     "d3": ("scan (3).pdf", ["renamed_duplicate"]), "d4": ("scan.pdf", []),
                     "d5": ("a_b.pdf", ["renamed_forbidden_characters"])}
    assert assign_file_names(list(reversed(docs))) == names  # stable whatever the input order
    assert folder_name("5eed0000-aaaa-4000-8000-00000000abcd") == "5EED0000AAAA4000800000000000ABCD"


def test_block_ids_are_base64_of_equal_length() -> None:
    ids = block_ids(12)
    assert len({len(i) for i in ids}) == 1 and len(set(ids)) == 12
    assert all(len(base64.b64decode(i)) <= 64 for i in ids)


# -- notes over the Web API -------------------------------------------------------------------------------------
def test_limit_is_read_from_the_organization_not_assumed(env: Env) -> None:
    assert max_upload_file_size(env.client) == DEFAULT_LIMIT
    env.set_limit(1_000_000)
    assert max_upload_file_size(env.client) == 1_000_000
    env.contact("p1")
    source = Source()
    with env.audit.connect() as conn:
        results = loader(env, source, conn, drive=None).plan([doc(source, "d1", 800_000)])
    assert results == {"d1": "sharepoint"}  # 1,066,668 base64 chars: a note at 5 MB, not at this environment's 1 MB


def test_small_note_goes_in_one_request_with_its_body_and_reads_back(env: Env) -> None:
    env.contact("p1")
    source = Source()
    with env.audit.connect() as conn:
        [result] = loader(env, source, conn).load([doc(source, "d1", 20_000)])
        writes = AuditLog(conn).writes()
    note_id = deterministic_id("annotation", "d1")
    assert (result.outcome, result.note_id, result.verified, result.reason) == ("note", note_id, True, None)
    posts = [orjson.loads(b) for m, p, b in env.requests if m == "POST" and p.endswith("/annotations")]
    assert len(posts) == 1 and base64.b64decode(posts[0]["documentbody"]) == source.files["d1"]
    assert posts[0]["annotationid"] == note_id and posts[0]["overriddencreatedon"] == "2020-01-02T03:04:05Z"
    assert not env.actions("UploadBlock")
    stored = env.client.retrieve("annotations", note_id, ["filesize", "_objectid_value", "isdocument"])
    assert stored["filesize"] == 20_000 and stored["isdocument"] is True
    assert [(w.table, w.operation, w.outcome, w.dataverse_id) for w in writes] == [
        ("annotation", "create", "ok", note_id)]
    assert writes[0].after_version is not None


def test_large_note_goes_in_blocks_of_at_most_4_mib_committed_to_the_note(env: Env) -> None:
    env.set_limit(10_000_000)
    env.contact("p1")
    source = Source()
    size = BLOCK_BYTES + 700_000  # two blocks
    with env.audit.connect() as conn:
        [result] = loader(env, source, conn).load([doc(source, "d1", size)])
    note_id = deterministic_id("annotation", "d1")
    assert (result.outcome, result.verified) == ("note_blocks", True)
    [created] = [orjson.loads(b) for m, p, b in env.requests if m == "POST" and p.endswith("/annotations")]
    assert "documentbody" not in created  # the note first, without its body
    blocks = env.actions("UploadBlock")
    assert [len(base64.b64decode(b["BlockData"])) for b in blocks] == [BLOCK_BYTES, 700_000]
    assert len({len(b["BlockId"]) for b in blocks}) == 1
    [commit] = env.actions("CommitAnnotationBlocksUpload")
    assert commit["Target"]["annotationid"] == note_id and commit["BlockList"] == [b["BlockId"] for b in blocks]
    assert env.actions("DownloadBlock")  # read back in blocks too
    body = env.client.retrieve("annotations", note_id, ["documentbody"])["documentbody"]
    assert base64.b64decode(body) == source.files["d1"]


def test_every_bad_file_fails_with_its_reason_and_creates_nothing(env: Env) -> None:
    env.contact("p1")
    source = Source(missing={"d2"})
    docs = [doc(source, "d1", 0), doc(source, "d2", 1000, store=False),
            doc(source, "d3", 1000, sha="0" * 64)]
    good = doc(source, "d4", 1000)
    source.files["d4"] = source.files["d4"][:-1]  # a truncated transfer: the size no longer matches
    with env.audit.connect() as conn:
        results = loader(env, source, conn).load([*docs, good])
        assert AuditLog(conn).count() == 0
    assert [(r.source_id, r.outcome, r.reason) for r in results] == [
        ("d1", "failed", "zero_byte_file"), ("d2", "failed", "missing_at_source"),
        ("d3", "failed", "source_hash_mismatch"), ("d4", "failed", "source_hash_mismatch")]
    assert "d1" not in source.fetched  # a zero-byte file is not even fetched
    assert list(env.client.query("annotations", ["annotationid"])) == []


def test_rerun_sends_nothing_for_an_unchanged_document_and_updates_a_changed_one(env: Env) -> None:
    env.contact("p1")
    source = Source()
    first = doc(source, "d1", 5000)
    with env.audit.connect() as conn:
        [r1] = loader(env, source, conn).load([first])
        previous = {"d1": PreviousDocument(r1.outcome, r1.sha256, r1.meta_hash, r1.stored_name, r1.note_id,
                                           r1.location_id, r1.item_id)}
        env.requests.clear()
        [r2] = loader(env, source, conn, previous=previous).load([first])
        assert r2.outcome == "unchanged" and source.fetched == ["d1"]
        assert [m for m, _, _ in env.requests if m != "GET"] == []
        changed = replace(first, fields={**first.fields, "subject": "Consent (signed)"})
        [r3] = loader(env, source, conn, previous=previous).load([changed])
        writes = AuditLog(conn).writes()
    assert r3.outcome == "note" and r3.verified
    assert [(w.operation, w.before) for w in writes][-1] == ("update", {
        "subject": "Consent", "filename": "scan.pdf", "mimetype": "application/pdf", "isdocument": True,
        "smig_sourcesystemid": "d1"})
    assert env.client.retrieve("annotations", r1.note_id, ["subject"])["subject"] == "Consent (signed)"


def test_the_stored_note_digest_is_keyed_and_a_rerun_with_the_key_sends_nothing(env: Env) -> None:
    env.contact("p1")
    source, key = Source(), digest_key("the-stores-key")
    first = doc(source, "d1", 5000)
    with env.audit.connect() as conn:
        [r1] = loader(env, source, conn, digest_key=key).load([first])
        assert r1.meta_hash == meta_hash(first.fields, key) != meta_hash(first.fields)
        previous = {"d1": PreviousDocument(r1.outcome, r1.sha256, r1.meta_hash, r1.stored_name, r1.note_id,
                                           r1.location_id, r1.item_id)}
        env.requests.clear()
        [r2] = loader(env, source, conn, previous=previous, digest_key=key).load([first])
    assert r2.outcome == "unchanged" and [m for m, _, _ in env.requests if m != "GET"] == []


# -- SharePoint ----------------------------------------------------------------------------------------------------
def test_sharepoint_fails_clearly_when_integration_is_not_set_up(env: Env) -> None:
    env.contact("p1")
    source = Source()
    with env.audit.connect() as conn:
        docs = loader(env, source, conn, drive=FakeDrive())
        results = docs.load([doc(source, "d1", 9000, mime="application/dicom"), doc(source, "d2", 900)])
    assert [(r.outcome, r.reason) for r in results] == [("failed", "sharepoint_not_configured"), ("note", None)]
    assert docs.setup_error is not None and "default sharepointsite" in docs.setup_error
    with pytest.raises(SharePointNotConfigured, match="contact"):  # a site without the contact library's location
        env.client.create("sharepointsites", {"name": "Default Site", "absoluteurl": SITE_URL, "isdefault": True})
        SharePointLocations(env.client).library()


def test_sharepoint_folder_location_per_contact_renames_and_verification(env: Env) -> None:
    library = sharepoint_site(env.client)
    contact = env.contact("p1")
    env.requests.clear()
    source, drive = Source(), FakeDrive()
    docs = [doc(source, "d1", 9000, mime="application/dicom", name="pano.dcm"),
            doc(source, "d2", 9000, mime="application/dicom", name="PANO.dcm"),
            doc(source, "d3", 9000, mime="application/dicom", name="fmx:1?.dcm")]
    with env.audit.connect() as conn:
        results = loader(env, source, conn, drive=drive).load(docs)
        writes = AuditLog(conn).writes()
    folder = folder_name(contact)
    assert [(r.outcome, r.stored_name, r.reason, r.verified) for r in results] == [
        ("sharepoint", "pano.dcm", None, True), ("sharepoint", "PANO (2).dcm", "renamed_duplicate", True),
        ("sharepoint", "fmx_1_.dcm", "renamed_forbidden_characters", True)]
    assert {(f, n) for f, n, _ in drive.items.values()} == {(folder, "pano.dcm"), (folder, "PANO (2).dcm"),
                                                            (folder, "fmx_1_.dcm")}
    [location] = [orjson.loads(b) for m, p, b in env.requests if m == "POST" and p.endswith("/sharepointdocumentlocations")]
    assert location == {"name": "Documents on Default Site", "relativeurl": folder,
                        "parentsiteorlocation_sharepointdocumentlocation@odata.bind":
                            f"/sharepointdocumentlocations({library})",
                        "regardingobjectid_contact@odata.bind": f"/contacts({contact})"}
    assert "absoluteurl" not in location
    stored = env.client.retrieve("sharepointdocumentlocations", results[0].location_id,
                                 ["_regardingobjectid_value", "_parentsiteorlocation_value", "relativeurl"])
    assert (stored["_regardingobjectid_value"], stored["_parentsiteorlocation_value"]) == (contact, library)
    assert sorted((w.table, w.operation) for w in writes) == [
        (GRAPH_FILES, "create")] * 3 + [(GRAPH_FOLDERS, "create"), ("sharepointdocumentlocation", "create")]


def test_sharepoint_read_back_mismatch_is_reported_unverified(env: Env) -> None:
    sharepoint_site(env.client)
    env.contact("p1")
    source = Source()
    with env.audit.connect() as conn:
        [result] = loader(env, source, conn, drive=FakeDrive(corrupt=True)).load(
            [doc(source, "d1", 9000, mime="application/dicom")])
    assert (result.outcome, result.verified) == ("sharepoint", False)


def test_rollback_deletes_notes_locations_and_sharepoint_files(env: Env) -> None:
    sharepoint_site(env.client)
    env.contact("p1")
    source, drive = Source(), FakeDrive()
    with env.audit.connect() as conn:
        results = loader(env, source, conn, drive=drive).load(
            [doc(source, "d1", 3000), doc(source, "d2", 9000, mime="application/dicom")])
        log = AuditLog(conn)
        report = Rollback(env.client, log, "rollback-1", drive=drive).run()
        again = Rollback(env.client, log, "rollback-2", drive=drive).run()
    assert sorted(t for t, _ in report.deleted) == ["annotation", GRAPH_FILES, GRAPH_FOLDERS,
                                                    "sharepointdocumentlocation"]
    assert drive.items == {} and drive.deleted == [results[1].item_id] and drive.folders == []
    assert list(env.client.query("annotations", ["annotationid"])) == []
    assert [r["relativeurl"] for r in env.client.query("sharepointdocumentlocations", ["relativeurl"])] == [
        "contact"]  # only the library's location, which Dynamics made
    assert (again.writes, again.failed) == (0, [])


def test_rollback_without_a_drive_reports_files_instead_of_marking_them_undone(env: Env) -> None:
    sharepoint_site(env.client)
    contact = env.contact("p1")
    source, drive = Source(), FakeDrive()
    with env.audit.connect() as conn:
        [result] = loader(env, source, conn, drive=drive).load([doc(source, "d1", 9000, mime="application/dicom")])
        report = Rollback(env.client, AuditLog(conn), "rollback-1").run()
    assert report.failed == [(GRAPH_FILES, result.item_id, "no Graph drive configured"),
                             (GRAPH_FOLDERS, f"folder-{folder_name(contact)}", "no Graph drive configured")]
    assert result.item_id in drive.items



# -- the Sensei simulator's content defects, through our client --------------------------------------------------
def test_simulator_answers_404_for_missing_content_and_other_bytes_for_corrupt(tmp_path: Path) -> None:
    from senseimig_dagster.load.document_routes import DocumentRejected, fetch_source, sensei_content
    from senseimig_dagster.sandbox.generator import generate
    from senseimig_dagster.sandbox.sensei_sim import SenseiSimulator, serve
    from senseimig_dagster.sensei.client import SenseiClient

    generate(tmp_path, patients=60, seed=7)
    kinds = [orjson.loads(line) for line in (tmp_path / "defects.jsonl").read_bytes().splitlines()]
    missing = next(d["id"] for d in kinds if d["kind"] == "missing_document")
    corrupt = next(d["id"] for d in kinds if d["kind"] == "corrupt_document")
    rows = {r["id"]: r for r in map(orjson.loads, (tmp_path / "documents.jsonl").read_bytes().splitlines())}
    with serve(SenseiSimulator(tmp_path, rate_limit=None)) as url:
        answer = httpx.get(f"{url}/v1/documents/{missing}/content", headers={"Csd-Api-Key": "sandbox-key"})
        assert (answer.status_code, answer.json()["error"]["code"]) == (404, "not_found")
        bad = httpx.get(f"{url}/v1/documents/{corrupt}/content", headers={"Csd-Api-Key": "sandbox-key"})
        assert bad.status_code == 200 and int(bad.headers["Content-Length"]) == len(bad.content) \
            == rows[corrupt]["size_bytes"]
        assert hashlib.sha256(bad.content).hexdigest() != rows[corrupt]["sha256"]
        with SenseiClient(url, "sandbox-key", max_retries=0) as client:
            content = sensei_content(client, get("document"))
            for sid, reason in ((missing, "missing_at_source"), (corrupt, "source_hash_mismatch")):
                with pytest.raises(DocumentRejected) as rejected:
                    fetch_source(content, sid, rows[sid]["size_bytes"], rows[sid]["sha256"])
                assert rejected.value.reason == reason
            good = next(r for r in rows.values() if r["id"] not in (missing, corrupt) and r["size_bytes"])
            with fetch_source(content, good["id"], good["size_bytes"], good["sha256"]) as fetched:
                assert (fetched.size, fetched.sha256) == (good["size_bytes"], good["sha256"])


def test_rollback_keeps_a_folder_a_person_added_files_to_and_reports_it(env: Env) -> None:
    sharepoint_site(env.client)
    contact = env.contact("p1")
    source, drive = Source(), FakeDrive()
    with env.audit.connect() as conn:
        loader(env, source, conn, drive=drive).load([doc(source, "d2", 9000, mime="application/dicom")])
        drive.items["theirs"] = (folder_name(contact), "referral letter.pdf", b"%PDF")  # added after the migration
        report = Rollback(env.client, AuditLog(conn), "rollback-1", drive=drive).run()
    assert report.changed_by_person == [(GRAPH_FOLDERS, f"folder-{folder_name(contact)}")]
    assert list(drive.items) == ["theirs"] and drive.folders == [folder_name(contact)]
