"""GraphDrive against the Graph and Entra ID stand-ins over real HTTPS, with msal tokens."""

from __future__ import annotations

import hashlib
import os

import pytest

from senseimig_dagster.graph.drive import SIMPLE_UPLOAD_MAX, GraphDrive
from senseimig_dagster.graph.errors import GraphError
from senseimig_dagster.graph.quickxor import quick_xor_hash
from senseimig_dagster_tests.support.environments import GraphEnv
from senseimig_dagster_tests.support.wire import Fault, fragment_at

QUANTUM = 327_680


def _reader(data: bytes):
    return lambda offset, length: data[offset:offset + length]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _upload_puts(env: GraphEnv) -> list[tuple[str, str, str | None, bool]]:
    return [s for s in env.faulty.seen if s[0] == "PUT" and s[1].startswith("/_upload/")]


@pytest.fixture
def drive(graph_env: GraphEnv):
    with graph_env.drive() as d:
        yield d


def test_library_url_and_folder_idempotent(drive: GraphDrive, graph_env: GraphEnv) -> None:
    assert drive.library_url == "https://contoso.sharepoint.com/sites/dental/contact"
    first = drive.ensure_folder("Ann Example_0A1B2C")
    assert drive.ensure_folder("Ann Example_0A1B2C") == first
    with graph_env.drive() as other:  # a fresh client (no cache) finds it too, by a 404-free GET, no new POST
        assert other.ensure_folder("ann example_0a1b2c") == first
    posts = [s for s in graph_env.faulty.seen if s[0] == "POST" and s[1].endswith("/children")]
    assert len(posts) == 1
    nested = drive.ensure_folder("a/b")
    assert nested != drive.ensure_folder("a")


def test_make_folder_says_who_created_it_and_only_an_empty_folder_is_deleted(
        drive: GraphDrive, graph_env: GraphEnv) -> None:
    made, created = drive.make_folder("P1")
    assert created is True and drive.make_folder("P1") == (made, False)
    with graph_env.drive() as other:
        assert other.make_folder("p1") == (made, False)  # found, not made, by a fresh client
    data = b"x" * 1000
    drive.upload("P1", "a.pdf", _reader(data), len(data))
    assert drive.delete_folder_if_empty(made) == "not_empty" and drive.find("P1", "a.pdf") is not None
    drive.delete(drive.find("P1", "a.pdf").id)
    assert drive.delete_folder_if_empty(made) == "deleted"
    assert drive.delete_folder_if_empty(made) == "absent"
    assert drive.make_folder("P1")[1] is True  # the cache forgot it: made again


def test_small_upload_reads_back_equal(drive: GraphDrive, graph_env: GraphEnv) -> None:
    data = os.urandom(200_000)
    stored = drive.upload("p1", "consent.pdf", _reader(data), len(data))
    assert stored.size == len(data) and stored.quick_xor_hash == quick_xor_hash(data)
    assert stored.web_url == "https://contoso.sharepoint.com/sites/dental/contact/p1/consent.pdf"
    assert _sha(b"".join(drive.download(stored.id))) == _sha(data)
    assert drive.find("p1", "consent.pdf") == stored
    assert drive.find("p1", "missing.pdf") is None
    assert not _upload_puts(graph_env)  # simple PUT, no session


def test_zero_byte_file(drive: GraphDrive) -> None:
    stored = drive.upload("p1", "empty.txt", _reader(b""), 0)
    assert stored.size == 0 and b"".join(drive.download(stored.id)) == b""


