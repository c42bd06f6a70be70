"""A page the JSON parser refuses, split down to the record."""

from __future__ import annotations

import pytest

from senseimig_dagster.sensei.json_split import Unparsed, split_page

GOOD = b'{"id": "a", "note": "x, [y] {z} \\" quoted", "tags": [{"k": [1, 2]}]}'


def page(*records: bytes, token: bytes = b'"t2"') -> bytes:
    return b'{"object": "patient", "data": [' + b", ".join(records) + b'], "next_page_token": ' + token + \
        b', "total_count": 9}'


def test_a_record_with_a_lone_surrogate_is_set_aside_with_its_id():
    split = split_page(page(GOOD, b'{"id": "b", "name": "a\\ud800b"}', b'{"id": "c"}'))
    assert split is not None and (split.next_token, split.total_count) == ("t2", 9)
    first, bad, last = split.records
    assert first["note"] == 'x, [y] {z} " quoted' and first["tags"] == [{"k": [1, 2]}] and last == {"id": "c"}
    assert isinstance(bad, Unparsed) and (bad.reason, bad.source_id) == ("invalid_encoding", "b")
    assert "ud800" in bad.raw and "ud800" not in bad.cause


@pytest.mark.parametrize(("record", "reason"), [
    (b'{"id": "b", "name": "\xff\xfe"}', "invalid_encoding"),
    (b'{"id": "b", "name": "tab\there" "x"}', "malformed_record"),
    (b'{"id": "b" "name": 1}', "malformed_record"),
    (b'{"id": NaN-ish}', "malformed_record"),
])
def test_records_that_do_not_parse_are_named(record: bytes, reason: str):
    split = split_page(page(GOOD, record))
    assert split is not None and split.records[0]["id"] == "a"
    assert isinstance(split.records[1], Unparsed) and split.records[1].reason == reason


def test_an_empty_page_and_a_last_page():
    split = split_page(page(token=b"null"))
    assert split is not None and split.records == [] and split.next_token is None


@pytest.mark.parametrize("body", [
    page(GOOD)[:-20],  # cut short in transit
    page(GOOD) + b' {"more": 1}',  # two documents
    b'[' + GOOD + b']',  # not the page object
    b'{"object": "patient", "next_page_token": null}',  # no data
    page(GOOD, token=b"12"),  # a token that is not a string
    b"",
])
def test_a_body_without_a_whole_envelope_is_left_to_the_retries(body: bytes):
    assert split_page(body) is None
