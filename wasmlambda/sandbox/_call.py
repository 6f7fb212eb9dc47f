"""Picks the guest-call implementation, and with it the host-call imports':
the Cython twin over the Wasmtime C API unless extensions are off (see
wasmlambda/_fastpath)."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from types import ModuleType
from typing import Any, NoReturn, Protocol

import wasmtime
from wasmtime import _ffi as ffi

from .. import _fastpath
from . import _call_py
from ._hostcalls import NO_SERVICES, Dispatch, HostCalls

_implementation = _fastpath.pick("_call", _call_py)


class Caller(Protocol):
    blocked: bool  # the last call was trapped at a host call or a blocking WASI call (may_block false)

    def memory_size(self) -> int: ...

    def call(self, header: bytes, payload: bytes, input_address: int, deadline_ticks: int,
             may_block: bool = True) -> bytes | None: ...


def _address(function: Any) -> int:
    return ctypes.cast(function, ctypes.c_void_p).value or 0


_C_FUNCTIONS = (
    _address(ffi.dll.wasmtime_func_call),
    _address(ffi.dll.wasmtime_memory_data),
    _address(ffi.dll.wasmtime_memory_data_size),
    _address(ffi.dll.wasmtime_context_set_epoch_deadline),
)


def _raise_failure(trap: int, error: int) -> NoReturn:
    """Turn the C API's trap or error pointer into wasmtime-py's exception (it owns and frees them)."""
    if trap:
        raise wasmtime.Trap._from_ptr(ctypes.cast(trap, ctypes.POINTER(ffi.wasm_trap_t)))
    raise wasmtime.WasmtimeError._from_ptr(ctypes.cast(error, ctypes.POINTER(ffi.wasmtime_error_t)))


def make_caller(store: wasmtime.Store, handle: wasmtime.Func, memory: wasmtime.Memory,
                implementation: ModuleType = _implementation) -> Caller:
    """A caller of ``handle``; ``implementation`` picks a twin explicitly (benchmarks compare both)."""
    if implementation is _call_py:
        return _call_py.GuestCall(store, handle, memory)
    context = ctypes.cast(store._context(), ctypes.c_void_p).value or 0
    caller: Caller = implementation.GuestCall(context, ctypes.addressof(handle._func),
                                              ctypes.addressof(memory._memory), *_C_FUNCTIONS, _raise_failure,
                                              (store, handle, memory))
    return caller


def link_host_calls(linker: wasmtime.Linker, dispatch: Dispatch | None, log: Callable[[str], None] = print,
                    implementation: ModuleType = _implementation) -> object:
    """Define the ``wasmlambda`` imports on ``linker``; keep the returned object as long as the linker."""
    if implementation is _call_py:
        host_calls = HostCalls(dispatch, log)
        host_calls.link(linker)
        return host_calls
    i32 = wasmtime.ValType.i32()
    call_type, read_type = wasmtime.FuncType([i32, i32], [i32]), wasmtime.FuncType([i32], [])
    imports = implementation.HostImports(dispatch, log, NO_SERVICES)
    imports.link(_address(linker.ptr()), _address(ffi.dll.wasmtime_linker_define_func), _address(call_type.ptr()),
                 _address(read_type.ptr()), _address(ffi.dll.wasmtime_trap_new), _raise_failure)
    return imports
