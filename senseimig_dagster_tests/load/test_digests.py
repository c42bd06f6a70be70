"""The load journal's column digests and the documents' note-column digest are keyed (HMAC with a key derived from
the stores' key): a short value such as an SSN's last four digits cannot be found by hashing every candidate without
the key."""

from __future__ import annotations

from senseimig_dagster.load.document_writer import meta_hash
from senseimig_dagster.load.writer import digest
from senseimig_dagster.privacy.encryption import digest_key


def test_a_keyed_digest_cannot_be_brute_forced_without_the_key() -> None:
    key = digest_key("the-stores-key")
    stored = digest("4821", key)
    assert stored == digest("4821", key)  # stable: unchanged bodies are still recognised
    assert stored != digest("4821", digest_key("another-key"))
    unkeyed = {digest(f"{n:04d}"): f"{n:04d}" for n in range(10_000)}
    assert stored not in unkeyed  # every candidate hashed without the key: no match


def test_the_documents_note_columns_digest_is_keyed_like_the_journals() -> None:
    key = digest_key("the-stores-key")
    fields = {"subject": "Consent", "notetext": "1984-02-29", "smig_sourcesystemid": "d1"}
    stored = meta_hash(fields, key)
    assert stored == meta_hash(dict(reversed(fields.items())), key)  # stable: an unchanged note is recognised
    assert stored != meta_hash(fields, digest_key("another-key")) and stored != meta_hash(fields)
    candidates = {meta_hash({**fields, "notetext": f"1984-02-{d:02d}"}) for d in range(1, 30)}
    assert stored not in candidates  # every candidate hashed without the key: no match
