"""Metering and pricing: what one invocation used, and what it costs.

Theory of operation: the worker measures each call in phases (queue wait,
restore on a cold start, handler run) with the monotonic nanosecond clock,
the CPU time its sandbox thread spent on restore + run, and reads the
instance's linear memory size (memory only grows, so the size after the
call is the call's peak) and, when enabled, the fuel it burned.

Billed time is that CPU time, in whole microseconds, at least 1: not the
wall clock, which also counts the time the thread waited for a core.  With
more sandbox threads than cores, a call's wall time grows with everyone
else's load; its CPU time does not, so no tenant pays for the worker's
oversubscription.  Waiting (``time.sleep``, a slow state backend) is not
billed either; it still counts against the timeout.  Calls a handler makes
with ``invoke`` run on its own thread: their CPU is billed to them, not
twice (see ``Bill.inline_cpu_ns``).

Money is an integer number of pico-dollars (p$ = 1e-12 USD): the price of a
call is ``memory_mb * billed_us * price_gb_second // (1024 * 10**6)`` plus
the per-request and fuel prices, each truncated once per call.  Integers
never drift, so a ledger total equals the sum of the per-response cost
headers exactly.  For comparison, :meth:`PriceModel.quote` also prices the
same usage billed in 1 ms and 100 ms steps.  The arithmetic itself lives in
one place, ``price_call`` (_meter_py.py and its Cython twin).
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from typing import Any, NamedTuple

from .. import _fastpath
from . import _meter_py

# The per-call arithmetic and per-function counters: Cython unless extensions are off.
_implementation = _fastpath.pick("_meter", _meter_py)
price_call = _implementation.price_call
Counters = _implementation.Counters

NS_PER_US = 1000


class Usage(NamedTuple):
    """One call's measurements (a NamedTuple: built for every call, nested ones included)."""

    request_id: str
    function: str
    started_at: float  # wall clock (epoch seconds), for the ledger
    status: int
    cold: bool
    queue_us: int
    restore_us: int  # wall clock
    run_us: int  # wall clock
    cpu_us: int  # CPU time of the call's thread over restore + run: what is billed
    memory_mb: int  # reserved: the function's limit, what is billed
    peak_memory_bytes: int
    fuel: int
    bytes_in: int
    bytes_out: int

    @property
    def billed_us(self) -> int:
        return self.cpu_us or 1  # at least 1; read ~3 times per call


def microseconds(start_ns: int, end_ns: int) -> int:
    """Whole microseconds between two perf_counter_ns readings, rounded up."""
    return -(-(end_ns - start_ns) // NS_PER_US) if end_ns > start_ns else 0


@dataclasses.dataclass(frozen=True)
class PriceModel:
    gb_second_pusd: int
    request_pusd: int
    million_fuel_pusd: int = 0

    def quote(self, usage: Usage) -> Quote:
        """(cost, memory-time part, cost at 1 ms rounding, cost at 100 ms rounding) in one call."""
        return Quote(*price_call(usage.memory_mb, usage.billed_us, usage.fuel, self.gb_second_pusd,
                                 self.request_pusd, self.million_fuel_pusd))

    def cost(self, usage: Usage) -> int:
        return self.quote(usage)[0]

    def explain(self, usage: Usage) -> list[dict[str, Any]]:
        """The price lines of one call, each with its formula; they add up to its cost."""
        cost, memory_cost = self.quote(usage)[:2]
        lines = [
            {"item": "memory-time", "cost_pusd": memory_cost,
             "formula": f"{usage.memory_mb} MB x {usage.billed_us} us x {self.gb_second_pusd} p$/GB-s "
                        f"/ (1024 MB/GB x 10^6 us/s), truncated"},
            {"item": "request", "cost_pusd": self.request_pusd, "formula": f"1 x {self.request_pusd} p$"},
        ]
        if usage.fuel or self.million_fuel_pusd:
            lines.append({"item": "fuel", "cost_pusd": cost - memory_cost - self.request_pusd,
                          "formula": f"{usage.fuel} fuel x {self.million_fuel_pusd} p$ / 10^6, truncated"})
        return lines


class Quote(NamedTuple):
    """What one call costs on its own, in pico-dollars."""

    cost: int
    memory: int  # the memory-time part of cost
    at_1ms: int  # the same call billed in whole milliseconds, for comparison
    at_100ms: int  # ... and in 100 ms steps


# Bills are added to from fan-out threads; one lock for all of them is
# cheaper than a lock per bill (one per call), and never held for long.
_BILLS_LOCK = threading.Lock()


class Bill:
    """What a call's nested calls cost; callees may add from several threads."""

    __slots__ = ("_ids", "calls", "inline_cpu_ns", "thread", "totals")

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.calls = 0
        self.totals = Quote(0, 0, 0, 0)
        # Set by the call's own sandbox thread: nested calls that ran on that
        # thread (invoke, not map) add their CPU time here, and the call's own
        # CPU time leaves it out (it is on their bills).
        self.thread = 0
        self.inline_cpu_ns = 0

    def next_id(self) -> int:
        return next(self._ids)  # atomic: itertools.count is C code under the GIL

    def with_own(self, quote: Quote) -> Quote:
        """A call's own quote plus everything its callees cost."""
        if not self.calls:
            return quote  # the common case, on every request
        cost, memory, at_1ms, at_100ms = self.totals  # unrolled: this runs for every call that made calls
        return Quote(quote[0] + cost, quote[1] + memory, quote[2] + at_1ms, quote[3] + at_100ms)

    def add(self, quote: Quote, callee: Bill) -> None:
        """A finished nested call: its own quote, plus what its callees (``callee``) cost."""
        cost, memory, at_1ms, at_100ms = callee.with_own(quote)
        with _BILLS_LOCK:
            self.calls += 1 + callee.calls
            totals = self.totals
            self.totals = Quote(totals[0] + cost, totals[1] + memory, totals[2] + at_1ms, totals[3] + at_100ms)
