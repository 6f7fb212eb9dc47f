"""The meter's pure-Python spec and its Cython twin agree."""

from __future__ import annotations

from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wasmlambda import _fastpath
from wasmlambda.kernel import _meter_py

IMPLEMENTATIONS = [pytest.param(_meter_py, id="python")]
if _fastpath.is_built("_meter"):
    IMPLEMENTATIONS.append(pytest.param(_fastpath.pick("_meter", _meter_py), id="cython"))

u63 = st.integers(min_value=0, max_value=2**62)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@given(memory_mb=st.integers(0, 1 << 20), billed_us=u63, fuel=u63, gb_second=st.integers(0, 10**12),
       request=st.integers(0, 10**12), million_fuel=st.integers(0, 10**6))
def test_price_call_matches_exact_integer_arithmetic(implementation: ModuleType, memory_mb: int, billed_us: int,
                                                     fuel: int, gb_second: int, request: int,
                                                     million_fuel: int) -> None:
    expected = _meter_py.price_call(memory_mb, billed_us, fuel, gb_second, request, million_fuel)
    if max(expected) >= 2**64:
        return  # beyond any bill the settings allow; the twin works in 64-bit results
    assert implementation.price_call(memory_mb, billed_us, fuel, gb_second, request, million_fuel) == expected


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_price_call_known_values(implementation: ModuleType) -> None:
    assert implementation.price_call(128, 412, 0, 16_666_667, 200_000, 0) == (
        200_858, 858, 200_000 + 2_083, 200_000 + 208_333)
    assert implementation.price_call(1024, 15 * 60 * 10**6, 10**15, 16_666_667, 0, 10**6) == (
        15_000_000_300 + 10**15, 15_000_000_300, 15_000_000_300 + 10**15, 15_000_000_300 + 10**15)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_counters(implementation: ModuleType) -> None:
    counters = implementation.Counters()
    for duration in (50, 100, 101, 250, 40_000_000):
        counters.record(duration > 1000, duration == 50, duration, duration // 2, 10**20)
    assert (counters.invocations, counters.cold_starts, counters.warm_starts, counters.errors) == (5, 1, 4, 1)
    assert counters.duration_us_total == 40_000_501 and counters.billed_us_total == 20_000_250
    assert counters.cost_pusd_total == 5 * 10**20
    histogram = counters.histogram()
    assert len(histogram) == len(_meter_py.LATENCY_BUCKETS) + 1
    assert histogram[0] == 2  # 50 and exactly 100 µs: `le` buckets include their bound
    assert histogram[1] == 2 and histogram[-1] == 1
