"""DataverseClient against the emulator: in-process through ``httpx.WSGITransport`` and over real HTTP with
``serve_wsgi``. Faults (429, 5xx, resets) come from small WSGI wrappers or httpx transports; waits go to an
injected sleep, so nothing really sleeps."""

from __future__ import annotations

import json
import logging
import pickle
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import httpx
import pytest

from senseimig_dagster.dataverse import (
    BearerAuth,
    DataverseClient,
    DataverseConflict,
    DataverseError,
    DataverseNotFound,
    DataverseThrottled,
    EntraTokenProvider,
    key_segment,
)
from senseimig_dagster.sandbox.dataverse_emulator import Catalog, DataverseEmulator, RecordStore
from senseimig_dagster.sandbox.tls import serve_wsgi
from senseimig_dagster_tests.support.constants import DATAVERSE_CLIENT_ID as CLIENT_ID
from senseimig_dagster_tests.support.constants import DATAVERSE_SECRET as SECRET
from senseimig_dagster_tests.support.constants import SOURCE_KEY as KEY
from senseimig_dagster_tests.support.constants import TEST_TENANT as TENANT
from senseimig_dagster_tests.support.environments import Entra, keyed_contacts

ENV = "http://dv.test"


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[DataverseEmulator]:
    catalog = keyed_contacts()
    store = RecordStore(tmp_path / "dv.sqlite", catalog)
    yield DataverseEmulator(catalog, store)
    store.close()


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make_client(app: Callable, sleeps: Sleeps | None = None, **kwargs) -> DataverseClient:
    return DataverseClient(ENV, None, transport=httpx.WSGITransport(app=app), sleep=Sleeps() if sleeps is None else sleeps,
                           **kwargs)


@pytest.fixture
def client(emulator: DataverseEmulator, sleeps: Sleeps) -> Iterator[DataverseClient]:
    with make_client(emulator, sleeps) as c:
        yield c


class Recorder:
    """WSGI wrapper: records each request's method, path, query and headers; ``faults`` are canned responses
    (status, headers, body) served, in order, before the wrapped app answers; ``extra`` headers go on every
    response of the wrapped app."""

    def __init__(self, app: Callable, faults: Iterable[tuple[int, list[tuple[str, str]], dict | None]] = (),
                 extra: list[tuple[str, str]] | None = None):
        self.app, self.faults, self.extra = app, list(faults), extra or []
        self.requests: list[dict] = []

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        self.requests.append({"method": environ["REQUEST_METHOD"], "path": environ["PATH_INFO"],
                              "query": environ.get("QUERY_STRING", ""), "headers": headers})
        if self.faults:
            # Read the request body, as a server would: over keep-alive, an unread body would be parsed as the
            # next request.
            environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            status, fault_headers, body = self.faults.pop(0)
            data = json.dumps(body).encode() if body is not None else b""
            start_response(f"{status} Fault", [("Content-Type", "application/json"), *fault_headers])
            return [data]

        def start(status: str, response_headers: list, *args):
            return start_response(status, [*response_headers, *self.extra], *args)

        return self.app(environ, start)


THROTTLED = {"error": {"code": "0x80072322", "message": "Number of requests exceeded the limit of 6000 over time "
                                                        "window of 300 seconds."}}


# -- round trips --------------------------------------------------------------------------------------------------

def test_create_retrieve_update_delete_round_trip(client: DataverseClient) -> None:
    rid = client.create("contacts", {"lastname": "Ng", "firstname": "Al", KEY: "P-1"})
    assert uuid.UUID(rid) and rid == rid.lower()
    record = client.retrieve("contacts", rid, select=["lastname", "firstname"])
    assert record["lastname"] == "Ng" and record["firstname"] == "Al" and "@odata.etag" in record
    client.update("contacts", rid, {"lastname": "Ngo"})
    assert client.retrieve("contacts", {KEY: "P-1"})["lastname"] == "Ngo"
    client.update("contacts", {KEY: "P-1"}, {"firstname": "Bo"})
    assert client.retrieve("contacts", uuid.UUID(rid), select=["firstname"])["firstname"] == "Bo"
    assert client.count("contacts") == 1
    client.delete("contacts", rid)
    assert client.count("contacts") == 0
    with pytest.raises(DataverseNotFound):
        client.retrieve("contacts", rid)


