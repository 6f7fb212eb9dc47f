"""Counters behind GET /stats (JSON) and GET /metrics (Prometheus text).

One place records every invocation; the two endpoints are two renderings.
Per function: invocations by status, cold and warm starts, errors, billed
microseconds and cost, and a latency histogram (time in the worker).
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import Any

from ._meter import Usage

# Seconds; fine at the bottom, where sandboxed calls live.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0)


@dataclasses.dataclass
class FunctionCounters:
    invocations: int = 0
    cold_starts: int = 0
    warm_starts: int = 0
    errors: int = 0
    duration_us_total: int = 0
    billed_us_total: int = 0
    cost_pusd_total: int = 0
    by_status: dict[int, int] = dataclasses.field(default_factory=dict)
    # One count per bucket (not cumulative) plus the +Inf overflow.
    latency_buckets: list[int] = dataclasses.field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))

    def record(self, usage: Usage, duration_us: int, cost_pusd: int) -> None:
        self.invocations += 1
        if usage.cold:
            self.cold_starts += 1
        else:
            self.warm_starts += 1
        if usage.status >= 400:
            self.errors += 1
        self.duration_us_total += duration_us
        self.billed_us_total += usage.billed_us
        self.cost_pusd_total += cost_pusd
        self.by_status[usage.status] = self.by_status.get(usage.status, 0) + 1
        self.latency_buckets[bisect.bisect_left(LATENCY_BUCKETS, duration_us / 1e6)] += 1

    def summary(self) -> dict[str, int]:
        return {"invocations": self.invocations, "cold_starts": self.cold_starts, "warm_starts": self.warm_starts,
                "errors": self.errors, "duration_us_total": self.duration_us_total,
                "billed_us_total": self.billed_us_total, "cost_pusd_total": self.cost_pusd_total}


class Metrics:
    def __init__(self) -> None:
        self.total = FunctionCounters()
        self.functions: dict[str, FunctionCounters] = {}

    def record(self, usage: Usage, duration_us: int, cost_pusd: int) -> None:
        self.total.record(usage, duration_us, cost_pusd)
        counters = self.functions.get(usage.function)
        if counters is None:
            counters = self.functions[usage.function] = FunctionCounters()
        counters.record(usage, duration_us, cost_pusd)

    def to_json(self) -> dict[str, Any]:
        return {**self.total.summary(),
                "functions": {name: c.summary() for name, c in sorted(self.functions.items())}}

    def to_prometheus(self, gauges: dict[str, tuple[str, str, float]]) -> str:
        """Prometheus text format; ``gauges`` maps a metric name to (type, help, value)."""
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        family("wasmlambda_invocations_total", "counter", "Invocations by function and HTTP status.")
        for fn, counters in sorted(self.functions.items()):
            for status, count in sorted(counters.by_status.items()):
                out.append(f'wasmlambda_invocations_total{{function="{fn}",status="{status}"}} {count}')
        family("wasmlambda_cold_starts_total", "counter", "Invocations that restored a snapshot or started a module.")
        for fn, counters in sorted(self.functions.items()):
            out.append(f'wasmlambda_cold_starts_total{{function="{fn}"}} {counters.cold_starts}')
        family("wasmlambda_billed_microseconds_total", "counter", "Billed time (restore + run), in microseconds.")
        for fn, counters in sorted(self.functions.items()):
            out.append(f'wasmlambda_billed_microseconds_total{{function="{fn}"}} {counters.billed_us_total}')
        family("wasmlambda_cost_picodollars_total", "counter", "Cost charged, in pico-dollars (1e-12 USD).")
        for fn, counters in sorted(self.functions.items()):
            out.append(f'wasmlambda_cost_picodollars_total{{function="{fn}"}} {counters.cost_pusd_total}')
        family("wasmlambda_invocation_duration_seconds", "histogram", "Time in the worker per invocation.")
        for fn, counters in sorted(self.functions.items()):
            cumulative = 0
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), counters.latency_buckets, strict=True):
                cumulative += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                out.append(f'wasmlambda_invocation_duration_seconds_bucket{{function="{fn}",le="{le}"}} {cumulative}')
            out.append(f'wasmlambda_invocation_duration_seconds_sum{{function="{fn}"}} '
                       f"{counters.duration_us_total / 1e6}")
            out.append(f'wasmlambda_invocation_duration_seconds_count{{function="{fn}"}} {counters.invocations}')
        for name, (kind, help_text, value) in gauges.items():
            family(name, kind, help_text)
            out.append(f"{name} {value}")
        return "\n".join(out) + "\n"
