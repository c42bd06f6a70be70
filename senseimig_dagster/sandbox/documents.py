"""Deterministic document content for the sandbox tenant.

The generator records ``size_bytes`` and ``sha256`` of each document; the simulator serves the bytes. Both
call the functions here, so content is never stored: it is re-derived from (seed, document id, size, MIME
type).

Content = a real file signature for the type + filler + the type's trailer, exactly ``size`` bytes. The filler
is a small seeded pseudo-random block repeated: generating it costs a memcpy, so a 12 MB scan streams at
memory speed and hashing (not generation) is the only real cost.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator

BLOCK = 4096  # filler period; small so that a tiny document does not pay for a big block

_HTML_HEAD = (
    b'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Eligibility response</title>'
    b"</head><body><pre>\n"
)
_SIGNATURES: dict[str, tuple[bytes, bytes]] = {
    "application/pdf": (
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\nstream\n",
        b"\nendstream\n%%EOF\n",
    ),
    "image/png": (
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x04\x00\x00\x00\x03\x00\x08\x02\x00\x00\x00",
        b"\x00\x00\x00\x00IEND\xaeB`\x82",
    ),
    "image/jpeg": (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00", b"\xff\xd9"),
    "application/dicom": (b"\x00" * 128 + b"DICM\x02\x00\x00\x00UL\x04\x00", b""),
    "text/html": (_HTML_HEAD, b"\n</pre></body></html>\n"),
    "text/plain": (b"", b"\n"),
}
_TEXT_TYPES = frozenset({"text/html", "text/plain"})


class _Layout:
    """A document as three regions (head, periodic filler, tail) that can be sliced at any offset."""

    def __init__(self, seed: int, document_id: str, size: int, mime_type: str, window: int) -> None:
        head, tail = _SIGNATURES.get(mime_type, (b"", b""))
        if size < len(head) + len(tail):  # too small for a whole signature: a truncated file
            head, tail = (head + tail)[:size], b""
        self.head, self.tail = head, tail
        self.body_len = size - len(head) - len(tail)
        block = b""
        if self.body_len:
            block = random.Random(f"{seed}:{document_id}").randbytes(BLOCK)
            if mime_type in _TEXT_TYPES:  # text types stay printable ASCII
                block = base64.encodebytes(block)[:BLOCK]
        # `window` bytes starting at any offset inside the first block, without modular arithmetic per byte
        self._rep = block * (min(window, self.body_len) // BLOCK + 2) if block else b""

    def _body(self, start: int, end: int) -> bytes:
        offset = start % BLOCK
        return self._rep[offset : offset + end - start]

    def read(self, start: int, end: int) -> bytes:
        head_len, body_end = len(self.head), len(self.head) + self.body_len
        parts = []
        if start < head_len:
            parts.append(self.head[start : min(end, head_len)])
        lo, hi = max(start, head_len), min(end, body_end)
        if lo < hi:
            parts.append(self._body(lo - head_len, hi - head_len))
        if end > body_end:
            parts.append(self.tail[max(start - body_end, 0) : end - body_end])
        return b"".join(parts)


def iter_document_bytes(
    seed: int, document_id: str, size: int, mime_type: str, chunk_size: int = 1 << 20
) -> Iterator[bytes]:
    """The content in chunks of ``chunk_size`` bytes (the last may be shorter); nothing for size 0."""
    if size < 0 or chunk_size <= 0:
        raise ValueError("size must be >= 0 and chunk_size > 0")
    layout = _Layout(seed, document_id, size, mime_type, chunk_size)
    for start in range(0, size, chunk_size):
        yield layout.read(start, min(start + chunk_size, size))


def document_bytes(seed: int, document_id: str, size: int, mime_type: str) -> bytes:
    """The whole document; prefer ``iter_document_bytes`` for large ones."""
    if size < 0:
        raise ValueError("size must be >= 0")
    return _Layout(seed, document_id, size, mime_type, size).read(0, size)
