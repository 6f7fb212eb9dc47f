"""A function's snapshot: a memory delta over one exact base image.

File layout (little endian): magic, base-id length + base id, the memory
size in wasm pages, the range count, the packed (offset, length) ranges, then
the payload.  ``base_id`` names the runtime image the delta was taken
against; a delta is meaningless over any other image, so loading checks it.
"""

from __future__ import annotations

import dataclasses
import struct

from .. import _fastpath
from . import _delta_py

_delta = _fastpath.pick("_delta", _delta_py)
MAGIC = b"WLSNAP1\n"
_HEADER = struct.Struct("<8sH")
_SIZES = struct.Struct("<III")


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
            _SIZES.pack(self.pages, self.range_count, len(self.payload)),
            self.ranges, self.payload,
        ))

    @classmethod
    def from_bytes(cls, data: bytes) -> Snapshot:
        try:
            magic, id_length = _HEADER.unpack_from(data)
            if magic != MAGIC:
                raise SnapshotFormatError("not a wasmlambda snapshot")
            offset = _HEADER.size
            base_id = data[offset:offset + id_length].decode()
            offset += id_length
            pages, count, payload_length = _SIZES.unpack_from(data, offset)
            offset += _SIZES.size
        except (struct.error, UnicodeDecodeError) as exc:
            raise SnapshotFormatError(f"truncated snapshot: {exc}") from None
        ranges = data[offset:offset + 8 * count]
        payload = data[offset + 8 * count:]
        if len(ranges) != 8 * count or len(payload) != payload_length:
            raise SnapshotFormatError("truncated snapshot")
        return cls(base_id, pages, ranges, payload)