def test_update_with_if_match_star_never_creates(client: DataverseClient) -> None:
    with pytest.raises(DataverseNotFound) as info:
        client.update("contacts", str(uuid.uuid4()), {"lastname": "X"})
    assert info.value.status == 404 and info.value.operation == "update"
    assert client.count("contacts") == 0


def test_upsert_creates_then_updates(client: DataverseClient) -> None:
    first = client.upsert("contacts", {KEY: "P-9"}, {"lastname": "A"})
    second = client.upsert("contacts", {KEY: "P-9"}, {"lastname": "B"})
    assert client.count("contacts") == 1 and client.retrieve("contacts", {KEY: "P-9"})["lastname"] == "B"
    assert (first, second) == ("created", "updated")


def test_upsert_reads_201_as_created_and_200_as_updated() -> None:
    seen: list[httpx.Request] = []
    statuses = [201, 200, 204]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status = statuses.pop(0)
        return httpx.Response(status, json={KEY: "P-1"} if status != 204 else None)

    with DataverseClient(ENV, None, transport=httpx.MockTransport(handler), sleep=Sleeps()) as client:
        assert client.upsert("contacts", {KEY: "P-1"}, {"lastname": "A"}) == "created"
        assert client.upsert("contacts", {KEY: "P-1"}, {"lastname": "A"}) == "updated"
        with pytest.raises(DataverseError, match="cannot tell created from updated"):
            client.upsert("contacts", {KEY: "P-1"}, {"lastname": "A"})
    request = seen[0]
    assert request.method == "PATCH" and request.headers["Prefer"] == "return=representation"
    assert request.url.raw_path.decode() == f"/api/data/v9.2/contacts({KEY}='P-1')?$select={KEY}"
    assert "if-match" not in request.headers and "if-none-match" not in request.headers


# -- keys ---------------------------------------------------------------------------------------------------------

def test_key_segment_quotes_and_doubles_single_quotes() -> None:
    assert key_segment({KEY: "X"}) == f"({KEY}='X')"
    assert key_segment({KEY: "O'Neil"}) == f"({KEY}='O''Neil')"
    assert key_segment({"firstname": "Al", "emailaddress1": "a@b.com"}) == "(firstname='Al',emailaddress1='a@b.com')"
    guid = uuid.uuid4()
    assert key_segment({"_primarycontactid_value": guid}) == f"(_primarycontactid_value={guid})"
    assert key_segment({"_primarycontactid_value": str(guid).upper()}) == f"(_primarycontactid_value={guid})"
    assert key_segment({KEY: "a b#c"}) == f"({KEY}='a%20b%23c')"  # URL-safe; the server decodes it


def test_key_with_quote_and_space_round_trips(client: DataverseClient) -> None:
    assert client.upsert("contacts", {KEY: "O'Neil 7"}, {"lastname": "O'Neil"}) in ("created", "updated")
    record = client.retrieve("contacts", {KEY: "O'Neil 7"}, select=[KEY, "lastname"])
    assert record[KEY] == "O'Neil 7" and record["lastname"] == "O'Neil"


@pytest.mark.parametrize("char", list("/<>*%&:\\?+"))
def test_forbidden_key_characters_raise_value_error_naming_the_column(char: str) -> None:
    value = f"SECRET{char}VALUE"
    with pytest.raises(ValueError) as info:
        key_segment({KEY: value})
    assert KEY in str(info.value) and "SECRET" not in str(info.value)


@pytest.mark.parametrize("bad", [{}, {"bad name": "x"}, {KEY: ""}, {"_parentid_value": "not-a-guid"}, {KEY: 1.5}])
def test_malformed_keys_raise_value_error(bad: dict) -> None:
    with pytest.raises(ValueError):
        key_segment(bad)


def test_a_non_guid_string_id_is_refused(client: DataverseClient) -> None:
    with pytest.raises(ValueError, match="GUID"):
        client.retrieve("contacts", "P-1")


# -- queries ------------------------------------------------------------------------------------------------------

