"""Document bytes past the memory limit go to a temporary file that holds only ciphertext, and read back equal at
any offset (block uploads and upload sessions read from the middle)."""

from __future__ import annotations

import hashlib

from senseimig_dagster.privacy.spill import EncryptedSpool

MARKER = b"PATIENT Jane Roe DOB 1984-02-29 "


def _data(n: int) -> bytes:
    return b"".join(MARKER + hashlib.sha256(str(i).encode()).digest() for i in range(n))


def test_small_documents_stay_in_memory() -> None:
    spool = EncryptedSpool(1024)
    spool.write(b"abc")
    assert not spool.spilled and spool.read(1, 10) == b"bc"


def test_a_spilled_document_is_ciphertext_on_disk_and_reads_back_at_any_offset() -> None:
    data = _data(5000)  # 320 kB
    spool = EncryptedSpool(max_memory=50_000)
    for i in range(0, len(data), 7_777):  # chunks of an odd size, as they arrive
        spool.write(data[i:i + 7_777])
    assert spool.spilled and spool.size == len(data)
    spool._file.seek(0)  # noqa: SLF001 - what is on disk
    on_disk = spool._file.read()  # noqa: SLF001
    assert len(on_disk) == len(data) and MARKER not in on_disk
    for offset, length in ((0, 100), (15, 17), (16, 16), (49_999, 3), (123_457, 65_536), (len(data) - 5, 100)):
        assert spool.read(offset, length) == data[offset:offset + length]
    assert spool.read(len(data), 10) == b""
    spool.close()
    assert not spool.spilled


def test_each_spool_has_its_own_key() -> None:
    a, b = EncryptedSpool(0), EncryptedSpool(0)
    a.write(MARKER)
    b.write(MARKER)
    a._file.seek(0)  # noqa: SLF001
    b._file.seek(0)  # noqa: SLF001
    assert a._file.read() != b._file.read()  # noqa: SLF001
