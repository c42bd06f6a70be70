"""Opaque, tamper-evident page tokens.

A token carries the keyset position (last row served), the page number it leads to and the filters it was issued
for, as urlsafe base64 JSON plus a truncated HMAC-SHA256. A forged or mangled token is a 400, never a wrong page.
The secret is per simulator instance, so tokens do not outlive the process that issued them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass

import orjson

from senseimig_dagster.sandbox.sensei_sim.store import Cursor, Window


class BadToken(ValueError):
    pass


@dataclass(frozen=True)
class PageState:
    endpoint: str
    page: int  # 1-based number of the page this token fetches
    after: Cursor
    window: Window


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenCodec:
    def __init__(self, secret: bytes | None = None):
        self._secret = secret or os.urandom(32)

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[:16]

    def encode(self, state: PageState) -> str:
        c, w = state.after, state.window
        payload = orjson.dumps([state.endpoint, state.page, c.ts, c.id, c.line, w.since, w.before, w.location])
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def decode(self, token: str) -> PageState:
        try:
            body, mac = token.split(".")
            payload = _unb64(body)
            # Compare text, not decoded bytes: base64 ignores the spare low bits of the last character.
            if body != _b64(payload) or not hmac.compare_digest(mac, _b64(self._mac(payload))):
                raise BadToken("page_token was not issued by this server")
            endpoint, page, ts, id_, line, since, before, location = orjson.loads(payload)
        except (ValueError, binascii.Error, TypeError) as exc:
            raise BadToken("page_token is malformed") from exc
        return PageState(endpoint, page, Cursor(ts, id_, line), Window(since, before, location))