def test_query_pages_through_every_record_once(emulator: DataverseEmulator, sleeps: Sleeps) -> None:
    recorder = Recorder(emulator)
    with make_client(recorder, sleeps) as client:
        for i in range(7):
            client.create("contacts", {"lastname": f"L{i}", "firstname": "F" if i % 2 else "G", KEY: f"P-{i}"})
        rows = list(client.query("contacts", [KEY, "lastname"], orderby=f"{KEY} asc", page_size=2))
        assert [r[KEY] for r in rows] == [f"P-{i}" for i in range(7)]
        assert len({r["contactid"] for r in rows}) == 7
        filtered = list(client.query("contacts", [KEY], filter="firstname eq 'F'", page_size=2))
        assert sorted(r[KEY] for r in filtered) == ["P-1", "P-3", "P-5"]
    pages = [r for r in recorder.requests if r["method"] == "GET"][:4]  # 7 rows at 2 a page
    assert all(p["headers"]["prefer"] == "odata.maxpagesize=2" for p in pages)
    assert "$skiptoken=" not in pages[0]["query"] and all("$skiptoken=" in p["query"] for p in pages[1:])
    assert "$skip=" not in " ".join(p["query"] for p in pages)


def test_query_refuses_a_next_link_outside_the_environment() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"value": [{"a": 1}], "@odata.nextLink": "https://evil.example/steal"})

    with DataverseClient(ENV, None, transport=httpx.MockTransport(handler), sleep=Sleeps()) as client:
        rows = client.query("contacts", ["lastname"])
        assert next(rows) == {"a": 1}
        with pytest.raises(DataverseError, match="outside"):
            next(rows)


def test_query_validates_page_size(client: DataverseClient) -> None:
    with pytest.raises(ValueError):
        client.query("contacts", ["lastname"], page_size=5001)
    with pytest.raises(ValueError):
        client.query("contacts", ["lastname"], page_size=0)


# -- errors -------------------------------------------------------------------------------------------------------

def test_duplicate_key_is_a_conflict_with_code_and_without_the_server_message(client: DataverseClient) -> None:
    client.create("contacts", {"lastname": "A", KEY: "PHI-VALUE-1"})
    with pytest.raises(DataverseConflict) as info:
        client.create("contacts", {"lastname": "B", KEY: "PHI-VALUE-1"})
    exc = info.value
    assert exc.status == 412 and exc.code == "0x80060892" and exc.entity_set == "contacts"
    assert exc.operation == "create" and exc.message
    assert "412" in str(exc) and "0x80060892" in str(exc)
    assert exc.message not in str(exc) and "PHI-VALUE-1" not in str(exc) + repr(exc)


def test_etag_mismatch_is_a_conflict(client: DataverseClient) -> None:
    rid = client.create("contacts", {"lastname": "A"})
    with pytest.raises(DataverseConflict) as info:
        client.update("contacts", rid, {"lastname": "B"}, if_match='W/"1"')
    assert info.value.status == 412 and info.value.message not in str(info.value)
    etag = client.retrieve("contacts", rid)["@odata.etag"]
    client.update("contacts", rid, {"lastname": "C"}, if_match=etag)


def test_missing_record_is_not_found_with_code_and_without_the_message(client: DataverseClient) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(DataverseNotFound) as info:
        client.delete("contacts", missing)
    exc = info.value
    assert exc.status == 404 and exc.code == "0x80040217" and missing in (exc.message or "")
    assert "404" in str(exc) and "0x80040217" in str(exc) and missing not in str(exc)
    with pytest.raises(DataverseNotFound):
        client.retrieve("contacts", {KEY: "nobody"})


def test_errors_pickle_and_keep_their_fields() -> None:
    exc = DataverseConflict(412, "0x80060892", "value X", "contacts", "create", request_id="r1", retry_after=None)
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is DataverseConflict and str(back) == str(exc) and back.message == "value X"


def test_other_4xx_raise_at_once(emulator: DataverseEmulator, sleeps: Sleeps) -> None:
    recorder = Recorder(emulator, faults=[(400, [], {"error": {"code": "0x80044331", "message": "too long"}})])
    with make_client(recorder, sleeps) as client, pytest.raises(DataverseError) as info:
        client.retrieve("contacts", str(uuid.uuid4()))
    assert info.value.status == 400 and info.value.code == "0x80044331" and len(recorder.requests) == 1
    assert sleeps == []