def test_session_upload_in_320k_fragments_without_bearer(drive: GraphDrive, graph_env: GraphEnv) -> None:
    data = os.urandom(SIMPLE_UPLOAD_MAX + 3 * QUANTUM + 123)
    stored = drive.upload("p2", "pano.dcm", _reader(data), len(data))
    assert stored.size == len(data) and stored.quick_xor_hash == quick_xor_hash(data)
    assert _sha(b"".join(drive.download(stored.id))) == _sha(data)
    puts = _upload_puts(graph_env)
    assert len(puts) == -(-len(data) // QUANTUM)
    assert not any(auth for *_, auth in puts)  # the uploadUrl is pre-authenticated


def test_resume_after_503_and_dropped_fragments(drive: GraphDrive, graph_env: GraphEnv) -> None:
    data = os.urandom(SIMPLE_UPLOAD_MAX + 5 * QUANTUM)
    graph_env.faulty.faults += [Fault(fragment_at(2 * QUANTUM), "503"),
                                Fault(fragment_at(4 * QUANTUM), "drop_before"),
                                Fault(fragment_at(7 * QUANTUM), "drop_after")]
    stored = drive.upload("p3", "ceph.tif", _reader(data), len(data))
    assert _sha(b"".join(drive.download(stored.id))) == _sha(data)
    assert stored.quick_xor_hash == quick_xor_hash(data)
    starts = [int(r.split(" ")[1].split("-")[0]) for _, _, r, _ in _upload_puts(graph_env)]
    # 2Q and 4Q sent twice (refused/dropped before storing); 7Q once: the status GET said to go on at 8Q.
    assert starts.count(2 * QUANTUM) == 2 and starts.count(4 * QUANTUM) == 2 and starts.count(7 * QUANTUM) == 1
    status_gets = [s for s in graph_env.faulty.seen if s[0] == "GET" and s[1].startswith("/_upload/")]
    assert len(status_gets) == 3 and not any(auth for *_, auth in status_gets)


def test_lost_answer_on_last_fragment_is_found(drive: GraphDrive, graph_env: GraphEnv) -> None:
    data = os.urandom(SIMPLE_UPLOAD_MAX + 100)
    last = (len(data) // QUANTUM) * QUANTUM
    graph_env.faulty.faults.append(Fault(fragment_at(last), "drop_after"))
    stored = drive.upload("p4", "scan.pdf", _reader(data), len(data))
    assert stored.size == len(data) and _sha(b"".join(drive.download(stored.id))) == _sha(data)


def test_rerun_replaces_same_item(drive: GraphDrive) -> None:
    first = drive.upload("p5", "xray.png", _reader(b"old"), 3)
    new = os.urandom(SIMPLE_UPLOAD_MAX + 1)
    second = drive.upload("p5", "xray.png", _reader(new), len(new))
    assert second.id == first.id and second.size == len(new)
    assert _sha(b"".join(drive.download(second.id))) == _sha(new)


def test_bad_names_refused_before_any_request(drive: GraphDrive, graph_env: GraphEnv) -> None:
    drive.ensure_folder("p6")
    before = len(graph_env.faulty.seen)
    for name, reason in [("a:b.pdf", "forbidden_character"), ("CON.txt", "reserved_name"),
                         ("scan.", "trailing_dot_or_space"), ("x" * 390 + ".pdf", "too_long")]:
        with pytest.raises(ValueError, match=reason) as info:
            drive.upload("p6", name, _reader(b"x"), 1)
        assert name not in str(info.value)
    assert len(graph_env.faulty.seen) == before


def test_delete_is_idempotent(drive: GraphDrive) -> None:
    stored = drive.upload("p7", "a.pdf", _reader(b"abc"), 3)
    drive.delete(stored.id)
    drive.delete(stored.id)  # 404: already gone
    assert drive.find("p7", "a.pdf") is None
    folder = drive.ensure_folder("p7")
    drive.delete(folder)
    assert drive.ensure_folder("p7") != folder  # cache dropped; created again


def test_errors_carry_no_names(drive: GraphDrive, graph_env: GraphEnv) -> None:
    graph_env.stand_in.max_file_size = 10
    with pytest.raises(GraphError) as info:
        drive.upload("p8", "secret-name.pdf", _reader(b"x" * 11), 11)
    assert info.value.status == 413 and "secret-name" not in str(info.value) and "p8" not in str(info.value)


def test_bad_chunk_size_refused(graph_env: GraphEnv) -> None:
    with pytest.raises(ValueError):
        graph_env.drive(chunk_size=QUANTUM + 1)


def test_waits_retry_after_on_429(graph_env: GraphEnv) -> None:
    from senseimig_dagster.sandbox.graph import Throttle

    waits: list[float] = []
    graph_env.stand_in.throttle = Throttle(limit=2, window=3600)
    graph_env.stand_in.store.clock = lambda: 1_800_000_000.0 + len(waits) * 3600  # each wait opens a new window
    with graph_env.drive() as d:
        d._sleep = waits.append
        assert d.library_url.endswith("/contact")  # 2 requests
        d.ensure_folder("throttled")  # GET root: -> 429, waits Retry-After, then goes on
    assert waits and waits[0] == 3600.0
