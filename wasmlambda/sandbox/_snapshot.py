"""A function's snapshot: a memory delta over one exact base image.

File layout (little endian): magic, base-id length + base id, the memory
size in wasm pages, the range count, the payload length, the SHA-256 of
ranges and payload, the packed (offset, length) ranges, then the payload.
``base_id`` names the runtime image the delta was taken against; a delta is
meaningless over any other image, so loading checks it.

Applying a delta is a memcpy per range with no checks (the hot path of a
cold start), so loading checks everything once: the digest (a damaged or
truncated file is refused, not applied), and that every range lies inside
the memory the snapshot declares and the payload holds exactly the bytes
the ranges name.  (docs/guest-abi.md, "Snapshots".)
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct

from .. import _fastpath
from . import _delta_py

_delta = _fastpath.pick("_delta", _delta_py)
MAGIC = b"WLSNAP2\n"
_HEADER = struct.Struct("<8sH")
_SIZES = struct.Struct("<III32s")
_RANGE = struct.Struct("<II")
_WASM_PAGE = 65536


class SnapshotFormatError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Snapshot:
    base_id: str
    pages: int
    ranges: bytes
    payload: bytes

    @classmethod
    def take(cls, base_id: str, base: bytes, current: bytes, skip: int) -> Snapshot:
        ranges, payload = _delta_py.diff(base, current, skip)
        return cls(base_id, len(current) // 65536, ranges, payload)

    def apply(self, address: int) -> None:
        _delta.apply(address, self.ranges, self.payload)

    @property
    def range_count(self) -> int:
        return len(self.ranges) // 8

    def to_bytes(self) -> bytes:
        base_id = self.base_id.encode()
        return b"".join((
            _HEADER.pack(MAGIC, len(base_id)), base_id,
            _SIZES.pack(self.pages, self.range_count, len(self.payload), _digest(self.ranges, self.payload)),
            self.ranges, self.payload,
        ))

    @classmethod
    def from_bytes(cls, data: bytes) -> Snapshot:
        try:
            magic, id_length = _HEADER.unpack_from(data)
            if magic != MAGIC:
                raise SnapshotFormatError("not a wasmlambda snapshot (or one of an older format)")
            offset = _HEADER.size
            base_id = data[offset:offset + id_length].decode()
            offset += id_length
            pages, count, payload_length, digest = _SIZES.unpack_from(data, offset)
            offset += _SIZES.size
        except (struct.error, UnicodeDecodeError) as exc:
            raise SnapshotFormatError(f"truncated snapshot: {exc}") from None
        ranges = data[offset:offset + 8 * count]
        payload = data[offset + 8 * count:]
        if len(ranges) != 8 * count or len(payload) != payload_length:
            raise SnapshotFormatError("truncated snapshot")
        if _digest(ranges, payload) != digest:
            raise SnapshotFormatError("damaged snapshot: its checksum does not match")
        snapshot = cls(base_id, pages, ranges, payload)
        snapshot.check()
        return snapshot

    def check(self) -> None:
        """Every range inside the declared memory, the payload exactly the ranges' bytes."""
        memory = self.pages * _WASM_PAGE
        total = 0
        for offset, length in _RANGE.iter_unpack(self.ranges):
            if offset + length > memory:
                raise SnapshotFormatError(f"damaged snapshot: a range ends at {offset + length}, "
                                          f"past its {memory}-byte memory")
            total += length
        if total != len(self.payload):
            raise SnapshotFormatError("damaged snapshot: its ranges and payload disagree")


def _digest(ranges: bytes, payload: bytes) -> bytes:
    return hashlib.sha256(ranges + payload).digest()
