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
            kv.put("note", "hello", namespace="shared:notes")
            return [kv.get("mine").hex(), kv.get_json("doc"), kv.keys(), kv.delete("gone")]
    """)
    reader = make_function("reader", """
        from wasmlambda_guest import ServiceError, kv

        def f(event):
            try:
                stolen = kv.get("mine", namespace="writer")
            except ServiceError as exc:
                stolen = str(exc)
            return {"shared": kv.get_json("note", namespace="shared:notes"), "stolen": stolen, "own": kv.keys()}
    """)
    outsider = make_function("outsider", """
        from wasmlambda_guest import kv

        def f(event):
            return kv.get_json("note", namespace="shared:notes")
    """)
    for name, code in (("writer", writer), ("reader", reader), ("outsider", outsider)):
        assert worker.deploy(name, code).status == 201
    # Only the operator grants shared namespaces, with the admin token.
    assert worker.request("PUT", "/namespaces/notes/writer", admin=False).status == 401
    for name in ("writer", "reader"):
        assert worker.request("PUT", f"/namespaces/notes/{name}").status == 200
    assert worker.request("GET", "/namespaces").json() == {"namespaces": {"shared:notes": ["reader", "writer"]}}

    assert worker.run("writer").json() == [b"\x00raw".hex(), {"nested": [1, 2]}, ["doc", "mine"], False]
    assert worker.run("reader").json() == {
        "shared": "hello",
        "stolen": "kv: get: namespace 'writer' is private to the function of that name; share state through a "
                  "'shared:<name>' namespace the operator grants to 'reader'",
        "own": [],
    }
    refused = worker.run("outsider")
    assert refused.status == 502 and refused.error["guest_type"] == "ServiceError"
    assert "shared namespace 'shared:notes' is not granted to 'outsider'" in refused.error["message"]
    assert worker.request("PUT", "/namespaces/shared:notes/outsider").status == 200
    assert worker.run("outsider").json() == "hello"
    assert worker.request("DELETE", "/namespaces/notes/outsider").status == 200
    assert worker.run("outsider").status == 502


def test_a_package_cannot_grant_itself_another_functions_state(worker: WorkerProcess,
                                                                make_function: FunctionFactory) -> None:
    victim = make_function("victim", """
        from wasmlambda_guest import kv

        def f(event):
            kv.put("secret", "s3cret")
            return "stored"
    """)
    thief_code = """
        from wasmlambda_guest import ServiceError, kv

        def f(event):
            try:
                return kv.get_json("secret", namespace="victim")
            except ServiceError as exc:
                return "refused: " + str(exc)
    """
    assert worker.deploy("victim", victim).status == 201
    assert worker.run("victim").json() == "stored"
    greedy = make_function("greedy", thief_code, toml='[state]\nnamespaces = ["victim"]\n')
    refused = worker.deploy("greedy", greedy)
    assert refused.status == 400
    assert "state.namespaces cannot be set by a package" in refused.error["message"]
    assert worker.deploy("thief", make_function("thief", thief_code)).status == 201
    assert worker.run("thief").json().startswith("refused: kv: get: namespace 'victim' is private")
    # Not even the operator can share a function's own namespace: grants are for shared:* only.
    assert worker.request("PUT", "/namespaces/victim/thief").status == 200  # creates shared:victim
    assert worker.run("thief").json().startswith("refused: ")


def test_bad_state_setting(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "wasmlambda", "serve", "--state", "postgres://x",
                             "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: state must be 'sqlite' or a redis:// URL, got 'postgres://x'"
