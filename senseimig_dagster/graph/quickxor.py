"""QuickXorHash, the content hash SharePoint and OneDrive for Business report in ``file.hashes.quickXorHash``.

Algorithm as Microsoft publishes it (OneDrive/onedrive-api-docs ``docs/code-snippets/quickxorhash.md``): byte ``i``
is XORed into a 160-bit register rotated left by ``11 * i`` bits; the final register (little-endian) has the
64-bit little-endian data length XORed into its last 8 bytes; the result is base64. Because ``160 * 11 ≡ 0
(mod 160)``, bytes whose positions agree modulo 160 share a rotation, so we fold the input into 160 XOR lanes with
numpy and rotate each lane once at the end: fast enough for files of hundreds of MB.
"""

from __future__ import annotations

import base64

import numpy as np

WIDTH_BITS = 160
SHIFT = 11
_MASK = (1 << WIDTH_BITS) - 1


class QuickXorHash:
    """Incremental: ``update`` any number of times, then ``digest``/``b64digest``."""

    def __init__(self) -> None:
        self._lanes = np.zeros(WIDTH_BITS, dtype=np.uint8)  # lane k: XOR of bytes at positions ≡ k (mod 160)
        self.length = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        arr = np.frombuffer(data, dtype=np.uint8)
        head = self.length % WIDTH_BITS
        padded = np.zeros(head + arr.size + (-(head + arr.size)) % WIDTH_BITS, dtype=np.uint8)
        padded[head:head + arr.size] = arr
        self._lanes ^= np.bitwise_xor.reduce(padded.reshape(-1, WIDTH_BITS), axis=0)
        self.length += arr.size

    def digest(self) -> bytes:
        register = 0
        for lane, value in enumerate(self._lanes.tolist()):
            if value:
                rotated = value << ((lane * SHIFT) % WIDTH_BITS)
                register ^= (rotated | (rotated >> WIDTH_BITS)) & _MASK
        out = bytearray(register.to_bytes(WIDTH_BITS // 8, "little"))
        for i, b in enumerate(self.length.to_bytes(8, "little")):
            out[WIDTH_BITS // 8 - 8 + i] ^= b
        return bytes(out)

    def b64digest(self) -> str:
        return base64.b64encode(self.digest()).decode("ascii")


def quick_xor_hash(data: bytes) -> str:
    """The base64 QuickXorHash of ``data``, as Graph reports it."""
    h = QuickXorHash()
    h.update(data)
    return h.b64digest()
