"""Key-value state through the worker: durable, shared over Redis, namespaced."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..conftest import EXAMPLES, FunctionFactory
from .conftest import WorkerProcess

pytestmark = pytest.mark.e2e


def test_counter_survives_a_restart(worker: WorkerProcess) -> None:
    worker.deploy("counter", EXAMPLES / "counter")
    assert [worker.run("counter", {}).json()["count"] for _ in range(3)] == [1, 2, 3]
    worker.stop()
    worker.start()
    assert worker.run("counter", {"by": 10}).json() == {"count": 13}


def test_two_workers_count_together_on_redis(tmp_path: Path, redis_url: str) -> None:
    workers = [WorkerProcess(tmp_path / f"data{i}", tmp_path / f"log{i}") for i in range(2)]
    url = redis_url.rsplit("/", 1)[0] + "/3"  # a database of its own
    for worker in workers:
        worker.start("--state", url, "--deploy", str(EXAMPLES / "counter"))
    try:
        counts = [workers[i % 2].run("counter", {}).json()["count"] for i in range(10)]
        assert counts == list(range(1, 11))
    finally:
        for worker in workers:
            assert worker.stop() == 0


def test_values_namespaces_and_grants(worker: WorkerProcess, make_function: FunctionFactory) -> None:
    writer = make_function("writer", """
        from wasmlambda_guest import kv

        def f(event):
            kv.put("mine", b"\\x00raw")
            kv.put("doc", {"nested": [1, 2]})
            kv.put("note", "hello", namespace="shared")
            return [kv.get("mine").hex(), kv.get_json("doc"), kv.keys(), kv.delete("gone")]
    """, toml='[state]\nnamespaces = ["shared"]\n')
    reader = make_function("reader", """
        from wasmlambda_guest import ServiceError, kv

        def f(event):
            try:
                stolen = kv.get("mine", namespace="writer")
            except ServiceError as exc:
                stolen = str(exc)
            return {"shared": kv.get_json("note", namespace="shared"), "stolen": stolen, "own": kv.keys()}
    """, toml='[state]\nnamespaces = ["shared"]\n')
    outsider = make_function("outsider", """
        from wasmlambda_guest import kv

        def f(event):
            return kv.get("note", namespace="shared")
    """)
    for name, code in (("writer", writer), ("reader", reader), ("outsider", outsider)):
        assert worker.deploy(name, code).status == 201
    assert worker.run("writer").json() == [b"\x00raw".hex(), {"nested": [1, 2]}, ["doc", "mine"], False]
    assert worker.run("reader").json() == {
        "shared": "hello",
        "stolen": "kv: get: namespace 'writer' is not granted to 'reader' "
                  "(add it to [state] namespaces in wasmlambda.toml)",
        "own": [],
    }
    refused = worker.run("outsider")
    assert refused.status == 502 and refused.error["guest_type"] == "ServiceError"
    assert "namespace 'shared' is not granted to 'outsider'" in refused.error["message"]


def test_bad_state_setting(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "wasmlambda", "serve", "--state", "postgres://x",
                             "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: state must be 'sqlite' or a redis:// URL, got 'postgres://x'"
