"""Pricing arithmetic, the ledger and the metrics rendering."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from wasmlambda.kernel import Ledger, PriceModel, Usage, dollars
from wasmlambda.kernel._meter import Bill, microseconds
from wasmlambda.kernel._metrics import Metrics

PRICES = PriceModel(gb_second_pusd=16_666_667, request_pusd=200_000, million_fuel_pusd=50)


def usage(request_id: str = "r1", function: str = "fn", run_us: int = 412, restore_us: int = 0,
          memory_mb: int = 128, fuel: int = 0, status: int = 200, cold: bool = False, ts: float = 1000.0) -> Usage:
    # Billed for CPU time: here, as if nothing else ran (CPU time = restore + run).
    return Usage(request_id, function, ts, status, cold, 7, restore_us, run_us, restore_us + run_us, memory_mb,
                 7 << 20, fuel, 10, 20)


@pytest.mark.parametrize(
    ("memory_mb", "billed_us", "expected"),
    [
        (128, 1, 2),  # a 1 µs call still costs a whole number of pico-dollars
        (128, 412, 858),
        (1024, 1_000_000, 16_666_667),  # one GB-second is the list price exactly
        (16, 3, 0),
    ],
)
def test_memory_cost_is_exact_integer_arithmetic(memory_mb: int, billed_us: int, expected: int) -> None:
    memory_cost = PRICES.quote(usage(run_us=billed_us, memory_mb=memory_mb))[1]
    assert memory_cost == expected
    assert memory_cost == memory_mb * billed_us * 16_666_667 // (1024 * 10**6)


def memory_cost(memory_mb: int, billed_us: int) -> int:
    return PRICES.quote(usage(run_us=billed_us, memory_mb=memory_mb))[1]


def test_cost_adds_request_and_fuel() -> None:
    call = usage(run_us=300, restore_us=112, fuel=3_000_000)
    assert call.billed_us == 412
    assert PRICES.cost(call) == 858 + 200_000 + 150


def test_rounding_comparisons() -> None:
    cost, memory, at_1ms, at_100ms = PRICES.quote(usage(run_us=412))
    assert cost == memory + 200_000
    assert at_1ms == memory_cost(128, 1000) + 200_000
    assert at_100ms == memory_cost(128, 100_000) + 200_000
    assert memory_cost(128, 100_000) // memory_cost(128, 412) >= 240  # what 100 ms rounding does


def test_billed_time_is_at_least_one_microsecond() -> None:
    assert usage(run_us=0).billed_us == 1


def test_explain_lines_add_up() -> None:
    call = usage(fuel=2_000_000)
    lines = PRICES.explain(call)
    assert [line["item"] for line in lines] == ["memory-time", "request", "fuel"]
    assert sum(line["cost_pusd"] for line in lines) == PRICES.cost(call)


@pytest.mark.parametrize(
    ("pusd", "text"),
    [(0, "0.000000000000"), (941, "0.000000000941"), (10**12, "1.000000000000"), (1_234_567_890_123_456,
                                                                                   "1234.567890123456")],
)
def test_dollars_renders_exactly(pusd: int, text: str) -> None:
    assert dollars(pusd) == text


def test_microseconds_round_up() -> None:
    assert microseconds(0, 1) == 1
    assert microseconds(0, 1000) == 1
    assert microseconds(0, 1001) == 2
    assert microseconds(5, 5) == 0


def test_ledger_batches_aggregates_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"

    async def scenario() -> None:
        ledger = Ledger(path, flush_interval_s=60)
        calls = [usage(f"r{i}", "a" if i % 3 else "b", run_us=100 + i, ts=60.0 * i) for i in range(30)]
        costs = [ledger.record(call, PRICES.quote(call), Bill()) for call in calls]
        assert ledger.pending == 30
        by_fn = await ledger.aggregate(None, None, None, "fn")  # queries flush first
        assert ledger.pending == 0
        assert {row["bucket"]: row["invocations"] for row in by_fn} == {"a": 20, "b": 10}
        assert sum(row["cost_pusd"] for row in by_fn) == sum(costs)
        only_b = await ledger.aggregate("b", 60.0 * 10, 60.0 * 20, "minute")
        assert [row["bucket"] for row in only_b] == [720, 900, 1080]  # i = 12, 15, 18
        record = await ledger.find("r7")
        assert record is not None and record["run_us"] == 107 and record["cost_pusd"] == costs[7]
        assert await ledger.find("nope") is None
        late = usage("late")
        callee = Bill()  # a nested call that made one call of its own
        callee.add((2, 0, 2, 2), Bill())
        nested = Bill()
        nested.add((5, 1, 6, 7), callee)
        assert (nested.calls, nested.totals) == (2, (7, 1, 8, 9))
        assert ledger.record(late, PRICES.quote(late), nested) == PRICES.cost(late) + 7
        ledger.close()  # writes what is pending

    trio.run(scenario)

    async def reopened() -> None:
        ledger = Ledger(path, flush_interval_s=60)
        rows = await ledger.aggregate(None, None, None, "fn")
        assert sum(row["invocations"] for row in rows) == 31
        ledger.close()

    trio.run(reopened)


def test_a_flush_larger_than_one_insert_keeps_every_row_and_the_last_of_each_id(tmp_path: Path) -> None:
    # 1500 rows go out as INSERTs of 512, 512, 256, 128, 64, 16, 8 and 4 rows; a request
    # recorded twice in one batch (a late bill after a 504) keeps its later row.
    async def scenario() -> None:
        ledger = Ledger(tmp_path / "ledger.sqlite3", flush_interval_s=60)
        for index in range(1499):
            ledger.record(usage(f"r{index}", run_us=index + 1), PRICES.quote(usage(run_us=index + 1)), Bill())
        replaced = usage("r7", run_us=5000)
        ledger.record(replaced, PRICES.quote(replaced), Bill())
        await ledger.flush()
        rows = await ledger.aggregate(None, None, None, "fn")
        assert sum(row["invocations"] for row in rows) == 1499
        record = await ledger.find("r7")
        assert record is not None and record["run_us"] == 5000
        record = await ledger.find("r1498")
        assert record is not None and record["run_us"] == 1499
        ledger.close()

    trio.run(scenario)


def test_a_refused_write_is_rolled_back_kept_and_retried(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    logged: list[str] = []

    async def scenario() -> None:
        ledger = Ledger(path, flush_interval_s=60, log=logged.append, busy_timeout_s=0.05)
        first = [usage(f"a{index}") for index in range(3)]
        for call in first:
            ledger.record(call, PRICES.quote(call), Bill())
        # Another process holds the database: the batch cannot be written.
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        assert await ledger.flush() is False  # no exception escapes into the worker's nursery
        assert ledger.pending == 3 and ledger.write_failures == 1
        assert "cannot write 3 row(s)" in logged[0] and "locked" in logged[0]
        later = usage("b0")
        ledger.record(later, PRICES.quote(later), Bill())
        blocker.execute("ROLLBACK")
        blocker.close()
        assert await ledger.flush() is True
        rows = await ledger.aggregate(None, None, None, "fn")
        assert sum(row["invocations"] for row in rows) == 4  # nothing lost, nothing doubled
        ledger.close()

    trio.run(scenario)


def test_metrics_parse_as_prometheus_text() -> None:
    metrics = Metrics()
    metrics.record(usage(function="hello", cold=True), 350, 201_000)
    metrics.record(usage(function="hello"), 90, 200_100)
    metrics.record(usage(function="boom", status=502), 2_000_000, 200_000)
    text = metrics.to_prometheus({"wasmlambda_pool_idle_instances": ("gauge", "Idle.", 2)})
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert {"wasmlambda_invocations", "wasmlambda_cold_starts", "wasmlambda_invocation_duration_seconds",
            "wasmlambda_cost_picodollars", "wasmlambda_billed_microseconds", "wasmlambda_pool_idle_instances"} \
        <= set(families)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in families.values() for s in family.samples}
    assert samples[("wasmlambda_invocations_total", (("function", "hello"), ("status", "200")))] == 2
    assert samples[("wasmlambda_invocations_total", (("function", "boom"), ("status", "502")))] == 1
    assert samples[("wasmlambda_cold_starts_total", (("function", "hello"),))] == 1
    assert samples[("wasmlambda_invocation_duration_seconds_bucket", (("function", "hello"), ("le", "0.0001")))] == 1
    assert samples[("wasmlambda_invocation_duration_seconds_bucket", (("function", "hello"), ("le", "+Inf")))] == 2
    assert samples[("wasmlambda_invocation_duration_seconds_bucket", (("function", "boom"), ("le", "1.0")))] == 0
    assert samples[("wasmlambda_invocation_duration_seconds_count", (("function", "boom"),))] == 1
    assert samples[("wasmlambda_cost_picodollars_total", (("function", "hello"),))] == 401_100
    assert samples[("wasmlambda_pool_idle_instances", ())] == 2