# -- retries ------------------------------------------------------------------------------------------------------

def test_429_waits_exactly_retry_after_and_logs_one_warning(emulator: DataverseEmulator, sleeps: Sleeps,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder(emulator, faults=[(429, [("Retry-After", "1")], THROTTLED)])
    caplog.set_level(logging.DEBUG, "senseimig.dataverse")
    with make_client(recorder, sleeps) as client:
        rid = client.create("contacts", {"lastname": "A"})  # a create is retried on 429: it never ran
    assert sleeps == [1.0] and len(recorder.requests) == 2
    assert client is not None and uuid.UUID(rid)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert "contacts" in text and "create" in text and "429" in text and "1.00 s" in text
    assert "exceeded" not in " ".join(r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG)


def test_429_exhausted_raises_throttled(emulator: DataverseEmulator, sleeps: Sleeps) -> None:
    recorder = Recorder(emulator, faults=[(429, [("Retry-After", "7")], THROTTLED)] * 3)
    with make_client(recorder, sleeps, max_retries=2) as client, pytest.raises(DataverseThrottled) as info:
        client.count("contacts")
    assert sleeps == [7.0, 7.0] and info.value.retry_after == 7.0 and info.value.code == "0x80072322"
    assert "exceeded" not in str(info.value)


def test_5xx_are_retried_with_full_jitter_backoff(emulator: DataverseEmulator, sleeps: Sleeps) -> None:
    recorder = Recorder(emulator, faults=[(503, [], None), (502, [], None), (504, [], None)])
    with make_client(recorder, sleeps, backoff_base=0.5, backoff_max=60) as client:
        assert client.count("contacts") == 0
    assert len(sleeps) == 3 and all(0 <= s <= 0.5 * 2 ** i for i, s in enumerate(sleeps))


def test_a_create_is_not_retried_on_502_or_504(emulator: DataverseEmulator, sleeps: Sleeps) -> None:
    for status in (502, 504):
        recorder = Recorder(emulator, faults=[(status, [], None)])
        with make_client(recorder, sleeps) as client, pytest.raises(DataverseError) as info:
            client.create("contacts", {"lastname": "A"})
        assert info.value.status == status and len(recorder.requests) == 1
    assert sleeps == []


class FlakyTransport(httpx.BaseTransport):
    """Raises the given exceptions, in order, before passing requests on to ``inner``."""

    def __init__(self, inner: httpx.BaseTransport, failures: list[Exception]):
        self.inner, self.failures, self.calls = inner, failures, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.inner.handle_request(request)


def test_connection_failures_retry_reads_but_not_an_ambiguous_create(emulator: DataverseEmulator,
                                                                     sleeps: Sleeps) -> None:
    inner = httpx.WSGITransport(app=emulator)
    flaky = FlakyTransport(inner, [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
    with DataverseClient(ENV, None, transport=flaky, sleep=sleeps) as client:
        assert client.count("contacts") == 0
        assert len(sleeps) == 2
        flaky.failures = [httpx.ConnectError("refused")]  # never sent: a create may be repeated
        client.create("contacts", {"lastname": "A"})
        flaky.failures = [httpx.ReadError("reset")]  # maybe executed: repeating could duplicate
        with pytest.raises(DataverseError, match="ReadError"):
            client.create("contacts", {"lastname": "B"})
        assert client.count("contacts") == 1


def test_a_delete_whose_first_attempt_was_lost_succeeds_on_404(emulator: DataverseEmulator,
                                                              sleeps: Sleeps) -> None:
    inner = httpx.WSGITransport(app=emulator)

    class DeleteThenDrop(httpx.BaseTransport):  # the server runs the delete, the response is lost
        dropped = False

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = inner.handle_request(request)
            if request.method == "DELETE" and not self.dropped:
                self.dropped = True
                raise httpx.RemoteProtocolError("server disconnected")
            return response

    with DataverseClient(ENV, None, transport=DeleteThenDrop(), sleep=sleeps) as client:
        rid = client.create("contacts", {"lastname": "A"})
        client.delete("contacts", rid)
        assert client.count("contacts") == 0 and len(sleeps) == 1


# -- headers, dop hint, affinity ----------------------------------------------------------------------------------

def test_headers_on_every_request(emulator: DataverseEmulator, sleeps: Sleeps) -> None:
    recorder = Recorder(emulator)
    with make_client(recorder, sleeps, user_agent="senseimig/test") as client:
        rid = client.create("contacts", {"lastname": "A"})
        client.retrieve("contacts", rid)
        client.update("contacts", rid, {"lastname": "B"})
        list(client.query("contacts", ["lastname"]))
        client.count("contacts")
        client.delete("contacts", rid)
    by_method: dict[str, list[dict]] = {}
    for r in recorder.requests:
        h = r["headers"]
        assert h["accept"] == "application/json" and h["odata-maxversion"] == "4.0"
        assert h["odata-version"] == "4.0" and h["user-agent"] == "senseimig/test"
        by_method.setdefault(r["method"], []).append(h)
    assert set(by_method) == {"POST", "GET", "PATCH", "DELETE"}
    for h in by_method["POST"] + by_method["PATCH"]:
        assert h["content-type"] == "application/json" and "if-none-match" not in h
    for h in by_method["GET"] + by_method["DELETE"]:
        assert "content-type" not in h
    assert all(h["if-none-match"] == "null" for h in by_method["GET"])
    assert by_method["PATCH"][0]["if-match"] == "*"


def test_dop_hint_is_read_and_the_affinity_cookie_is_kept_only_when_asked(emulator: DataverseEmulator,
                                                                          sleeps: Sleeps) -> None:
    extra = [("x-ms-dop-hint", "12"), ("Set-Cookie", "ARRAffinity=server-3; Path=/; HttpOnly")]
    for affinity in (False, True):
        recorder = Recorder(emulator, extra=extra)
        with make_client(recorder, sleeps, affinity=affinity) as client:
            assert client.dop_hint is None
            client.count("contacts")
            client.count("contacts")
            assert client.dop_hint == 12
        sent = recorder.requests[1]["headers"].get("cookie")
        assert sent == ("ARRAffinity=server-3" if affinity else None)


# -- over real HTTP -------------------------------------------------------------------------------------------------

def test_over_real_http_round_trip_and_paging(emulator: DataverseEmulator, sleeps: Sleeps) -> None:
    with serve_wsgi(emulator) as url, DataverseClient(url, None, sleep=sleeps, timeout=10) as client:
        ids = [client.create("contacts", {"lastname": f"L{i}", KEY: f"H-{i}"}) for i in range(5)]
        assert client.upsert("contacts", {KEY: "H-0"}, {"lastname": "Z"}) == "updated"
        assert client.retrieve("contacts", {KEY: "H-0"}, select=["lastname"])["lastname"] == "Z"
        rows = list(client.query("contacts", [KEY], page_size=2))
        assert sorted(r["contactid"] for r in rows) == sorted(ids)
        client.delete("contacts", ids[0])
        assert client.count("contacts") == 4


def test_over_real_http_with_a_429_and_bearer_auth(tmp_path: Path, entra: Entra, sleeps: Sleeps) -> None:
    catalog = Catalog.load()
    store = RecordStore(tmp_path / "auth.sqlite", catalog)
    app = Recorder(DataverseEmulator(catalog, store, token_validator=entra.stand_in.token_info, tenant=TENANT),
                   faults=[(429, [("Retry-After", "2")], THROTTLED)])
    try:
        with serve_wsgi(app) as url:
            provider = EntraTokenProvider(TENANT, CLIENT_ID, SECRET, url, authority_host=entra.url,
                                              verify=entra.ca)
            with provider, DataverseClient(url, BearerAuth(provider), sleep=sleeps, timeout=10) as client:
                rid = client.create("accounts", {"name": "Clinic"})
                assert client.retrieve("accounts", rid, select=["name"])["name"] == "Clinic"
        assert sleeps == [2.0]
        assert all(r["headers"]["authorization"].startswith("Bearer ") for r in app.requests)
    finally:
        store.close()
