# cython: language_level=3, cdivision=True
"""Cython twin of wasmlambda/kernel/_meter_py.py: prices in 128-bit integer
arithmetic (no overflow for any memory x time x price the settings allow),
counters as C fields."""

from libc.stdint cimport int64_t, uint64_t

from wasmlambda.kernel._meter_py import LATENCY_BUCKETS

cdef extern from *:
    """
    typedef unsigned __int128 wl_uint128;
    """
    ctypedef unsigned long long uint128 "wl_uint128"

cdef enum:
    BUCKETS = 18  # len(LATENCY_BUCKETS) + 1, checked at import
cdef uint64_t BOUNDS_US[BUCKETS - 1]
if len(LATENCY_BUCKETS) + 1 != BUCKETS:
    raise ImportError("LATENCY_BUCKETS changed: update BUCKETS in _meter.pyx")
for _index, _bound in enumerate(LATENCY_BUCKETS):
    BOUNDS_US[_index] = <uint64_t> round(_bound * 1_000_000)

cdef uint64_t MB_US_PER_GB_SECOND = 1024 * 1_000_000


cdef inline uint64_t _memory_cost(uint64_t memory_mb, uint64_t billed_us, uint64_t price) noexcept:
    # A typed 128-bit local: Cython would give an inline product a 64-bit temporary.
    cdef uint128 product = <uint128> memory_mb
    product *= billed_us
    product *= price
    return <uint64_t> (product // MB_US_PER_GB_SECOND)


def price_call(uint64_t memory_mb, uint64_t billed_us, uint64_t fuel, uint64_t gb_second_pusd,
               uint64_t request_pusd, uint64_t million_fuel_pusd):
    cdef uint128 fuel_product = <uint128> fuel
    fuel_product *= million_fuel_pusd
    cdef uint64_t fixed = request_pusd + <uint64_t> (fuel_product // 1_000_000)
    cdef uint64_t memory = _memory_cost(memory_mb, billed_us, gb_second_pusd)
    cdef uint64_t at_1ms = _memory_cost(memory_mb, (billed_us + 999) // 1000 * 1000, gb_second_pusd)
    cdef uint64_t at_100ms = _memory_cost(memory_mb, (billed_us + 99_999) // 100_000 * 100_000, gb_second_pusd)
    return memory + fixed, memory, at_1ms + fixed, at_100ms + fixed


cdef class Counters:
    cdef public int64_t invocations, cold_starts, warm_starts, errors
    cdef public int64_t duration_us_total, billed_us_total
    cdef public object cost_pusd_total  # may outgrow 64 bits over a long life
    cdef int64_t buckets[BUCKETS]

    def __init__(self):
        self.cost_pusd_total = 0

    def record(self, bint failed, bint cold, int64_t duration_us, int64_t billed_us, cost_pusd):
        cdef int bucket = 0
        self.invocations += 1
        if cold:
            self.cold_starts += 1
        else:
            self.warm_starts += 1
        if failed:
            self.errors += 1
        self.duration_us_total += duration_us
        self.billed_us_total += billed_us
        self.cost_pusd_total += cost_pusd
        while bucket < BUCKETS - 1 and <uint64_t> duration_us > BOUNDS_US[bucket]:
            bucket += 1
        self.buckets[bucket] += 1

    def histogram(self):
        return [self.buckets[i] for i in range(BUCKETS)]
