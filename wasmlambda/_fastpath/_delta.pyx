# cython: language_level=3
"""Cython twin of wasmlambda/sandbox/_delta_py.py: ``apply`` as one C loop.

``diff`` runs once per deployment, so only the pure-Python one exists.
"""

from libc.stdint cimport uint8_t, uint32_t, uintptr_t
from libc.string cimport memcpy


def apply(uintptr_t address, const uint8_t[::1] ranges, const uint8_t[::1] payload):
    cdef const uint32_t *pairs = <const uint32_t *> &ranges[0] if ranges.shape[0] else NULL
    cdef Py_ssize_t count = ranges.shape[0] // 8
    cdef Py_ssize_t i
    cdef const uint8_t *source = &payload[0] if payload.shape[0] else NULL
    cdef uint8_t *memory = <uint8_t *> address
    for i in range(count):
        memcpy(memory + pairs[2 * i], source, pairs[2 * i + 1])
        source += pairs[2 * i + 1]
