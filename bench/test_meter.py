"""The meter's own work per call (usage record, pricing, ledger row, metrics),
beside the warm call it is attached to."""

from __future__ import annotations

from pathlib import Path

import pytest

from wasmlambda.kernel import Ledger, PriceModel, Usage
from wasmlambda.kernel._meter import Bill
from wasmlambda.kernel._metrics import Metrics

PRICES = PriceModel(16_666_667, 200_000)
NO_CALLEES = Bill()


@pytest.mark.benchmark(group="warm-call")
def test_meter_per_call(benchmark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ledger = Ledger(tmp_path / "ledger.sqlite3", 60)
    metrics = Metrics()

    def meter() -> int:
        usage = Usage("0123456789abcdef", "hello", 1.0, 200, False, 40, 0, 300, 290, 128, 7 << 20, 0, 17, 18)
        cost = ledger.record(usage, PRICES.quote(usage), NO_CALLEES)
        metrics.record(usage, 350, cost)
        return cost

    assert benchmark(meter) > 0
    ledger.close()
