"""Document bytes held for a moment (fetched from Sensei, then sent as a note body, in blocks, or to SharePoint):
in memory up to a limit, beyond it in a temporary file encrypted with a key only this process holds, so a large
scan never lands on disk in clear (a temp folder outlives the run, and is often shared and backed up).

AES-256 in CTR mode (``cryptography``, which msal already requires): any offset can be read back without reading
what precedes it, as block uploads and resumable upload sessions do. The key and counter are random per file and
live only in this object; the file is unnamed and gone when it is closed.
"""

from __future__ import annotations

import os
import tempfile
from typing import IO

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_BLOCK = 16


class EncryptedSpool:
    """Bytes written once, front to back, then read at any offset; see the module's docstring."""

    def __init__(self, max_memory: int):
        self.max_memory, self.size = max_memory, 0
        self._memory = bytearray()
        self._file: IO[bytes] | None = None
        self._key, self._counter = os.urandom(32), int.from_bytes(os.urandom(_BLOCK), "big")
        self._encryptor = None

    @property
    def spilled(self) -> bool:
        return self._file is not None

    def write(self, data: bytes) -> None:
        if self._file is None and len(self._memory) + len(data) <= self.max_memory:
            self._memory += data
        else:
            if self._file is None:
                self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
                self._encryptor = self._cipher(0).encryptor()
                self._file.write(self._encryptor.update(bytes(self._memory)))
                self._memory = bytearray()
            self._file.write(self._encryptor.update(data))
        self.size += len(data)

    def read(self, offset: int, length: int) -> bytes:
        if self._file is None:
            return bytes(self._memory[offset:offset + length])
        end = min(offset + length, self.size)
        if end <= offset:
            return b""
        start = offset - offset % _BLOCK  # CTR: decrypt from the block the offset falls in
        self._file.flush()
        self._file.seek(start)
        return self._cipher(start // _BLOCK).decryptor().update(self._file.read(end - start))[offset - start:]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._memory = bytearray()

    def _cipher(self, block: int) -> Cipher:
        counter = (self._counter + block) % (1 << 128)
        return Cipher(algorithms.AES(self._key), modes.CTR(counter.to_bytes(_BLOCK, "big")))
