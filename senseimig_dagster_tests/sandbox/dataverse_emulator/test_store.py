"""Record store (records, alternate keys, lookups, conditional writes, errors): each test fails if the store is more
lenient than Dataverse."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

from senseimig_dagster.sandbox.dataverse_emulator import Catalog, DataverseError
from senseimig_dagster.sandbox.dataverse_emulator.store import RecordStore


@pytest.fixture
def catalog() -> Catalog:
    catalog = Catalog.load()
    catalog.add_column("contact", "smig_SourceId", "String", max_length=100)
    catalog.add_alternate_key("contact", "smig_sourceid_key", ["smig_sourceid"])
    catalog.set_key_status("contact", "smig_sourceid_key", "Active")
    return catalog


@pytest.fixture
def store(tmp_path: Path, catalog: Catalog) -> RecordStore:
    s = RecordStore(tmp_path / "dv.sqlite", catalog)
    yield s
    s.close()


def test_create_assigns_guid_version_and_timestamps(store: RecordStore) -> None:
    rec = store.create("contact", {"lastname": "Ng"})
    assert uuid.UUID(rec.id) and rec.values["contactid"] == rec.id
    assert rec.etag == f'W/"{rec.version}"' and rec.values["createdon"] == rec.values["modifiedon"]
    assert store.retrieve("contact", rec.id).values["lastname"] == "Ng"


def test_client_supplied_id_is_kept_and_duplicate_id_is_412(store: RecordStore) -> None:
    rid = str(uuid.uuid4())
    assert store.create("contact", {"contactid": rid, "lastname": "A"}).id == rid
    with pytest.raises(DataverseError) as err:
        store.create("contact", {"contactid": rid, "lastname": "B"})
    assert err.value.status == 412 and err.value.code == "0x80040237"


def test_update_changes_only_sent_columns_and_bumps_version(store: RecordStore) -> None:
    rec = store.create("contact", {"lastname": "A", "firstname": "F"})
    new = store.update("contact", rec.id, {"lastname": "B"})
    assert new.values["firstname"] == "F" and new.values["lastname"] == "B" and new.version > rec.version


def test_duplicate_alternate_key_is_412_with_documented_code(store: RecordStore) -> None:
    store.create("contact", {"lastname": "A", "smig_sourceid": "P-1"})
    with pytest.raises(DataverseError) as err:
        store.create("contact", {"lastname": "B", "smig_sourceid": "P-1"})
    assert err.value.status == 412 and err.value.code == "0x80060892"
    assert err.value.message.startswith("Entity Key smig_sourceid_key violated. A record with the same value for")
    other = store.create("contact", {"lastname": "C", "smig_sourceid": "P-2"})
    with pytest.raises(DataverseError):  # an update onto another record's key value is refused too
        store.update("contact", other.id, {"smig_sourceid": "P-1"})
    assert store.count("contact") == 2


def test_pending_key_cannot_be_used_then_active_works(tmp_path: Path) -> None:
    catalog = Catalog.load()
    catalog.add_column("contact", "smig_SourceId", "String", max_length=100)
    s = RecordStore(tmp_path / "k.sqlite", catalog)
    s.create("contact", {"lastname": "A", "smig_sourceid": "P-1"})  # written before the key exists
    catalog.add_alternate_key("contact", "smig_sourceid_key", ["smig_sourceid"])
    with pytest.raises(DataverseError) as err:
        s.find_by_key("contact", {"smig_sourceid": "P-1"})
    assert err.value.status == 400 and "not active" in err.value.message
    catalog.set_key_status("contact", "smig_sourceid_key", "Active")
    assert s.find_by_key("contact", {"smig_sourceid": "P-1"}).values["lastname"] == "A"
    s.close()


def test_columns_that_are_not_a_key_are_400(store: RecordStore) -> None:
    with pytest.raises(DataverseError) as err:
        store.find_by_key("contact", {"lastname": "A"})
    assert err.value.status == 400 and "The key in the request URI is not valid" in err.value.message


def test_upsert_by_key_creates_then_updates(store: RecordStore) -> None:
    rec, created = store.upsert("contact", {"lastname": "A"}, key={"smig_sourceid": "P-9"})
    assert created and rec.values["smig_sourceid"] == "P-9"
    again, created = store.upsert("contact", {"lastname": "B"}, key={"smig_sourceid": "P-9"})
    assert not created and again.id == rec.id and store.count("contact") == 1


def test_conditional_upserts(store: RecordStore) -> None:
    rid = str(uuid.uuid4())
    with pytest.raises(DataverseError) as err:
        store.upsert("contact", {"lastname": "A"}, id=rid, if_match="*")
    assert err.value.status == 404 and err.value.message == f"contact With Id = {rid} Does Not Exist"
    assert store.count("contact") == 0
    rec, _ = store.upsert("contact", {"lastname": "A"}, id=rid)
    with pytest.raises(DataverseError) as err:
        store.upsert("contact", {"lastname": "B"}, id=rid, if_none_match="*")
    assert err.value.status == 412 and err.value.message == "A record with matching key values already exists."
    with pytest.raises(DataverseError) as err:
        store.upsert("contact", {"lastname": "B"}, id=rid, if_match='W/"1"')
    assert err.value.status == 412 and "doesn't match the RowVersion" in err.value.message
    assert store.retrieve("contact", rid).values["lastname"] == "A"
    store.upsert("contact", {"lastname": "C"}, id=rid, if_match=rec.etag)
    assert store.retrieve("contact", rid).values["lastname"] == "C"


def test_bind_to_missing_record_fails_and_existing_one_is_stored(store: RecordStore) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(DataverseError) as err:
        store.create("contact", {"lastname": "A", "parentcustomerid_account@odata.bind": f"/accounts({missing})"})
    assert err.value.status == 404 and err.value.message == f"account With Id = {missing} Does Not Exist"
    assert store.count("contact") == 0
    acct = store.create("account", {"name": "Clinic"})
    rec = store.create("contact", {"lastname": "A", "parentcustomerid_account@odata.bind": f"/accounts({acct.id})"})
    assert rec.values["parentcustomerid"] == acct.id


def test_overriddencreatedon_becomes_createdon(store: RecordStore) -> None:
    rec = store.create("contact", {"lastname": "A", "overriddencreatedon": "2019-05-01T10:00:00Z"})
    assert rec.values["createdon"] == "2019-05-01T10:00:00Z" and rec.values["overriddencreatedon"] != rec.values[
        "createdon"]
    with pytest.raises(DataverseError):  # create only
        store.update("contact", rec.id, {"overriddencreatedon": "2018-01-01T00:00:00Z"})


def test_delete_removes_record_and_frees_its_key(store: RecordStore) -> None:
    rec = store.create("contact", {"lastname": "A", "smig_sourceid": "P-1"})
    store.delete("contact", rec.id)
    assert store.retrieve("contact", rec.id) is None
    with pytest.raises(DataverseError) as err:
        store.delete("contact", rec.id)
    assert err.value.status == 404
    store.create("contact", {"lastname": "B", "smig_sourceid": "P-1"})


def test_state_survives_reopen(tmp_path: Path, catalog: Catalog) -> None:
    s = RecordStore(tmp_path / "p.sqlite", catalog)
    rec = s.create("contact", {"lastname": "Persist", "smig_sourceid": "P-1"})
    s.close()
    s2 = RecordStore(tmp_path / "p.sqlite", catalog)
    assert s2.retrieve("contact", rec.id).version == rec.version
    with pytest.raises(DataverseError):
        s2.create("contact", {"lastname": "X", "smig_sourceid": "P-1"})
    assert s2.create("contact", {"lastname": "Y"}).version > rec.version
    s2.close()


def test_concurrent_creates_land_exactly_once(store: RecordStore) -> None:
    errors: list[Exception] = []

    def worker(n: int) -> None:
        for i in range(25):
            try:
                store.upsert("contact", {"lastname": f"T{n}"}, key={"smig_sourceid": f"S-{i}"})
                store.create("contact", {"lastname": f"U{n}-{i}", "smig_sourceid": f"U-{n}-{i}"})
            except Exception as e:  # noqa: BLE001
                errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count("contact") == 25 + 8 * 25
    ids = {r.values["smig_sourceid"] for r in store.query("contact")}
    assert len(ids) == 25 + 8 * 25


def test_query_filters_orders_and_pages(store: RecordStore) -> None:
    for i in range(5):
        store.create("contact", {"lastname": "Z" if i % 2 else "A", "firstname": str(i)})
    rows = store.query("contact", [("lastname", "A")], [("firstname", True)])
    assert [r.values["firstname"] for r in rows] == ["4", "2", "0"]
    page = store.query("contact", [], [("firstname", False)], offset=1, limit=2)
    assert [r.values["firstname"] for r in page] == ["1", "2"]
