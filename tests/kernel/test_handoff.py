"""The loop/sandbox-thread handoff, both twins: a finished call is either seen
by the waiter or reported to the finisher as needing a wake-up, never lost."""

from __future__ import annotations

import os
import select
import threading
import time
from types import ModuleType

import pytest
import trio

from wasmlambda import _fastpath, _platform
from wasmlambda.kernel import _handoff_py
from wasmlambda.kernel._scheduler import _loop_epoll_fd

IMPLEMENTATIONS = [pytest.param(_handoff_py, id="python")]
if _fastpath.is_built("_handoff"):
    IMPLEMENTATIONS.append(pytest.param(_fastpath.pick("_handoff", _handoff_py), id="cython"))


@pytest.fixture(params=IMPLEMENTATIONS)
def handoff(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = request.param
    return module


def test_finished_before_the_waiter_parks(handoff: ModuleType) -> None:
    completion = handoff.Completion()
    assert not completion.spin(0)
    assert not completion.finish()  # nobody parked: no wake-up
    assert completion.spin(0)
    assert not completion.park()  # the waiter takes the result itself


def test_parked_before_the_call_finishes(handoff: ModuleType) -> None:
    completion = handoff.Completion()
    assert not completion.spin(1000)
    assert completion.park()
    assert completion.finish()  # the finisher must wake the waiter


def test_every_race_ends_in_exactly_one_handover(handoff: ModuleType) -> None:
    for round_ in range(2000):
        completion = handoff.Completion()
        must_wake: list[bool] = []
        finisher = threading.Thread(target=lambda c=completion, out=must_wake: out.append(c.finish()))
        finisher.start()
        seen = completion.spin(round_ % 3 * 1000) or not completion.park()
        finisher.join()
        assert seen != must_wake[0]


def test_spin_returns_when_finished_not_at_the_budget(handoff: ModuleType) -> None:
    completion = handoff.Completion()
    timer = threading.Timer(0.01, completion.finish)
    timer.start()
    started = time.monotonic()
    finished = completion.spin(5_000_000_000)
    elapsed = time.monotonic() - started
    timer.join()
    if handoff is _handoff_py:
        assert not finished and elapsed < 0.005  # the pure twin never waits
    else:
        assert finished and elapsed < 4


def test_spin_stops_once_the_watched_epoll_has_something_ready(handoff: ModuleType) -> None:
    # The loop watches Trio's epoll descriptor: a request arriving on another
    # connection must end the watch long before its budget.
    read_end, write_end = os.pipe()
    with select.epoll() as epoll:
        epoll.register(read_end, select.EPOLLIN)
        completion = handoff.Completion()
        timer = threading.Timer(0.01, os.write, (write_end, b"x"))
        timer.start()
        started = time.monotonic()
        finished = completion.spin(5_000_000_000, epoll.fileno())
        elapsed = time.monotonic() - started
        timer.join()
    os.close(read_end)
    os.close(write_end)
    assert not finished and elapsed < 4
    assert completion.park()  # still running: the waiter parks, the finisher will wake it


def test_doorbell(handoff: ModuleType) -> None:
    doorbell = handoff.Doorbell()
    seen = doorbell.rings
    assert not doorbell.wait(seen, 1000)
    doorbell.ring()
    assert doorbell.wait(seen, 0)
    assert doorbell.rings == seen + 1
    seen = doorbell.rings
    timer = threading.Timer(0.01, doorbell.ring)
    timer.start()
    rung = doorbell.wait(seen, 5_000_000_000)
    timer.join()
    assert rung == (handoff is not _handoff_py)


def test_the_scheduler_finds_trios_epoll_descriptor() -> None:
    # The loop's watch stops on I/O through Trio's epoll descriptor, which Trio
    # does not expose: if an upgrade moves it, the watch falls back to spin_us and
    # this test says so.
    async def find() -> int:
        return _loop_epoll_fd()

    fd = trio.run(find)
    assert fd >= 0 if _platform.EPOLL_WATCH else fd == -1  # (never read on the portable paths)
