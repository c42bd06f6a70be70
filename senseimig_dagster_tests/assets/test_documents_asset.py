"""``dataverse/document`` over real HTTPS: a generated tenant served by the Sensei simulator (with its declared file
defects), the Dataverse emulator with SharePoint integration set up, and the Graph drive stand-in, all with tokens
from the Entra stand-in. One migration, a re-run, and a rollback."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pytest
from dagster import DagsterInstance, materialize

from senseimig_dagster.assets.dataverse_schema import dataverse_schema
from senseimig_dagster.assets.documents import ACCOUNTED, VERIFIED
from senseimig_dagster.assets.keys import writer_key
from senseimig_dagster.assets.owners import staging_owners
from senseimig_dagster.assets.partitions import range_tags
from senseimig_dagster.assets.raw import raw_assets
from senseimig_dagster.assets.staging import staging_assets
from senseimig_dagster.assets.writers import dataverse_assets
from senseimig_dagster.audit.log import AuditLog
from senseimig_dagster.audit.rollback import GRAPH_FILES, Rollback
from senseimig_dagster.load.document_journal import DOCUMENTS
from senseimig_dagster.load.document_routes import base64_length, folder_name
from senseimig_dagster.load.frames import deterministic_id
from senseimig_dagster.resources import AuditStore
from senseimig_dagster.sandbox.generator import generate
from senseimig_dagster_tests.support.constants import SEED_TEAM
from senseimig_dagster_tests.support.environments import sandbox
from senseimig_dagster_tests.support.maps import confirmed_map
from senseimig_dagster_tests.support.wire import READ_ACTIONS

pytestmark = pytest.mark.slow


def _declared(tenant: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (tenant / "defects.jsonl").read_text().splitlines():
        d = json.loads(line)
        if d["object"] == "document":
            out.setdefault(d["kind"], []).append(d["id"])
    return out


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    work = tmp_path_factory.mktemp("documents")
    tenant = work / "tenant"
    generate(tenant, patients=40, seed=7)
    docs = pl.read_ndjson(tenant / "documents.jsonl")
    declared = _declared(tenant)
    # A limit low enough that the renamed documents (and every large one) go to SharePoint, while small ones stay
    # notes: read from the organization by the asset, so this also proves the limit is not assumed.
    renamed = docs.filter(pl.col("id").is_in(declared["forbidden_file_name"] + declared["duplicate_file_name"]))
    twins = docs.join(renamed.select("patient_id", "file_name"), on=["patient_id", "file_name"])
    limit = min(base64_length(s) for s in [*renamed.get_column("size_bytes"), *twins.get_column("size_bytes")]) - 1
    confirmed = confirmed_map(work / "mapping.yaml")
    database = work / "db.duckdb"
    # The seed's SharePoint integration is the site the Graph stand-in serves; its Front Desk team is the fallback
    # owner of unmatched users. Reads of a note's body in blocks are POST actions: not counted as writes.
    with sandbox(work, tenant=tenant, graph=True, fallback_owner=SEED_TEAM, reads=READ_ACTIONS) as served, \
            DagsterInstance.ephemeral() as instance:
        resources = served.resources(database, mapping=confirmed, audit=work / "audit.duckdb")
        with resources["dataverse"].client() as client:
            org = next(client.query("organizations", ["organizationid"]))["organizationid"]
            client.update("organizations", org, {"maxuploadfilesize": limit})
        assert materialize(raw_assets, resources=resources, instance=instance, tags=range_tags()).success
        yield {"resources": resources, "instance": instance, "writes": served.wire, "graph": served.graph,
               "docs": docs, "declared": declared, "limit": limit, "database": str(database),
               "audit": work / "audit.duckdb"}


def _run(env: dict):
    # every writer: a patient binds its carrier (payer) too, so documents need more than their graph parents
    return materialize([dataverse_schema, staging_assets, staging_owners, *dataverse_assets],
                       resources=env["resources"], instance=env["instance"], raise_on_error=False)


@pytest.fixture(scope="module")
def first(env: dict) -> dict:
    result = _run(env)
    assert result.success
    with duckdb.connect(env["database"], read_only=True) as conn:
        rows = conn.execute(f"SELECT * FROM {DOCUMENTS} WHERE run_id = ?", [result.run_id]).pl()
    return {"result": result, "rows": rows}


def test_every_document_is_accounted_for_with_its_route_or_reason(env: dict, first: dict) -> None:
    rows, docs, declared = first["rows"], env["docs"], env["declared"]
    staged_live = docs.filter(~pl.col("is_deleted"))
    assert rows.height == rows.get_column("source_id").n_unique()
    by_id = {r["source_id"]: r for r in rows.iter_rows(named=True)}
    reason = {sid: by_id[sid]["reason"] for sid in by_id}
    for sid in declared["missing_document"]:
        assert sid not in by_id or reason[sid] == "missing_at_source"
    for sid in declared["corrupt_document"]:
        assert sid not in by_id or reason[sid] == "source_hash_mismatch"
    zero = staged_live.filter(pl.col("size_bytes") == 0).get_column("id").to_list()
    assert all(reason[sid] == "zero_byte_file" for sid in zero if sid in by_id)
    assert "zero_byte_file" in reason.values()
    assert any(reason.get(sid) == "missing_at_source" for sid in declared["missing_document"])
    assert any(reason.get(sid) == "source_hash_mismatch" for sid in declared["corrupt_document"])
    outcomes = set(rows.get_column("outcome"))
    assert {"note", "sharepoint", "failed"} <= outcomes
    ok = rows.filter(pl.col("outcome") != "failed")
    assert ok.get_column("verified").all()
    # routing follows the environment's limit (read from the organization) and the imaging rule
    for r in ok.iter_rows(named=True):
        mime = docs.filter(pl.col("id") == r["source_id"]).get_column("mime_type")[0]
        expected = "sharepoint" if mime == "application/dicom" or base64_length(r["size_bytes"]) > env["limit"] \
            else "note"
        assert r["outcome"] == expected, r["source_id"]
    forbidden = [by_id[s] for s in declared["forbidden_file_name"] if s in by_id]
    assert forbidden and all(r["reason"] == "renamed_forbidden_characters" for r in forbidden)
    for sid in declared["duplicate_file_name"]:  # it and its twin: the one later by source id gets " (2)"
        row = docs.filter(pl.col("id") == sid).row(0, named=True)
        twins = docs.filter((pl.col("patient_id") == row["patient_id"]) & (pl.col("file_name") == row["file_name"]))
        stored = sorted((by_id[t]["source_id"], by_id[t]["stored_name"], by_id[t]["reason"])
                        for t in twins.get_column("id"))
        stem, ext = row["file_name"].rsplit(".", 1)
        assert [(n, r) for _, n, r in stored] == [(row["file_name"], None), (f"{stem} (2).{ext}", "renamed_duplicate")]
    evaluations = {e.check_name: e.passed for e in first["result"].get_asset_check_evaluations()
                   if e.asset_key == writer_key("document")}
    assert evaluations[VERIFIED] and evaluations[ACCOUNTED]
    meta = first["result"].asset_materializations_for_node("dataverse__document")[0].metadata
    assert meta["documents"].value == rows.height and meta["mb_per_s"].value > 0
    assert not any(n in json.dumps({k: str(v.value) for k, v in meta.items()})
                   for n in docs.get_column("file_name").to_list())  # no file name in metadata


def test_bodies_in_dynamics_and_sharepoint_equal_the_source(env: dict, first: dict) -> None:
    rows = first["rows"]
    with env["resources"]["dataverse"].client() as client, env["resources"]["graph"].drive() as drive:
        note = rows.filter(pl.col("outcome") == "note").row(0, named=True)
        body = client.retrieve("annotations", deterministic_id("annotation", note["source_id"]), ["documentbody"])
        assert hashlib.sha256(base64.b64decode(body["documentbody"])).hexdigest() == note["sha256"]
        shared = rows.filter(pl.col("outcome") == "sharepoint").row(0, named=True)
        data = b"".join(drive.download(shared["item_id"]))
        assert (len(data), hashlib.sha256(data).hexdigest()) == (shared["size_bytes"], shared["sha256"])
        location = client.retrieve("sharepointdocumentlocations", shared["location_id"],
                                   ["relativeurl", "_regardingobjectid_value"])
        assert location["relativeurl"] == folder_name(location["_regardingobjectid_value"])
        assert drive.find(location["relativeurl"], shared["stored_name"]).id == shared["item_id"]


def test_a_rerun_sends_nothing_and_rollback_removes_notes_locations_and_files(env: dict, first: dict) -> None:
    before, uploads = env["writes"].writes, env["graph"].stats["uploads_completed"]
    again = _run(env)
    assert again.success
    with duckdb.connect(env["database"], read_only=True) as conn:
        second = conn.execute(f"SELECT outcome, count(*) FROM {DOCUMENTS} WHERE run_id = ? GROUP BY ALL",
                              [again.run_id]).fetchall()
    assert {o for o, _ in second} <= {"unchanged", "failed"}
    assert (env["writes"].writes, env["graph"].stats["uploads_completed"]) == (before, uploads)
    shared = first["rows"].filter(pl.col("outcome") == "sharepoint")
    with env["resources"]["dataverse"].client() as client, env["resources"]["graph"].drive() as drive:
        with AuditStore(path=str(env["audit"])).connect() as conn:
            report = Rollback(client, AuditLog(conn), "rollback", drive=drive).run()
        assert report.failed == [] and report.changed_by_person == []
        assert sum(1 for t, _ in report.deleted if t == GRAPH_FILES) == shared.height
        assert list(client.query("annotations", ["annotationid"])) == []
        assert [r["relativeurl"] for r in client.query("sharepointdocumentlocations", ["relativeurl"])] == ["contact"]
        for r in shared.iter_rows(named=True):
            with pytest.raises(Exception, match="404|itemNotFound"):
                list(drive.download(r["item_id"]))
