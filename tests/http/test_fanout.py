"""Merging the answers of several processes and workers (pure functions)."""

from __future__ import annotations

import pytest

from wasmlambda.http._fanout import merge_billing, merge_counters, merge_logs, parse_cursor
from wasmlambda.kernel import Peer

A, B = Peer("w.0", "host:/data", "http://a"), Peer("w.1", "host:/data", "http://b")


def test_counters_are_summed_key_by_key() -> None:
    merged = merge_counters([{"invocations": 3, "functions": {"f": {"errors": 1}}, "version": "x"},
                             {"invocations": 2, "functions": {"f": {"errors": 0}, "g": {"errors": 4}}, "version": "x"}])
    assert merged == {"invocations": 5, "functions": {"f": {"errors": 1}, "g": {"errors": 4}}, "version": "x"}


def test_logs_in_time_order_with_one_cursor_position_per_process() -> None:
    answers = [(A, {"lines": [{"seq": 7, "time": 2.0, "line": "a7"}, {"seq": 8, "time": 4.0, "line": "a8"}]}),
               (B, {"lines": [{"seq": 3, "time": 3.0, "line": "b3"}]})]
    page, cursor = merge_logs(answers, {"*": 0}, limit=2)
    assert [line["line"] for line in page] == ["a7", "b3"] and [line["worker"] for line in page] == ["w.0", "w.1"]
    assert parse_cursor(cursor) == {"w.0": 7, "w.1": 3}  # a8 comes on the next page
    _, unchanged = merge_logs([(A, {"lines": []}), (B, {"lines": []})], parse_cursor(cursor), limit=2)
    assert parse_cursor(unchanged) == {"w.0": 7, "w.1": 3}


@pytest.mark.parametrize("bad", ["w.0=x", "a,b", "=1,w=q"])
def test_a_malformed_cursor_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_cursor(bad)


def test_billing_rows_are_summed_per_bucket() -> None:
    rows = merge_billing([[{"bucket": "f", "invocations": 2, "cost_pusd": 10}],
                          [{"bucket": "g", "invocations": 1, "cost_pusd": 5},
                           {"bucket": "f", "invocations": 1, "cost_pusd": 4}]])
    assert rows == [{"bucket": "f", "invocations": 3, "cost_pusd": 14},
                    {"bucket": "g", "invocations": 1, "cost_pusd": 5}]
