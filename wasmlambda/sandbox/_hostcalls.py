"""Guest-to-host calls: the two imports of module ``wasmlambda``.

Theory of operation: a guest hands the host one request with
``host_call(ptr, len) -> len`` and collects the answer with
``host_read(ptr)`` into a buffer it sized from that length (see the shim).
The request and response bytes are opaque here: ``dispatch`` (the kernel's
services) gives them meaning.  The pending response is kept per thread,
because a guest call runs entirely on one sandbox thread.  An empty request
is the guest saying it is about to block (a sleep): answered 0.  In a call
that may not block (``current.call.may_block`` false: the host runs it on
its event loop's thread), any host call traps instead, before it happens.

This is the pure-Python twin, on wasmtime-py's trampolines (~15 µs per
import call); ``HostImports`` in wasmlambda/_fastpath/_call.pyx defines the
same imports as C callbacks.  ``_call.link_host_calls`` picks one.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable

import wasmtime

Dispatch = Callable[[bytes], bytes]
# The guest call each thread is running (_call_py.GuestCall), for its may_block.
current = threading.local()
NO_SERVICES = b'{"error": "this worker runs no host services"}'


class HostCalls:
    def __init__(self, dispatch: Dispatch | None, log: Callable[[str], None] = print) -> None:
        self._dispatch = dispatch
        self._log = log
        self._pending = threading.local()

    def link(self, linker: wasmtime.Linker) -> None:
        i32 = wasmtime.ValType.i32()
        linker.define_func("wasmlambda", "host_call", wasmtime.FuncType([i32, i32], [i32]), self._call,
                           access_caller=True)
        linker.define_func("wasmlambda", "host_read", wasmtime.FuncType([i32], []), self._read, access_caller=True)

    def _call(self, caller: wasmtime.Caller, address: int, size: int) -> int:
        call = getattr(current, "call", None)
        if call is not None and not call.may_block:
            call.blocked = True
            raise wasmtime.Trap("wasmlambda: a call that may not block made a host call")
        if size == 0:
            return 0  # "about to block": fine here
        memory: wasmtime.Memory = caller["memory"]  # type: ignore[assignment]
        try:
            request = bytes(memory.read(caller, address, address + size))
            response = self._dispatch(request) if self._dispatch is not None else NO_SERVICES
        except Exception:
            # Dispatch answers service errors itself; this is a bug: tell the
            # guest (it raises) and the operator, and keep the worker up.
            self._log("host call failed:\n" + traceback.format_exc())
            return -1
        self._pending.response = response
        return len(response)

    def _read(self, caller: wasmtime.Caller, address: int) -> None:
        response: bytes = getattr(self._pending, "response", b"")
        self._pending.response = b""
        memory: wasmtime.Memory = caller["memory"]  # type: ignore[assignment]
        memory.write(caller, response, address)
