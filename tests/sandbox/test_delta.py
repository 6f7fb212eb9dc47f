"""The delta spec and its Cython twin, on the same cases."""

from __future__ import annotations

import ctypes
import random
from types import ModuleType

import pytest

from wasmlambda import _fastpath
from wasmlambda.sandbox import _delta_py

IMPLEMENTATIONS = [pytest.param(_delta_py, id="python")]
if _fastpath.is_built("_delta"):
    IMPLEMENTATIONS.append(pytest.param(_fastpath.pick("_delta", _delta_py), id="cython"))


def restore(implementation: ModuleType, base: bytes, current: bytes, skip: int = 0) -> bytes:
    ranges, payload = _delta_py.diff(base, current, skip)
    memory = ctypes.create_string_buffer(base + bytes(len(current) - len(base)), len(current))
    implementation.apply(ctypes.addressof(memory), ranges, payload)
    return memory.raw


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("seed", range(5))
def test_apply_reproduces_current(implementation: ModuleType, seed: int) -> None:
    rng = random.Random(seed)
    base = rng.randbytes(5 * 4096 + 100)
    current = bytearray(base + bytes(rng.randrange(0, 3 * 4096)))
    for _ in range(rng.randrange(1, 60)):
        start = rng.randrange(len(current))
        for index in range(start, min(len(current), start + rng.randrange(1, 200))):
            current[index] = rng.randrange(256)
    assert restore(implementation, base, bytes(current)) == bytes(current)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_empty_delta(implementation: ModuleType) -> None:
    base = bytes(range(256)) * 64
    assert _delta_py.diff(base, base) == (b"", b"")
    assert restore(implementation, base, base) == base


def test_ranges_are_byte_granular_not_pages() -> None:
    base = bytes(64 * 4096)
    current = bytearray(base)
    current[5000] = 1
    current[5001] = 2
    current[200_000] = 3
    ranges, payload = _delta_py.diff(base, bytes(current))
    assert len(ranges) == 16  # two ranges
    assert len(payload) == 64  # two 32-byte blocks, not two 4 KiB pages


def test_neighbouring_blocks_merge() -> None:
    base = bytes(4096)
    current = bytearray(base)
    current[10:100] = b"\x01" * 90
    ranges, payload = _delta_py.diff(base, bytes(current))
    assert len(ranges) == 8 and len(payload) == 128  # blocks 0-3, one range


def test_skipped_prefix_is_ignored() -> None:
    base = bytes(3 * 4096)
    current = b"\xff" * 4096 + bytes(4096) + b"\x01" + bytes(4095)
    ranges, payload = _delta_py.diff(base, current, 4096)
    assert ranges == (2 * 4096).to_bytes(4, "little") + (32).to_bytes(4, "little")
    assert payload == b"\x01" + bytes(31)
