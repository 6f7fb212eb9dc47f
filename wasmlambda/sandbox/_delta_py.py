"""Memory deltas: what a function's import changed in the base snapshot.

Theory of operation: a function's snapshot is the guest's linear memory after
its handler module was imported, stored as the byte ranges that differ from
the freshly instantiated base image.  Memory past the base image's end
starts out zero, so it is compared against zeros.  Applying a delta is a
memcpy per range; this module is the pure-Python spec of that loop and
``wasmlambda/_fastpath/_delta.pyx`` its Cython twin.

Ranges come from a two-level scan: 4 KiB chunks are compared first (a C
memcmp per chunk), then differing chunks in 32-byte blocks, and neighbouring
differing blocks merge into one range.  That keeps a small handler's delta
to tens of KiB, about 20 times less than whole pages.
"""

from __future__ import annotations

import ctypes
import struct

CHUNK = 4096
BLOCK = 32
_RANGE = struct.Struct("<II")


def diff(base: bytes, current: bytes, start: int = 0) -> tuple[bytes, bytes]:
    """Return ``(ranges, payload)``: packed (offset, length) u32 pairs and the
    concatenated new bytes, for every range of ``current[start:]`` that
    differs from ``base`` (zero-extended)."""
    ranges = bytearray()
    payload = bytearray()
    run_start = run_end = -1
    base_len = len(base)
    zero_chunk = bytes(CHUNK)
    for chunk in range(start - start % CHUNK, len(current), CHUNK):
        new = current[chunk:chunk + CHUNK]
        old = base[chunk:chunk + CHUNK] if chunk < base_len else zero_chunk[:len(new)]
        if len(old) < len(new):
            old += bytes(len(new) - len(old))
        if new == old:
            continue
        for block in range(max(0, start - chunk), len(new), BLOCK):
            if new[block:block + BLOCK] == old[block:block + BLOCK]:
                continue
            offset = chunk + block
            end = min(offset + BLOCK, chunk + len(new))
            if offset == run_end:
                run_end = end
                continue
            if run_start >= 0:
                ranges += _RANGE.pack(run_start, run_end - run_start)
                payload += current[run_start:run_end]
            run_start, run_end = offset, end
    if run_start >= 0:
        ranges += _RANGE.pack(run_start, run_end - run_start)
        payload += current[run_start:run_end]
    return bytes(ranges), bytes(payload)


def apply(address: int, ranges: bytes, payload: bytes) -> None:
    """Copy each range of ``payload`` to ``address + offset``.  The caller
    guarantees the memory at ``address`` is large enough (it grows the
    guest's memory to the snapshot's size first)."""
    source = ctypes.cast(ctypes.c_char_p(payload), ctypes.c_void_p).value or 0
    for offset, length in _RANGE.iter_unpack(ranges):
        ctypes.memmove(address + offset, source, length)
        source += length
