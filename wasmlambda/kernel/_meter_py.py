"""The per-call arithmetic of metering: pure-Python spec.

``price_call`` turns one call's usage into its four prices in pico-dollars
(the bill, its memory-time part, and the same call rounded up to 1 ms and
to 100 ms); ``Counters`` aggregates calls per function by updating fields
in place, with no allocation per call.  ``wasmlambda/_fastpath/_meter.pyx``
is the Cython twin (128-bit integer arithmetic, C counters).
"""

from __future__ import annotations

MB_US_PER_GB_SECOND = 1024 * 1_000_000
# Seconds; fine at the bottom, where sandboxed calls live.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0)
_BUCKET_BOUNDS_US = tuple(round(bound * 1_000_000) for bound in LATENCY_BUCKETS)


def price_call(memory_mb: int, billed_us: int, fuel: int, gb_second_pusd: int, request_pusd: int,
               million_fuel_pusd: int) -> tuple[int, int, int, int]:
    """(cost, memory-time part, cost at 1 ms rounding, cost at 100 ms rounding), each truncated once."""
    fixed = request_pusd + fuel * million_fuel_pusd // 1_000_000
    memory = memory_mb * billed_us * gb_second_pusd // MB_US_PER_GB_SECOND
    at_1ms = memory_mb * (-(-billed_us // 1000) * 1000) * gb_second_pusd // MB_US_PER_GB_SECOND
    at_100ms = memory_mb * (-(-billed_us // 100_000) * 100_000) * gb_second_pusd // MB_US_PER_GB_SECOND
    return memory + fixed, memory, at_1ms + fixed, at_100ms + fixed


class Counters:
    """One function's totals and latency histogram (one count per bucket, the last is +Inf)."""

    __slots__ = ("billed_us_total", "buckets", "cold_starts", "cost_pusd_total", "duration_us_total", "errors",
                 "invocations", "warm_starts")

    def __init__(self) -> None:
        self.invocations = self.cold_starts = self.warm_starts = self.errors = 0
        self.duration_us_total = self.billed_us_total = self.cost_pusd_total = 0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)

    def record(self, failed: bool, cold: bool, duration_us: int, billed_us: int, cost_pusd: int) -> None:
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
        bucket = 0
        while bucket < len(_BUCKET_BOUNDS_US) and duration_us > _BUCKET_BOUNDS_US[bucket]:
            bucket += 1
        self.buckets[bucket] += 1

    def histogram(self) -> list[int]:
        return list(self.buckets)
