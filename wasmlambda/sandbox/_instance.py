"""One guest instance: a store, its memory and the two ABI entry points.

Theory of operation: the guest shim (runtimes/python/shim/wl_shim.c) keeps a
persistent input buffer.  A call writes ``opcode + payload`` into it and calls
``wl_handle(len)``, which returns ``(ptr << 32) | len`` of the response inside
guest memory; the response's first byte says success (``0``) or failure
(``E`` + JSON), and anything after a NUL is the call's logs (the protocol is
spelled out in runtimes/python/guest/_wl_runtime.py).  Traps are translated into the error tree here and nowhere
else.  After any trap the instance is dead and must not be reused.
The whole ABI, with the snapshot format, is in docs/guest-abi.md.

A call may be made *inline* (``inline_ms``): on a thread that must not
block for long, the host's event loop.  Then it gets at most ``inline_ms``
instead of its timeout, and its first host call or blocking WASI call
(a sleep) traps it before it happens; either way :class:`MustRunOnThread`
says so.  Such a call has done nothing outside its own instance (which is
dead now), so the caller may simply run it again on a sandbox thread.

An instance is used by one thread at a time; it may move between threads.
"""

from __future__ import annotations

import ctypes
import json
from typing import Any, NamedTuple

import wasmtime

from ..errors import (
    BadRequest,
    ClientGone,
    DeadlineExceeded,
    DeployError,
    GuestError,
    GuestTrap,
    MemoryLimitExceeded,
    WasmLambdaError,
)
from ._call import make_caller

TICK_MS = 10
# Where the guest sees the stdlib and the function's code; fixed at Wizer time.
GUEST_STDLIB = "/usr/local/lib/python3.11"
GUEST_CODE_DIR = "/function"
GUEST_TMP_DIR = "/tmp"  # in the guest's own memory (runtimes/python/shim/wl_tmpfs.c)
_WASM_PAGE = 65536
# Guest exceptions after which the interpreter may be inconsistent (a
# half-updated heap, a broken internal invariant): the instance is discarded.
_INCONSISTENT = frozenset(("MemoryError", "SystemError"))
_MIN_INPUT_BUFFER = 4096


class MustRunOnThread(Exception):
    """An inline call wanted to block or ran past its inline budget: it was
    stopped before any effect outside its (now dead) instance; run it again
    on a thread that may block."""


class Entry(NamedTuple):
    """What a function's snapshot imports: ``module`` (its ``f`` or, failing
    that or when ``wsgi`` names one, its WSGI app) and the environment set before."""

    module: str = "f"
    wsgi: str | None = None
    env: dict[str, str] = {}  # noqa: RUF012 (never mutated: the default of a read-only tuple)


DEFAULT_ENTRY = Entry()


