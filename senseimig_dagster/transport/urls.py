"""Which endpoints a client may talk to: https, or plain http on this machine only (the local stand-ins). The Sensei
API key and Entra's bearer tokens travel in headers; over http on a network anyone on the path could read them."""

from __future__ import annotations

from urllib.parse import urlsplit

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def require_https(url: str, what: str) -> str:
    """``url`` unchanged when it is https, or http to a loopback address; else a ValueError naming ``what``."""
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and (parts.hostname or "") in LOOPBACK):
        return url
    raise ValueError(f"{what} must be an https:// URL (plain http is allowed only for 127.0.0.1/localhost); got "
                     f"{parts.scheme or '(no scheme)'}://{parts.hostname or ''}")
