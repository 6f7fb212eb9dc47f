"""The only package that imports wasmtime: the engine, instances, snapshots."""

from ._engine import STACK_BYTES, NativeProgram, Runtime, RuntimeImage
from ._instance import GUEST_CODE_DIR, GUEST_STDLIB, Entry, Instance, MustRunOnThread
from ._snapshot import Snapshot, SnapshotFormatError

__all__ = [
    "GUEST_CODE_DIR",
    "GUEST_STDLIB",
    "STACK_BYTES",
    "Entry",
    "Instance",
    "MustRunOnThread",
    "NativeProgram",
    "Runtime",
    "RuntimeImage",
    "Snapshot",
    "SnapshotFormatError",
]
