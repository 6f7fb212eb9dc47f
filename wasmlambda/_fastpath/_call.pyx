# cython: language_level=3
"""Cython twin of wasmlambda/sandbox/_call_py.py and _hostcalls.py: one
guest call through the Wasmtime C API, and the host-call imports as C
callbacks.

The C functions come as addresses from the libwasmtime that the wasmtime
package ships (looked up by the sandbox), so nothing links against it at
build time.  Argument and result arrays are allocated once per instance;
the GIL is released while the guest runs.  On a trap or error the raw
pointers go to ``fail``, which raises wasmtime's exceptions (the sandbox
translates them, in one place).

A host call arrives on the thread that called the guest, inside
``func_call``: each thread keeps the guest call it is running (calls nest
when a function invokes another), and the callback reads and writes that
call's memory.  A call made with ``may_block`` false (the host runs it on
its event loop's thread) is trapped at its first host call, or at the
guest's "about to block" signal (an empty request), before anything
happens: ``blocked`` says so, and the host runs it again elsewhere.
"""

import traceback

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t, uintptr_t
from libc.string cimport memcpy, strlen


cdef extern from *:
    """
    /* wasmtime_val_t: a kind byte, then a 16-byte-aligned union (32 bytes in all). */
    typedef struct { uint8_t kind; uint8_t pad[7]; union { int32_t i32; int64_t i64; uint8_t raw[24]; } of; } wl_val;
    static __thread void *wl_current_call = NULL;  /* the GuestCall this thread is running */
    """
    void *wl_current_call
    ctypedef union wl_val_of:
        int32_t i32
        int64_t i64
    ctypedef struct wl_val:
        uint8_t kind
        wl_val_of of

ctypedef void *(*func_call_fn)(void *context, const void *func, const wl_val *args, size_t nargs,
                               wl_val *results, size_t nresults, void **trap) noexcept nogil
ctypedef uint8_t *(*memory_data_fn)(const void *context, const void *memory) noexcept nogil
ctypedef size_t (*memory_size_fn)(const void *context, const void *memory) noexcept nogil
ctypedef void (*set_deadline_fn)(void *context, uint64_t ticks) noexcept nogil
ctypedef void *(*host_fn)(void *env, void *caller, const wl_val *args, size_t nargs, wl_val *results,
                          size_t nresults) noexcept nogil
ctypedef void *(*trap_new_fn)(const char *message, size_t length) noexcept nogil
ctypedef void *(*define_func_fn)(void *linker, const char *module, size_t module_len, const char *name,
                                 size_t name_len, const void *functype, host_fn callback, void *env,
                                 void (*finalizer)(void *)) noexcept nogil

cdef enum:
    WASMTIME_I32 = 0
    MUST_MOVE = -2  # HostImports.call: trap the call, it may not block this thread

cdef trap_new_fn trap_new = NULL  # wasmtime_trap_new, set by HostImports.link
cdef const char *MOVE_MESSAGE = b"wasmlambda: a call that may not block made a host call"


cdef class GuestCall:
    cdef void *context
    cdef const void *handle
    cdef const void *memory
    cdef func_call_fn func_call
    cdef memory_data_fn memory_data
    cdef memory_size_fn memory_data_size
    cdef set_deadline_fn set_deadline
    cdef wl_val args[1]
    cdef wl_val results[1]
    cdef object fail
    cdef object owners
    cdef object pending  # the response of the guest's last host_call, until its host_read
    cdef bint may_block
    cdef public bint blocked  # the last call was trapped for wanting to block (may_block false)

    def __init__(self, uintptr_t context, uintptr_t handle, uintptr_t memory, uintptr_t func_call,
                 uintptr_t memory_data, uintptr_t memory_data_size, uintptr_t set_deadline, fail, owners):
        self.context = <void *> context
        self.handle = <const void *> handle
        self.memory = <const void *> memory
        self.func_call = <func_call_fn> func_call
        self.memory_data = <memory_data_fn> memory_data
        self.memory_data_size = <memory_size_fn> memory_data_size
        self.set_deadline = <set_deadline_fn> set_deadline
        self.fail = fail
        self.owners = owners  # the Python objects that own the pointers above
        self.args[0].kind = WASMTIME_I32

    def memory_size(self):
        return self.memory_data_size(self.context, self.memory)

    def call(self, const uint8_t[::1] header, const uint8_t[::1] payload, uint32_t input_address,
             uint64_t deadline_ticks, bint may_block=True):
        cdef size_t header_size = header.shape[0]
        cdef size_t payload_size = payload.shape[0]
        cdef size_t size = header_size + payload_size
        cdef void *error
        cdef void *trap = NULL
        cdef int64_t packed
        cdef uint64_t address, length
        cdef uint8_t *base
        cdef void *outer
        global wl_current_call
        self.set_deadline(self.context, deadline_ticks)
        self.may_block = may_block
        self.blocked = False
        if <uint64_t> input_address + size > self.memory_data_size(self.context, self.memory):
            raise ValueError("the guest's input buffer lies outside its memory")
        base = self.memory_data(self.context, self.memory)
        if header_size:
            memcpy(base + input_address, &header[0], header_size)
        if payload_size:
            memcpy(base + input_address + header_size, &payload[0], payload_size)
        self.args[0].of.i32 = <int32_t> size
        outer = wl_current_call
        wl_current_call = <void *> self
        with nogil:
            error = self.func_call(self.context, self.handle, self.args, 1, self.results, 1, &trap)
        wl_current_call = outer
        if error != NULL or trap != NULL:
            self.fail(<uintptr_t> trap, <uintptr_t> error)
        packed = self.results[0].of.i64
        if packed == -1:
            return None
        address = (<uint64_t> packed >> 32) & 0xFFFFFFFF
        length = <uint64_t> packed & 0xFFFFFFFF
        if address + length > self.memory_data_size(self.context, self.memory):
            raise ValueError("the guest's response lies outside its memory")
        base = self.memory_data(self.context, self.memory)
        return PyBytes_FromStringAndSize(<char *> base + address, <Py_ssize_t> length)


