"""Log records of the product and its HTTP stack carry no file names, filter values or quoted server text, at any
level; other loggers are left alone."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from senseimig_dagster.privacy.logs import install, redact
from senseimig_dagster.resources import build_resources

FILE_URL = "https://graph.microsoft.com/v1.0/drives/b!x/root:/0f6c1a2e/Jane%20Roe%20x-ray.dcm:/content"
FILTER_URL = "https://org.crm.dynamics.com/api/data/v9.2/contacts?$filter=emailaddress1 eq 'jane.roe@mail.com'"


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    caught: list[logging.LogRecord] = []
    handler = logging.Handler(level=logging.DEBUG)
    handler.emit = caught.append  # type: ignore[method-assign]
    root = logging.getLogger()
    old_level, old_factory = root.level, logging.getLogRecordFactory()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield caught
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        logging.setLogRecordFactory(old_factory)


def test_redact_keeps_the_host_and_drops_paths_queries_and_quoted_text() -> None:
    assert redact(f'HTTP Request: PUT {FILE_URL} "HTTP/1.1 201 Created"') == \
        "HTTP Request: PUT https://graph.microsoft.com/… '…'"
    assert "jane.roe" not in redact(f"GET {FILTER_URL}")
    assert redact("server said: 'Jane Roe' is invalid") == "server said: '…' is invalid"


def test_every_level_of_the_product_and_http_loggers_is_redacted(records: list[logging.LogRecord]) -> None:
    install()
    install()  # idempotent
    logging.getLogger("httpx").info('HTTP Request: %s %s "%s %d %s"', "PUT", FILE_URL, "HTTP/1.1", 201, "Created")
    logging.getLogger("httpcore.http11").debug("send_request_headers.started request=<Request [b'GET']> %s",
                                               FILTER_URL)
    logging.getLogger("senseimig.dataverse").debug("failed: %s", "'Jane Roe' exceeds 50 characters")
    logging.getLogger("someone.else").info("left alone: 'x'")
    text = [r.getMessage() for r in records]
    assert not any("Jane" in t or "x-ray" in t or "jane.roe" in t for t in text[:3]), text
    assert text[0].startswith("HTTP Request: PUT https://graph.microsoft.com/…")
    assert text[3] == "left alone: 'x'"


def test_building_the_resources_installs_it(records: list[logging.LogRecord]) -> None:
    build_resources("data/x.duckdb")
    logging.getLogger("httpx").info("HTTP Request: GET %s", FILE_URL)
    assert "x-ray" not in records[-1].getMessage()
