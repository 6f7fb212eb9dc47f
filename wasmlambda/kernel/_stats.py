"""Counters for GET /stats: totals and per function."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class Counters:
    invocations: int = 0
    cold_starts: int = 0
    warm_starts: int = 0
    errors: int = 0
    duration_us_total: int = 0

    def record(self, cold: bool, failed: bool, duration_us: int) -> None:
        self.invocations += 1
        if cold:
            self.cold_starts += 1
        else:
            self.warm_starts += 1
        if failed:
            self.errors += 1
        self.duration_us_total += duration_us


class Stats:
    def __init__(self) -> None:
        self.total = Counters()
        self.functions: dict[str, Counters] = {}

    def record(self, name: str, cold: bool, failed: bool, duration_us: int) -> None:
        self.total.record(cold, failed, duration_us)
        counters = self.functions.get(name)
        if counters is None:
            counters = self.functions[name] = Counters()
        counters.record(cold, failed, duration_us)

    def to_json(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self.total),
            "functions": {name: dataclasses.asdict(c) for name, c in sorted(self.functions.items())},
        }
