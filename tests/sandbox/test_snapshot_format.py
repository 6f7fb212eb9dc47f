import struct

import pytest

from wasmlambda.sandbox import Snapshot, SnapshotFormatError


def test_round_trip() -> None:
    snapshot = Snapshot("abc123", 120, b"\x00\x10\x00\x00\x04\x00\x00\x00", b"WXYZ")
    assert Snapshot.from_bytes(snapshot.to_bytes()) == snapshot
    assert snapshot.range_count == 1


@pytest.mark.parametrize("cut", [0, 5, 12, 20, 30])
def test_truncated_file_is_rejected(cut: int) -> None:
    data = Snapshot("abc123", 120, b"\x00\x10\x00\x00\x04\x00\x00\x00", b"WXYZ").to_bytes()
    with pytest.raises(SnapshotFormatError):
        Snapshot.from_bytes(data[:cut])


def test_foreign_file_is_rejected() -> None:
    with pytest.raises(SnapshotFormatError, match="not a wasmlambda snapshot"):
        Snapshot.from_bytes(b"\x7fELF" + bytes(100))


def test_a_damaged_payload_fails_its_checksum() -> None:
    data = bytearray(Snapshot("abc123", 120, b"\x00\x10\x00\x00\x04\x00\x00\x00", b"WXYZ").to_bytes())
    data[-2] ^= 0xFF
    with pytest.raises(SnapshotFormatError, match="checksum"):
        Snapshot.from_bytes(bytes(data))


@pytest.mark.parametrize(("ranges", "payload", "message"), [
    (struct.pack("<II", 65530, 10), b"0123456789", "past its 65536-byte memory"),
    (struct.pack("<II", 0xFFFFFFF0, 0x20), bytes(0x20), "past its"),
    (struct.pack("<II", 0, 10), b"short", "ranges and payload disagree"),
])
def test_ranges_outside_the_memory_are_refused(ranges: bytes, payload: bytes, message: str) -> None:
    # Written with a valid checksum: only the range check stands between them and the memcpy.
    with pytest.raises(SnapshotFormatError, match=message):
        Snapshot.from_bytes(Snapshot("abc123", 1, ranges, payload).to_bytes())
