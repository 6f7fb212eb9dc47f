"""A slow deploy is bounded by the deploy's own deadline and holds up no other function's deploy."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ..conftest import EXAMPLES, FunctionFactory
from .conftest import Reply, WorkerProcess, wait_until

pytestmark = pytest.mark.e2e


def test_a_slow_import_stops_at_the_deploy_deadline(tmp_path: Path, make_function: FunctionFactory) -> None:
    worker = WorkerProcess(tmp_path / "data", tmp_path / "log", env={"WASMLAMBDA_DEFAULT_TIMEOUT_MS": "3000"})
    worker.start()
    try:
        # Its own timeout is 15 minutes; its import would sleep 10 of them.
        slow = make_function("slow", "import time\ntime.sleep(600)\n\ndef f(event):\n    return 1\n",
                             toml="[limits]\ntimeout_ms = 900000\n")
        replies: list[Reply] = []
        deploying = threading.Thread(target=lambda: replies.append(
            worker.deploy_fresh("slow", slow)))
        deploying.start()

        def stats() -> dict[str, int]:
            queue: dict[str, int] = worker.request("GET", "/stats").json()["queue"]
            return queue

        wait_until(lambda: stats()["busy_threads"] >= 1, what="the import running")
        # Another function deploys meanwhile: no global lock holds it behind the slow one.
        assert worker.deploy("hello", EXAMPLES / "hello").status == 201
        assert deploying.is_alive()
        deploying.join(timeout=30)
        assert replies[0].status == 400 and "took longer" in replies[0].error["message"]
        # The import was stopped with the deploy, not left running on a sandbox thread.
        wait_until(lambda: stats()["busy_threads"] == 0, 5, "the abandoned import's end")
        assert worker.request("GET", "/registry/slow").status == 404
        assert worker.run("hello", {"name": "x"}).json() == {"hello": "x"}
    finally:
        assert worker.stop() == 0
