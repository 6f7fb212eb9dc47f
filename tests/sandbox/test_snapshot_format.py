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
