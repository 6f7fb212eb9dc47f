"""One call into a guest's ``wl_handle``, the hot path: pure-Python spec.

Write ``header + payload`` at ``input_address`` in the guest's memory, set
the epoch deadline, call ``wl_handle(size)`` and copy the response out of
the guest's memory.  Returns None when the guest answers -1 (it could not
build a response).  Failures surface as wasmtime's own ``Trap`` and
``WasmtimeError``, which :class:`~wasmlambda.sandbox.Instance` translates.

With ``may_block`` false, the guest's first host call (or its "about to
block" signal) traps the call and sets ``blocked`` (see _hostcalls.py).

``wasmlambda/_fastpath/_call.pyx`` is the twin: the same steps through the
Wasmtime C API with reused argument arrays, the GIL released for the call.
"""

from __future__ import annotations

import ctypes

import wasmtime

from . import _hostcalls

_FAILED = -1


class GuestCall:
    def __init__(self, store: wasmtime.Store, handle: wasmtime.Func, memory: wasmtime.Memory) -> None:
        self._store = store
        self._handle = handle
        self._memory = memory
        self.may_block = True
        self.blocked = False

    def memory_size(self) -> int:
        return self._memory.data_len(self._store)

    def call(self, header: bytes, payload: bytes, input_address: int, deadline_ticks: int,
             may_block: bool = True) -> bytes | None:
        store = self._store
        self.may_block, self.blocked = may_block, False
        store.set_epoch_deadline(deadline_ticks)
        size = len(header) + len(payload)
        if input_address + size > self.memory_size():
            raise wasmtime.WasmtimeError("the guest's input buffer lies outside its memory")
        base = ctypes.addressof(self._memory.data_ptr(store).contents)
        ctypes.memmove(base + input_address, header, len(header))
        ctypes.memmove(base + input_address + len(header), payload, len(payload))
        outer = getattr(_hostcalls.current, "call", None)
        _hostcalls.current.call = self
        try:
            packed = self._handle(store, size)
        finally:
            _hostcalls.current.call = outer
        if packed == _FAILED:
            return None
        address, length = (packed >> 32) & 0xFFFFFFFF, packed & 0xFFFFFFFF
        if address + length > self.memory_size():
            raise wasmtime.WasmtimeError("the guest's response lies outside its memory")
        return ctypes.string_at(ctypes.addressof(self._memory.data_ptr(store).contents) + address, length)
