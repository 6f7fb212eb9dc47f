"""A queued call whose caller is gone (504, or a closed connection) never runs
and stops counting against ``max_queue`` at once."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import FunctionFactory
from .conftest import Reply, WorkerProcess, wait_until

pytestmark = pytest.mark.e2e

BLOCK_S = 3


@pytest.fixture
def one_thread_worker(tmp_path: Path, make_function: FunctionFactory) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(tmp_path / "data", tmp_path / "log",
                           env={"WASMLAMBDA_SANDBOX_THREADS": "1", "WASMLAMBDA_MAX_QUEUE": "1"})
    worker.start()
    blocker = make_function("blocker", f"import time\n\ndef f(event):\n    time.sleep({BLOCK_S})\n    return 'done'\n")
    # Each counts its own runs: a later call answering 1 proves an earlier one never ran.
    counting = "from wasmlambda_guest import kv\n\ndef f(event):\n    return kv.incr('runs')\n"
    marker = make_function("marker", counting, toml="[limits]\ntimeout_ms = 200\n")
    patient = make_function("patient", counting)  # the default timeout, 30 s
    for name, folder in (("blocker", blocker), ("marker", marker), ("patient", patient)):
        assert worker.deploy(name, folder).status == 201
    yield worker
    assert worker.stop() == 0, worker.log_path.read_text()


def occupy_the_thread(worker: WorkerProcess) -> threading.Thread:
    """Run blocker on the only sandbox thread; return once it is running."""
    replies: list[Reply] = []
    thread = threading.Thread(target=lambda: replies.append(worker.run("blocker", fresh=True)))
    thread.start()
    wait_until(lambda: worker.request("GET", "/stats").json()["queue"]["running"] == 1)
    return thread


def test_a_call_that_timed_out_in_the_queue_never_runs(one_thread_worker: WorkerProcess) -> None:
    worker = one_thread_worker
    blocker = occupy_the_thread(worker)
    timed_out = worker.run("marker", fresh=True)
    assert timed_out.status == 504
    assert timed_out.headers["x-wasmlambda-cost-pusd"] == "0"  # it waited; nothing ran, nothing is billed
    # It left the queue (max_queue = 1): the next call is admitted, not refused with 503.
    started = time.monotonic()
    second = worker.run("marker", fresh=True)
    assert time.monotonic() - started < BLOCK_S, "the blocker was meant to be still running"
    assert second.status == 504
    blocker.join()
    assert worker.run("marker").json() == 1  # neither queued call ran, before or after the blocker


def test_a_call_whose_caller_left_never_runs(one_thread_worker: WorkerProcess) -> None:
    worker = one_thread_worker
    blocker = occupy_the_thread(worker)
    body = json.dumps(None).encode()
    with socket.create_connection(("127.0.0.1", worker.port)) as client:
        client.sendall(b"POST /run/patient HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        wait_until(lambda: worker.request("GET", "/stats").json()["queue"]["waiting"] == 1)
    # The server notices the closed connection and withdraws the call at once
    # (its own deadline is 30 s away).
    wait_until(lambda: worker.request("GET", "/stats").json()["queue"]["waiting"] == 0, timeout_s=BLOCK_S / 2)
    assert blocker.is_alive()
    blocker.join()
    assert worker.run("patient").json() == 1
