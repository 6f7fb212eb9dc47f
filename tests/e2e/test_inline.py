"""Calls on the event loop's own thread (kernel/_inline.py).

Short warm calls run there, with no hop to a sandbox thread.  A call that
would block the loop (a host call, a sleep) or runs past the inline budget
is stopped before it has any effect, runs again on a sandbox thread, and its
function stays there: each test below fails if that guarantee breaks.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..conftest import EXAMPLES, FunctionFactory
from .conftest import WorkerProcess, wait_until

pytestmark = pytest.mark.e2e

QUICK = {"work": None}


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[WorkerProcess]:
    """A worker whose threshold for running inline is its maximum (10 ms), so that
    which quick call runs inline never depends on how fast this machine is today."""
    process = WorkerProcess(tmp_path / "data", tmp_path / "worker.log", env={"WASMLAMBDA_INLINE_US": "10000"})
    process.start()
    yield process
    assert process.stop() == 0, process.log_path.read_text()


def _stats(worker: WorkerProcess) -> dict[str, Any]:
    stats: dict[str, Any] = worker.request("GET", "/stats").json()
    return stats


def _until_inline(worker: WorkerProcess, name: str, event: Any = QUICK) -> None:
    """Call ``name`` with a quick event until one of its calls has run inline."""
    for _ in range(50):
        before = _stats(worker)["inline"]["calls"]
        assert worker.run(name, event).status == 200
        if _stats(worker)["inline"]["calls"] > before:
            return
    raise AssertionError(f"no call of {name!r} ran inline in 50 tries")


def test_short_warm_calls_run_inline(worker: WorkerProcess) -> None:
    worker.deploy("hello", EXAMPLES / "hello")
    _until_inline(worker, "hello", {"name": "x"})
    before = _stats(worker)["inline"]["calls"]
    for index in range(10):
        reply = worker.run("hello", {"name": f"n{index}"})
        assert reply.json() == {"hello": f"n{index}"} and reply.headers["x-wasmlambda-start"] == "warm"
        assert int(reply.headers["x-wasmlambda-cpu-us"]) > 0  # metered on the loop's thread as on any other
    stats = _stats(worker)
    assert stats["inline"] == {"calls": before + 10, "moved": 0}
    assert stats["functions"]["hello"]["runs_inline"] is True


def test_a_host_call_moves_the_call_before_it_happens(worker: WorkerProcess,
                                                      make_function: FunctionFactory) -> None:
    worker.deploy("counter", make_function("counter", """
        from wasmlambda_guest import kv

        def f(event):
            return kv.incr("n") if event.get("work") == "count" else "idle"
    """))
    _until_inline(worker, "counter")
    # Inline, the increment traps before it reaches the store; run again on a thread, it counts once.
    assert worker.run("counter", {"work": "count"}).json() == 1
    assert worker.run("counter", {"work": "count"}).json() == 2
    stats = _stats(worker)
    assert stats["inline"]["moved"] == 1
    assert stats["functions"]["counter"]["runs_inline"] is False
    assert "'counter' runs on sandbox threads from now on" in worker.log_path.read_text()


def test_a_sleep_never_blocks_the_loop(worker: WorkerProcess, make_function: FunctionFactory) -> None:
    worker.deploy("hello", EXAMPLES / "hello")
    worker.deploy("napper", make_function("napper", """
        import time

        def f(event):
            if event.get("work") == "nap":
                time.sleep(3)
            return "rested"
    """))
    _until_inline(worker, "napper")
    answers: list[str] = []

    def nap() -> None:
        reply = worker.request("POST", "/run/napper", b'{"work": "nap"}', fresh=True)
        answers.append(reply.json())

    napping = threading.Thread(target=nap)
    napping.start()
    try:
        # The nap moved to a sandbox thread at its sleep: the loop still answers meanwhile.
        wait_until(lambda: _stats(worker)["queue"]["busy_threads"] == 1, what="the nap running on a thread")
        for _ in range(3):
            assert worker.run("hello", {"name": "awake"}, fresh=True).json() == {"hello": "awake"}
        assert answers == []
    finally:
        napping.join()
    assert answers == ["rested"]
    assert _stats(worker)["functions"]["napper"]["runs_inline"] is False


def test_a_long_call_moves_instead_of_holding_the_loop(worker: WorkerProcess,
                                                      make_function: FunctionFactory) -> None:
    worker.deploy("spinner", make_function("spinner", """
        import time

        def f(event):
            if event.get("work") == "spin":
                end = time.perf_counter() + 0.3
                while time.perf_counter() < end:
                    pass
            return "done"
    """))
    _until_inline(worker, "spinner")
    assert worker.run("spinner", {"work": "spin"}).json() == "done"  # not 504: moved past the budget, run again
    stats = _stats(worker)
    assert stats["inline"]["moved"] == 1
    assert stats["functions"]["spinner"]["runs_inline"] is False
    assert "ran longer than 20 ms" in worker.log_path.read_text()


def test_a_pipelining_client_cannot_starve_another(worker: WorkerProcess, make_function: FunctionFactory) -> None:
    # Inline calls and a socket read without waiting through Trio: a client that
    # never lets the loop wait (500 requests in one write) must still let
    # another connection's request through between its own.  The function hands
    # out tickets in the order calls run (one warm instance, calls inline).
    worker.deploy("ticket", make_function("ticket", """
        served = 0

        def f(event):
            global served
            served += 1
            return served
    """))
    _until_inline(worker, "ticket", None)
    request = b"POST /run/ticket HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nnull"

    def tickets(connection: socket.socket, count: int) -> list[int]:
        received = b""
        connection.settimeout(30)
        while len(found := re.findall(rb"\r\n\r\n(\d+)", received)) < count:
            received += connection.recv(1 << 20)
        return [int(ticket) for ticket in found]

    flood, single = (socket.create_connection(("127.0.0.1", worker.port)) for _ in range(2))
    with flood, single:
        for connection in (flood, single):  # both accepted before the flood
            connection.sendall(request)
            tickets(connection, 1)
        flooded: list[int] = []
        reader = threading.Thread(target=lambda: flooded.extend(tickets(flood, 500)))  # (no backpressure)
        reader.start()
        flood.sendall(request * 500)
        single.sendall(request)
        [single_ticket] = tickets(single, 1)
        reader.join()
    assert single_ticket < max(flooded)  # served between the flood's calls, not after all of them
