"""A bounded run of the live-server fuzzer (bench/fuzz.py; `make fuzz` runs 1,000,000 inputs)."""

from __future__ import annotations

import pytest

from bench.fuzz import run

pytestmark = pytest.mark.e2e


def test_thousands_of_hostile_inputs_are_answered_or_closed() -> None:
    report = run(inputs=5000, seed=20261202, processes=2, progress=False)
    assert report["findings"] == {}, report["examples"]
    assert report["crashes"] == 0, report["first_traceback"]