cdef class HostImports:
    """``wasmlambda.host_call`` / ``host_read`` (see _hostcalls.py) as C callbacks."""

    cdef object dispatch
    cdef object log
    cdef bytes no_services

    def __init__(self, dispatch, log, bytes no_services):
        self.dispatch = dispatch
        self.log = log
        self.no_services = no_services

    def link(self, uintptr_t linker, uintptr_t define_func, uintptr_t call_type, uintptr_t read_type,
             uintptr_t new_trap, fail):
        """Define both imports on ``linker``; this object must outlive it."""
        global trap_new
        cdef define_func_fn define = <define_func_fn> define_func
        trap_new = <trap_new_fn> new_trap
        cdef void *error = define(<void *> linker, b"wasmlambda", 10, b"host_call", 9, <const void *> call_type,
                                  _host_call, <void *> self, NULL)
        if error == NULL:
            error = define(<void *> linker, b"wasmlambda", 10, b"host_read", 9, <const void *> read_type,
                           _host_read, <void *> self, NULL)
        if error != NULL:
            fail(0, <uintptr_t> error)

    cdef int32_t call(self, uint64_t address, uint64_t size):
        cdef GuestCall current
        if wl_current_call == NULL:
            return -1  # not inside a guest call made through GuestCall
        current = <GuestCall> wl_current_call
        if not current.may_block:
            current.blocked = True
            return MUST_MOVE
        if size == 0:
            return 0  # "about to block": fine here
        if address + size > current.memory_data_size(current.context, current.memory):
            return -1
        request = PyBytes_FromStringAndSize(<char *> current.memory_data(current.context, current.memory) + address,
                                            <Py_ssize_t> size)
        try:
            response = self.dispatch(request) if self.dispatch is not None else self.no_services
        except Exception:
            # Dispatch answers service errors itself; this is a bug: tell the
            # guest (it raises) and the operator, and keep the worker up.
            self.log("host call failed:\n" + traceback.format_exc())
            return -1
        current.pending = response
        return <int32_t> len(response)

    cdef void read(self, uint64_t address):
        cdef GuestCall current
        cdef const uint8_t[::1] response
        if wl_current_call == NULL:
            return
        current = <GuestCall> wl_current_call
        if current.pending is None:
            return
        response = current.pending
        current.pending = None
        if response.shape[0] and address + response.shape[0] <= current.memory_data_size(current.context,
                                                                                           current.memory):
            memcpy(current.memory_data(current.context, current.memory) + address, &response[0],
                   response.shape[0])


cdef void *_host_call(void *env, void *caller, const wl_val *args, size_t nargs, wl_val *results,
                      size_t nresults) noexcept nogil:
    cdef int32_t answer
    with gil:
        answer = (<HostImports> env).call(<uint32_t> args[0].of.i32, <uint32_t> args[1].of.i32)
    if answer == MUST_MOVE:
        return trap_new(MOVE_MESSAGE, strlen(MOVE_MESSAGE))
    results[0].of.i32 = answer
    return NULL


cdef void *_host_read(void *env, void *caller, const wl_val *args, size_t nargs, wl_val *results,
                      size_t nresults) noexcept nogil:
    with gil:
        (<HostImports> env).read(<uint32_t> args[0].of.i32)
    return NULL
