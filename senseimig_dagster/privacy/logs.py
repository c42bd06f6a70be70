"""Log records without record values or file names, from every logger the product's code and its HTTP stack use,
at every level.

The product's own loggers (``senseimig.*``) log ids, counts, codes and exception classes only; what they cannot
promise is what libraries log. httpx logs each request's URL at INFO ("HTTP Request: PUT https://graph.../root:/
<folder>/<file name>:/content"), and an OData URL carries filter values (``$filter=emailaddress1 eq '...'``);
httpcore and msal log at DEBUG. :func:`install` puts a log record factory in front of every logger of the process:
a record from those loggers has each URL cut to scheme and host and each quoted literal replaced, before any
handler (Dagster's captured logs included) sees it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

REDACTED_LOGGERS = ("senseimig", "httpx", "httpcore", "msal", "urllib3", "h2", "hpack")
_URL = re.compile(r"\b(https?://[^/\s\"'<>]+)[^\s\"'<>]*")
_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")


def redact(text: str) -> str:
    """``text`` with every URL cut to ``scheme://host/…`` and every quoted literal replaced by ``'…'``."""
    return _QUOTED.sub("'…'", _URL.sub(r"\1/…", text))


def _redacting(factory: Any) -> Any:
    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        if isinstance(record.name, str) and record.name.startswith(REDACTED_LOGGERS):
            record.msg, record.args = redact(record.getMessage()), None
        return record

    make.senseimig_redacting = True  # type: ignore[attr-defined]
    return make


def install() -> None:
    """Redact the records of :data:`REDACTED_LOGGERS` from now on, in this process (idempotent)."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "senseimig_redacting", False):
        logging.setLogRecordFactory(_redacting(factory))
