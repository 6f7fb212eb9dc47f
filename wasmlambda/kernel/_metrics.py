"""Counters behind GET /stats (JSON) and GET /metrics (Prometheus text).

One place records every invocation; the two endpoints are two renderings.
Per function: invocations by status, cold and warm starts, errors, billed
microseconds and cost, and a latency histogram (time in the worker).  The
counting itself is ``Counters`` (Cython, see _meter_py.py): fields updated
in place, nothing allocated per call.
"""

from __future__ import annotations

from typing import Any

from ._meter import Counters, Usage
from ._meter_py import LATENCY_BUCKETS

_SUMMARY = ("invocations", "cold_starts", "warm_starts", "errors", "duration_us_total", "billed_us_total",
            "cost_pusd_total")


class Metrics:
    def __init__(self) -> None:
        self.functions: dict[str, Any] = {}  # name -> Counters (kept after a function is removed)
        self.statuses: dict[tuple[str, int], int] = {}

    def record(self, usage: Usage, duration_us: int, cost_pusd: int) -> None:
        counters = self.functions.get(usage.function)
        if counters is None:
            counters = self.functions[usage.function] = Counters()
        counters.record(usage.status >= 400, usage.cold, duration_us, usage.billed_us, cost_pusd)
        key = (usage.function, usage.status)
        self.statuses[key] = self.statuses.get(key, 0) + 1

    def to_json(self) -> dict[str, Any]:
        functions = {name: _summary(counters) for name, counters in sorted(self.functions.items())}
        # The worker's totals are summed here, on the rare read, not counted on every call.
        totals = {field: sum(summary[field] for summary in functions.values()) for field in _SUMMARY}
        return {**totals, "functions": functions}

    def to_prometheus(self, gauges: dict[str, tuple[str, str, float]]) -> str:
        """Prometheus text format; ``gauges`` maps a metric name to (type, help, value)."""
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        functions = sorted(self.functions.items())
        family("wasmlambda_invocations_total", "counter", "Invocations by function and HTTP status.")
        for (fn, status), count in sorted(self.statuses.items()):
            out.append(f'wasmlambda_invocations_total{{function="{fn}",status="{status}"}} {count}')
        for name, field, help_text in (
            ("wasmlambda_cold_starts_total", "cold_starts", "Calls that restored a snapshot or started a module."),
            ("wasmlambda_billed_microseconds_total", "billed_us_total",
             "Billed time (CPU time of restore + run) in microseconds."),
            ("wasmlambda_cost_picodollars_total", "cost_pusd_total", "Cost charged, in pico-dollars (1e-12 USD)."),
        ):
            family(name, "counter", help_text)
            for fn, counters in functions:
                out.append(f'{name}{{function="{fn}"}} {getattr(counters, field)}')
        family("wasmlambda_invocation_duration_seconds", "histogram", "Time in the worker per invocation.")
        for fn, counters in functions:
            cumulative = 0
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), counters.histogram(), strict=True):
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


def _summary(counters: Any) -> dict[str, int]:
    return {field: getattr(counters, field) for field in _SUMMARY}
