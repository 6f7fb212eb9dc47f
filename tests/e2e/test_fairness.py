"""Overload is answered, and shared fairly: a noisy function cannot starve a quiet one."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ..conftest import EXAMPLES, FunctionFactory
from .conftest import Reply, WorkerProcess, wait_until

pytestmark = pytest.mark.e2e

NOISY = "def f(event):\n    total = 0\n    for i in range(2_000_000):\n        total += i\n    return total\n"


def wait_for_queue(worker: WorkerProcess, waiting: int) -> None:
    wait_until(lambda: worker.request("GET", "/stats").json()["queue"]["waiting"] >= waiting, 30, "the queue")


def test_a_quiet_function_is_not_queued_behind_a_noisy_one(tmp_path: Path, make_function: FunctionFactory) -> None:
    worker = WorkerProcess(tmp_path / "data", tmp_path / "log", env={"WASMLAMBDA_SANDBOX_THREADS": "2"})
    worker.start()
    try:
        worker.deploy("noisy", make_function("noisy", NOISY))
        worker.deploy("hello", EXAMPLES / "hello")
        finished: list[str] = []
        lock = threading.Lock()

        def call(name: str, event: object) -> None:
            reply = worker.run(name, event, fresh=True)
            assert reply.status == 200
            with lock:
                finished.append(name)

        noisy = [threading.Thread(target=call, args=("noisy", None)) for _ in range(12)]
        for thread in noisy:
            thread.start()
        # Wait until the noisy calls fill the queue (one runs: half the threads at most).
        wait_for_queue(worker, 8)
        call("hello", {"name": "quiet"})
        with lock:
            noisy_before_quiet = finished.index("hello")
        for thread in noisy:
            thread.join()
        # First in, first out, hello would have waited for every noisy call queued before it;
        # taking turns, it waits for at most the one or two running.
        assert noisy_before_quiet <= 3, finished
    finally:
        assert worker.stop() == 0


def test_one_function_cannot_fill_the_queue(tmp_path: Path, make_function: FunctionFactory) -> None:
    worker = WorkerProcess(tmp_path / "data", tmp_path / "log", env={
        "WASMLAMBDA_SANDBOX_THREADS": "2", "WASMLAMBDA_MAX_QUEUED_PER_FUNCTION": "3"})
    worker.start()
    try:
        worker.deploy("noisy", make_function("noisy", NOISY))
        worker.deploy("hello", EXAMPLES / "hello")
        replies: list[Reply] = []
        threads = [threading.Thread(target=lambda: replies.append(worker.run("noisy", fresh=True)))
                   for _ in range(10)]
        for thread in threads:
            thread.start()
        wait_for_queue(worker, 3)
        assert worker.run("hello", {"name": "still"}, fresh=True).json() == {"hello": "still"}
        for thread in threads:
            thread.join()
        statuses = sorted(reply.status for reply in replies)
        assert 503 in statuses and 200 in statuses
        refused = next(reply for reply in replies if reply.status == 503)
        assert refused.headers["retry-after"] == "1" and refused.error["type"] == "CapacityExceeded"
    finally:
        assert worker.stop() == 0
