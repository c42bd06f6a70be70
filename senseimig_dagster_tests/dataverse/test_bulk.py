"""Bulk messages on the Dataverse client (CreateMultiple, UpdateMultiple, UpsertMultiple, support detection) against
the emulator over real HTTP on 127.0.0.1, typed errors, and certificate credentials (construction only)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest

from senseimig_dagster.dataverse import (
    DataverseClient,
    DataverseError,
    DataverseThrottled,
    EntraTokenProvider,
)
from senseimig_dagster.sandbox.dataverse_emulator import DataverseEmulator, RecordStore
from senseimig_dagster.sandbox.tls import serve_wsgi
from senseimig_dagster_tests.support.constants import SOURCE_KEY as KEY
from senseimig_dagster_tests.support.environments import keyed_contacts


class Bodies:
    """WSGI wrapper keeping each request's path, query and JSON body."""

    def __init__(self, app: Callable):
        self.app, self.seen = app, []

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(raw)
        self.seen.append((environ["PATH_INFO"], environ.get("QUERY_STRING", ""), json.loads(raw) if raw else None))
        return self.app(environ, start_response)


def _serve(tmp_path: Path, **emulator_kwargs) -> Iterator[tuple[DataverseClient, Bodies]]:
    catalog = keyed_contacts()
    store = RecordStore(tmp_path / "dv.sqlite", catalog)
    app = Bodies(DataverseEmulator(catalog, store, **emulator_kwargs))
    try:
        with serve_wsgi(app) as url, DataverseClient(url, None, timeout=10, sleep=lambda s: None) as client:
            yield client, app
    finally:
        store.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[DataverseClient, Bodies]]:
    yield from _serve(tmp_path)


def test_create_multiple_returns_ids_in_row_order_and_types_every_target(served) -> None:
    client, app = served
    rows = [{"lastname": f"L{i}", KEY: f"S-{i}"} for i in range(5)]
    ids = client.create_multiple("contacts", "contact", rows)
    path, _, body = app.seen[-1]
    assert path == "/api/data/v9.2/contacts/Microsoft.Dynamics.CRM.CreateMultiple"
    assert all(t["@odata.type"] == "Microsoft.Dynamics.CRM.contact" for t in body["Targets"])
    assert [client.retrieve("contacts", i, select=[KEY])[KEY] for i in ids] == [r[KEY] for r in rows]


def test_update_multiple_and_upsert_multiple(served) -> None:
    client, app = served
    ids = client.create_multiple("contacts", "contact", [{"lastname": "A", KEY: "K1"}, {"lastname": "B", KEY: "K2"}])
    client.update_multiple("contacts", "contact", [{"contactid": ids[0], "lastname": "A2"}])
    client.upsert_multiple("contacts", "contact", [{KEY: "K2", "lastname": "B2"}, {KEY: "K'3", "lastname": "C"}],
                           [KEY])
    _, _, body = app.seen[-1]
    # Microsoft's example: the key only in @odata.id, quotes doubled; every target typed
    assert body["Targets"][1] == {"@odata.type": "Microsoft.Dynamics.CRM.contact", "lastname": "C",
                                  "@odata.id": "contacts(smig_sourcesystemid='K''3')"}
    assert client.retrieve("contacts", ids[0], select=["lastname"])["lastname"] == "A2"
    assert client.retrieve("contacts", {KEY: "K2"}, select=["lastname"])["lastname"] == "B2"
    assert client.retrieve("contacts", {KEY: "K'3"}, select=["lastname"])["lastname"] == "C"
    assert client.count("contacts") == 3


def test_a_bad_row_fails_the_whole_bulk_request_with_its_code(served) -> None:
    client, _ = served
    rows = [{"lastname": "Good"}, {"lastname": "x" * 51}]
    with pytest.raises(DataverseError) as e:
        client.create_multiple("contacts", "contact", rows)
    assert (e.value.status, e.value.code) == (400, "0x80044331")
    assert "'lastname'" in e.value.message and "x" * 51 not in str(e.value)  # message kept, not in str()
    assert client.count("contacts") == 0  # all-or-nothing


def test_upsert_multiple_refuses_an_unaddressable_key_before_sending(served) -> None:
    client, app = served
    sent = len(app.seen)
    with pytest.raises(ValueError, match=KEY):
        client.upsert_multiple("contacts", "contact", [{KEY: "A/B", "lastname": "X"}], [KEY])
    assert len(app.seen) == sent


def test_bulk_supported_uses_the_documented_sdkmessagefilters_query(tmp_path: Path) -> None:
    for client, app in _serve(tmp_path, bulk_unsupported={"contact"}):
        assert client.bulk_supported("account", "CreateMultiple") is True
        assert client.bulk_supported("contact", "CreateMultiple") is False
        path, query, _ = app.seen[-1]
        assert path == "/api/data/v9.2/sdkmessagefilters"
        params = {k: v[0] for k, v in parse_qs(query).items()}
        assert params == {"$select": "sdkmessagefilterid",
                          "$filter": "sdkmessageid/name eq 'CreateMultiple' and primaryobjecttypecode eq 'contact'"}
        with pytest.raises(DataverseError) as e:
            client.create_multiple("contacts", "contact", [{"lastname": "X"}])
        assert e.value.status == 400


def test_a_429_is_raised_at_once_when_the_caller_paces_throttling(served) -> None:
    client, _ = served
    sleeps: list[float] = []
    client._sleep = sleeps.append
    calls = []

    def throttled(*args, **kwargs):
        calls.append(1)
        return httpx.Response(429, headers={"Retry-After": "3"},
                              json={"error": {"code": "0x80072322", "message": "Number of requests exceeded"}})

    client._attempt = throttled
    with pytest.raises(DataverseThrottled) as e:
        client.create_multiple("contacts", "contact", [{"lastname": "X"}], retry_throttled=False)
    assert (e.value.status, e.value.code, e.value.retry_after) == (429, "0x80072322", 3.0)
    assert calls == [1] and sleeps == []  # no retry, no sleep: the loader's shared gate waits instead


def test_certificate_credentials_are_passed_to_msal_and_never_shown() -> None:
    cert = {"private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "thumbprint": "AB" * 20}
    provider = EntraTokenProvider("tenant", "client", None, "https://org.crm.dynamics.com", certificate=cert)
    assert provider._credential() == cert
    assert "PRIVATE" not in repr(provider) and "certificate='***'" in repr(provider)
    assert provider._scrub(f"oops {cert['private_key']}") == "oops ***"
    with pytest.raises(ValueError, match="exactly one"):
        EntraTokenProvider("tenant", "client", "secret", "https://org.crm.dynamics.com", certificate=cert)
    with pytest.raises(ValueError, match="thumbprint"):
        EntraTokenProvider("tenant", "client", None, "https://org.crm.dynamics.com",
                               certificate={"private_key": "k"})
