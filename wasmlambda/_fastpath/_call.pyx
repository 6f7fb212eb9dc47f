# cython: language_level=3
"""Cython twin of wasmlambda/sandbox/_call_py.py: one guest call through the
Wasmtime C API.

The C functions come as addresses from the libwasmtime that the wasmtime
package ships (looked up by the sandbox), so nothing links against it at
build time.  Argument and result arrays are allocated once per instance;
the GIL is released while the guest runs.  On a trap or error the raw
pointers go to ``fail``, which raises wasmtime's exceptions (the sandbox
translates them, in one place).
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t, uintptr_t
from libc.string cimport memcpy


cdef extern from *:
    """
    /* wasmtime_val_t: a kind byte, then a 16-byte-aligned union (32 bytes in all). */
    typedef struct { uint8_t kind; uint8_t pad[7]; union { int32_t i32; int64_t i64; uint8_t raw[24]; } of; } wl_val;
    """
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

cdef enum:
    WASMTIME_I32 = 0


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
             uint64_t deadline_ticks):
        cdef size_t header_size = header.shape[0]
        cdef size_t payload_size = payload.shape[0]
        cdef size_t size = header_size + payload_size
        cdef void *error
        cdef void *trap = NULL
        cdef int64_t packed
        cdef uint64_t address, length
        cdef uint8_t *base
        self.set_deadline(self.context, deadline_ticks)
        if <uint64_t> input_address + size > self.memory_data_size(self.context, self.memory):
            raise ValueError("the guest's input buffer lies outside its memory")
        base = self.memory_data(self.context, self.memory)
        if header_size:
            memcpy(base + input_address, &header[0], header_size)
        if payload_size:
            memcpy(base + input_address + header_size, &payload[0], payload_size)
        self.args[0].of.i32 = <int32_t> size
        with nogil:
            error = self.func_call(self.context, self.handle, self.args, 1, self.results, 1, &trap)
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