class Instance:
    __slots__ = ("_caller", "_exports", "_fuel_left", "_input_address", "_input_capacity", "_memory", "_reserve",
                 "_store", "dead", "fuel_used", "memory_limit", "response_settings")

    def __init__(self, store: wasmtime.Store, exports: Any, memory_limit: int, fuel: int = 0) -> None:
        self._store = store
        self._exports = exports
        # With fuel metering, the store starts with `fuel` and each call's
        # consumption is the difference; `fuel_used` is the last call's.
        self._fuel_left = fuel
        self.fuel_used = 0
        self.response_settings: dict[str, Any] | None = None
        self._memory: wasmtime.Memory = exports["memory"]
        self._reserve: wasmtime.Func = exports["wl_reserve"]
        self._caller = make_caller(store, exports["wl_handle"], self._memory)
        self._input_address = 0
        self._input_capacity = 0
        self.memory_limit = memory_limit
        self.dead = False

    # -- memory -----------------------------------------------------------

    def memory_address(self) -> int:
        return ctypes.addressof(self._memory.data_ptr(self._store).contents)

    def memory_size(self) -> int:
        return self._caller.memory_size()

    def read_memory(self) -> bytes:
        return ctypes.string_at(self.memory_address(), self.memory_size())

    def grow_to(self, pages: int) -> None:
        missing = pages - self._memory.size(self._store)
        if missing > 0 and not self._memory.grow(self._store, missing):
            raise MemoryLimitExceeded(f"the snapshot needs {pages * _WASM_PAGE >> 20} MB of memory")

    # -- calls ------------------------------------------------------------

    def initialize(self) -> None:
        """Run a reactor's ``_initialize`` (native modules; the Python image ran it under Wizer)."""
        self._store.set_epoch_deadline(1000)
        try:
            self._exports["_initialize"](self._store)
        except wasmtime.Trap as trap:
            self.dead = True
            raise GuestTrap(f"the module's initialisation trapped ({trap.message.strip().splitlines()[-1]})") from None

    def invoke(self, event: bytes, timeout_ms: int, request_id: str = "-", head: bytes = b"",
               inline_ms: int = 0) -> tuple[bytes, str]:
        """Call the loaded handler with a JSON event; return its JSON result and logs.

        ``head`` is the HTTP request head the handler may read (context.headers,
        cookies, ...); what it set for the HTTP response lands in
        ``response_settings``.  Guest-reported failures are raised with their
        logs attached.  ``inline_ms``: see the module's docstring.
        """
        header = b"I%s\x00%d\x00%s\x00" % (request_id.encode(), timeout_ms, head)
        self.response_settings = None
        response = self._call(header, event, timeout_ms, inline_ms)
        status = response[:1]
        body, _, logs = response[1:].partition(b"\x00")
        if status == b"R":
            self.response_settings = json.loads(body)
            body, _, logs = logs.partition(b"\x00")
        elif status == b"T":  # a streamed response ended: what was sent, and how it ended
            self.response_settings = summary = json.loads(body)
            summary["streamed"] = True
            if summary.get("outcome") != "complete":
                raise _cut_stream(str(summary.get("outcome")), logs.decode("utf-8", "replace"))
            body = b""
        elif status == b"W":  # a WSGI app's answer: any bytes, their length given
            self.response_settings = settings = json.loads(body)
            length = settings.get("length")
            if not isinstance(length, int) or not 0 <= length <= len(logs):
                raise GuestTrap("the guest's WSGI response is malformed")
            settings["raw"] = True
            body, logs = logs[:length], logs[length + 1:]
        text = logs.decode("utf-8", "replace")
        if status in (b"0", b"R", b"W", b"T"):
            return body, text
        error = self._failure(json.loads(body))
        error.logs = text
        raise error

    def load(self, name: str, timeout_ms: int, entry: Entry = DEFAULT_ENTRY) -> None:
        """Import a function's handler or WSGI app from GUEST_CODE_DIR (the
        deploy-time step before a snapshot), with its environment set first."""
        request = json.dumps({"path": GUEST_CODE_DIR, "module": entry.module, "handler": "f", "wsgi": entry.wsgi,
                              "env": entry.env, "name": name, "memory_mb": self.memory_limit >> 20}).encode()
        self._expect_success(self._call(b"L", request, timeout_ms))

    def set_environment(self, variables: dict[str, str], timeout_ms: int) -> None:
        """Add to the guest's ``os.environ`` (secrets, after a restore: never in a snapshot)."""
        self._expect_success(self._call(b"S", json.dumps(variables).encode(), timeout_ms))

    def _expect_success(self, response: bytes) -> None:
        if response[:1] != b"0":
            raise self._failure(json.loads(response[1:].partition(b"\x00")[0]))

    def _call(self, header: bytes, payload: bytes, timeout_ms: int, inline_ms: int = 0) -> bytes:
        if self.dead:
            raise GuestTrap("instance is dead after an earlier trap")
        budget_ms = min(timeout_ms, inline_ms) if inline_ms else timeout_ms
        size = len(header) + len(payload)
        try:
            if size > self._input_capacity:
                self._store.set_epoch_deadline(budget_ms // TICK_MS + 1)
                capacity = max(size, _MIN_INPUT_BUFFER)
                address = self._reserve(self._store, capacity)
                if not address:
                    raise MemoryLimitExceeded(f"no guest memory for a {size}-byte request")
                self._input_address, self._input_capacity = address, capacity
            response = self._caller.call(header, payload, self._input_address, budget_ms // TICK_MS + 1,
                                         not inline_ms)
        except (wasmtime.Trap, wasmtime.WasmtimeError, ValueError) as exc:
            self.dead = True
            if self._caller.blocked:  # (the host's trap comes back as an error, not a trap code)
                raise MustRunOnThread("the call made a host call or wanted to sleep") from None
            if not isinstance(exc, wasmtime.Trap):
                raise GuestTrap(str(exc).splitlines()[0]) from None
            if budget_ms < timeout_ms and exc.trap_code == wasmtime.TrapCode.INTERRUPT:
                raise MustRunOnThread(f"the call ran longer than {budget_ms} ms") from None
            raise self._trap_error(exc, timeout_ms) from None
        finally:
            if self._fuel_left:
                left = self._store.get_fuel()
                self.fuel_used, self._fuel_left = self._fuel_left - left, left
        if response is None:
            # The guest could not even build an error response.
            self.dead = True
            if self._near_memory_limit():
                raise self._out_of_memory()
            raise GuestTrap("the guest runtime failed to produce a response")
        return response

    def _trap_error(self, trap: wasmtime.Trap, timeout_ms: int) -> WasmLambdaError:
        if trap.trap_code == wasmtime.TrapCode.INTERRUPT:
            return DeadlineExceeded(f"the function exceeded its timeout of {timeout_ms} ms")
        if self._near_memory_limit():
            return self._out_of_memory()
        # The message is a wasm backtrace; its last line is the cause.
        return GuestTrap(f"the sandbox trapped ({trap.message.strip().splitlines()[-1].strip()})")

    def _near_memory_limit(self) -> bool:
        return self.memory_size() + _WASM_PAGE >= self.memory_limit

    def _out_of_memory(self) -> MemoryLimitExceeded:
        return MemoryLimitExceeded(f"the function exceeded its memory limit of {self.memory_limit >> 20} MB")

    def _failure(self, error: dict[str, Any]) -> WasmLambdaError:
        phase, kind, message = error["phase"], error["type"], error["message"]
        if kind in _INCONSISTENT:
            self.dead = True  # its interpreter may be half-updated: never reuse it
        if kind == "MemoryError":
            return self._out_of_memory()
        if phase == "event":
            return BadRequest(f"the event is not valid JSON: {message}")
        if phase == "load":
            return DeployError(_located(error))
        if phase == "result":
            return GuestError(f"the handler returned a value JSON cannot encode: {message}", kind,
                              error["traceback"])
        return GuestError(f"{kind}: {message}", kind, error["traceback"])

    def close(self) -> None:
        """Release the store (and its pooling slot) now rather than at GC."""
        self.dead = True
        self._store.close()


def _cut_stream(outcome: str, logs: str) -> WasmLambdaError:
    """A streamed response that did not complete: the client left, or the handler
    failed after its head (``error: <type>: <message>``)."""
    error: WasmLambdaError = ClientGone("the client disconnected during the streamed response") \
        if outcome == "client-disconnected" else GuestError(f"the stream was cut: {outcome}",
                                                            outcome.partition(":")[2].partition(":")[0].strip(), logs)
    error.logs = logs
    return error


def _located(error: dict[str, Any]) -> str:
    file, line = error.get("file"), error.get("line")
    where = ""
    if file:
        where = file.removeprefix(GUEST_CODE_DIR + "/") + (f", line {line}" if line else "") + ": "
    return f"{where}{error['type']}: {error['message']}"
