"""Microsoft's Python SDK (``PowerPlatform-Dataverse-Client``, the version pinned in pyproject) runs unmodified
against the served emulator, authenticated the way its users authenticate: an ``azure-identity``
``ClientSecretCredential`` whose authority is the Entra ID stand-in. The only concession is the one any private
authority needs: the local CA is trusted through ``REQUESTS_CA_BUNDLE`` (the SDK and azure-identity both use
requests), and instance discovery is off (it would ask login.microsoftonline.com about a host it doesn't know).

Each step goes through the SDK's public API only: table and column creation (``CreateEntities``, Attributes
POSTs, Keys), choice labels resolved from metadata (``$expand=OptionSet($select=Options)``), single and bulk
create (``CreateMultiple``), get with ``$select``, update (``UpdateMultiple``), upsert by alternate key (PATCH and
``UpsertMultiple``), paging, file upload, delete (``BulkDelete``) and the SDK's error mapping."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from pathlib import Path

import pytest

azure_identity = pytest.importorskip("azure.identity")
sdk = pytest.importorskip("PowerPlatform.Dataverse.client")
sdk_errors = pytest.importorskip("PowerPlatform.Dataverse.core.errors")

from senseimig_dagster.sandbox.entra import DEFAULT_APPS  # noqa: E402
from senseimig_dagster_tests.support.environments import Sandbox, sandbox  # noqa: E402

pytestmark = pytest.mark.slow
TABLE = "smig_Sdkwidget"  # the emulator's default publisher prefix is smig_


class Shade(enum.IntEnum):
    Ivory = 100000000
    Slate = 100000001


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    with sandbox(tmp_path) as sb:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", sb.ca_bundle)
        yield sb


@pytest.fixture
def client(served: Sandbox) -> Iterator[object]:
    credential = azure_identity.ClientSecretCredential(
        served.entra.tenant, "sandbox-client", DEFAULT_APPS["sandbox-client"], authority=served.authority,
        disable_instance_discovery=True)
    with sdk.DataverseClient(served.dataverse_url, credential) as c:
        yield c


def test_tables_columns_and_keys_as_the_sdk_creates_them(client, served: Sandbox) -> None:
    info = client.tables.create(TABLE, {"smig_Code": "string", "smig_Count": "int", "smig_Shade": Shade,
                                        "smig_When": "datetime", "smig_Done": "bool", "smig_Price": "decimal",
                                        "smig_Scan": "file"})
    assert (info.logical_name, info.entity_set_name) == ("smig_sdkwidget", "smig_sdkwidgets")
    assert client.tables.get(TABLE).metadata_id == info.metadata_id
    assert client.tables.add_columns(TABLE, {"smig_Remark": "memo"}) == ["smig_Remark"]
    key = client.tables.create_alternate_key(TABLE, "smig_code_key", ["smig_code"])
    assert key.key_attributes == ["smig_code"]
    table = served.emulator.catalog.table("smig_sdkwidget")
    assert {"smig_code", "smig_count", "smig_shade", "smig_when", "smig_done", "smig_price", "smig_scan",
            "smig_remark", "smig_name"} <= set(table.columns)
    assert table.columns["smig_shade"].options == (Shade.Ivory, Shade.Slate)
    with pytest.raises(sdk_errors.MetadataError):
        client.tables.create(TABLE, {"smig_Code": "string"})  # exists: the SDK asks EntityDefinitions first
    client.tables.delete(TABLE)
    assert client.tables.get(TABLE) is None


def test_records_end_to_end(client, served: Sandbox, tmp_path: Path) -> None:
    client.tables.create(TABLE, {"smig_Code": "string", "smig_Count": "int", "smig_Shade": Shade,
                                 "smig_Scan": "file"})
    client.tables.create_alternate_key(TABLE, "smig_code_key", ["smig_code"])
    store = served.emulator.store

    one = client.records.create(TABLE, {"smig_Code": "A-1", "smig_Count": 1, "smig_Shade": "Slate"})
    assert store.retrieve("smig_sdkwidget", one).values["smig_shade"] == Shade.Slate  # label -> value via metadata
    many = client.records.create(TABLE, [{"smig_Code": f"B-{i}", "smig_Count": i} for i in range(9)])
    assert len(set(many)) == 9 and store.count("smig_sdkwidget") == 10

    got = client.records.get(TABLE, one, select=["smig_code", "smig_count"])
    assert got.id == one and got["smig_code"] == "A-1" and got["smig_count"] == 1
    assert "smig_shade" not in got.data

    client.records.update(TABLE, one, {"smig_Count": 2})
    client.records.update(TABLE, many[:3], {"smig_Count": 30})
    assert [store.retrieve("smig_sdkwidget", i).values["smig_count"] for i in [one, *many[:3]]] == [2, 30, 30, 30]

    client.records.upsert(TABLE, [{"alternate_key": {"smig_code": "A-1"}, "record": {"smig_count": 5}}])
    client.records.upsert(TABLE, [{"alternate_key": {"smig_code": c}, "record": {"smig_count": 7}}
                                  for c in ("B-0", "C-new")])
    assert store.retrieve("smig_sdkwidget", one).values["smig_count"] == 5
    assert store.find_by_key("smig_sdkwidget", {"smig_code": "C-new"}).values["smig_count"] == 7
    assert store.count("smig_sdkwidget") == 11

    pages = list(client.records.list_pages(TABLE, select=["smig_code"], page_size=4))
    assert [len(p) for p in pages] == [4, 4, 3]
    assert sorted(r["smig_code"] for p in pages for r in p)[:2] == ["A-1", "B-0"]

    scan = tmp_path / "scan.pdf"
    scan.write_bytes(b"%PDF-1.7 " + bytes(range(256)) * 40)
    client.files.upload(TABLE, one, "smig_Scan", str(scan), mime_type="application/pdf")
    assert store.get_file("smig_sdkwidget", one, "smig_scan") == ("scan.pdf", scan.read_bytes())

    client.records.delete(TABLE, one)
    assert isinstance(client.records.delete(TABLE, many[:4]), str)  # BulkDelete's job id
    assert store.count("smig_sdkwidget") == 6

    with pytest.raises(sdk_errors.HttpError) as missing:
        client.records.get(TABLE, one)
    assert missing.value.status_code == 404
    with pytest.raises(sdk_errors.HttpError) as bad:
        client.records.create(TABLE, {"smig_Code": "x" * 201})  # the SDK's string columns are MaxLength 200
    assert bad.value.status_code == 400 and bad.value.details.get("service_error_code") == "0x80044331"
