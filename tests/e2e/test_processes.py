"""``serve --processes 2``: one port, two supervised processes sharing one data dir."""

from __future__ import annotations

import http.client
import json
import os
import signal
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from ..conftest import EXAMPLES, FunctionFactory
from .conftest import Reply, WorkerProcess, wait_until
from .test_streaming import GATED, RawResponse, get


@pytest.fixture
def two_processes(tmp_path: Path) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(tmp_path / "data", tmp_path / "worker.log")
    worker.start("--processes", "2", "--deploy", str(EXAMPLES / "hello"))
    yield worker
    if worker.process is not None:
        assert worker.stop() == 0, worker.log_path.read_text()


@pytest.fixture
def connections(two_processes: WorkerProcess) -> Iterator[dict[str, http.client.HTTPConnection]]:
    """A keep-alive connection to each process (the kernel spreads new connections over them)."""
    found: dict[str, http.client.HTTPConnection] = {}
    for _ in range(200):
        connection = http.client.HTTPConnection("127.0.0.1", two_processes.port, timeout=30)
        connection.request("GET", "/status")
        status = json.loads(connection.getresponse().read())
        if status["worker"] in found:
            connection.close()
        else:
            found[status["worker"]] = connection
        if len(found) == 2:
            break
    assert len(found) == 2, f"200 connections all reached {sorted(found)}"
    yield found
    for connection in found.values():
        connection.close()


def call(connection: http.client.HTTPConnection, method: str, path: str, body: bytes = b"",
         token: str = "") -> Reply:
    connection.request(method, path, body, headers={"Authorization": f"Bearer {token}"} if token else {})
    return Reply(connection.getresponse())


def test_every_response_names_its_process(two_processes: WorkerProcess,
                                          connections: dict[str, http.client.HTTPConnection]) -> None:
    seen = {}
    for worker_id, connection in connections.items():
        reply = call(connection, "POST", "/run/hello", b'{"name": "p"}')
        assert reply.json() == {"hello": "p"}
        assert reply.headers["x-wasmlambda-worker"] == worker_id
        seen[worker_id] = call(connection, "GET", "/status").json()["pid"]
    assert two_processes.process is not None
    assert len(set(seen.values())) == 2 and two_processes.process.pid not in seen.values()  # children, not the parent


def test_a_deploy_through_one_process_is_served_by_the_other_at_once(
        two_processes: WorkerProcess, connections: dict[str, http.client.HTTPConnection],
        make_function: FunctionFactory) -> None:
    from guest_sdk import build_bytes

    (_, deployer), (second, other) = connections.items()
    token = two_processes.admin_token
    for version in range(3):  # a new function, then two redeploys: never the old version afterwards
        folder = make_function(f"v{version}", f"def f(event):\n    return {version}\n")
        reply = call(deployer, "POST", "/registry/fresh", build_bytes(folder, progress=lambda _: None), token)
        assert reply.status == 201, reply.body
        answer = call(other, "POST", "/run/fresh", b"null")
        assert (answer.headers["x-wasmlambda-worker"], answer.json()) == (second, version)
    assert call(other, "DELETE", "/registry/fresh", token=token).status == 200
    assert call(deployer, "POST", "/run/fresh", b"null").status == 404
    assert call(deployer, "GET", "/registry/", token=token).json()["functions"][0]["name"] == "hello"


def test_a_killed_process_is_replaced_while_the_other_serves(
        two_processes: WorkerProcess, connections: dict[str, http.client.HTTPConnection]) -> None:
    (victim_id, victim), (survivor_id, survivor) = connections.items()
    victim_pid = call(victim, "GET", "/status").json()["pid"]
    os.kill(victim_pid, signal.SIGKILL)
    assert call(survivor, "POST", "/run/hello", b'{"name": "still"}').json() == {"hello": "still"}

    def replaced() -> bool:
        for _ in range(20):
            try:
                reply = two_processes.request("GET", "/status", fresh=True)
            except ConnectionResetError:
                # Connections the kernel had queued on the killed process's socket are reset
                # when it closes (unless net.ipv4.tcp_migrate_req = 1): in flight on it, lost.
                continue
            if reply.json()["worker"] == victim_id:
                return bool(reply.json()["pid"] != victim_pid)
        return False

    wait_until(replaced, timeout_s=60, what=f"a new process {victim_id}")
    assert "exited with signal SIGKILL; starting another" in two_processes.log_path.read_text()
    assert call(survivor, "GET", "/status").json()["worker"] == survivor_id


def test_stats_logs_and_billing_answer_for_both_processes(
        two_processes: WorkerProcess, connections: dict[str, http.client.HTTPConnection],
        make_function: FunctionFactory) -> None:
    from guest_sdk import build_bytes

    token = two_processes.admin_token
    (first, one), (second, other) = connections.items()
    folder = make_function("talk", "def f(event):\n    print('said', event)\n    return event\n")
    assert call(one, "POST", "/registry/talk", build_bytes(folder, progress=lambda _: None), token).status == 201
    calls = {first: 3, second: 2}
    for worker_id, connection in connections.items():
        for index in range(calls[worker_id]):
            assert call(connection, "POST", "/run/talk", json.dumps(f"{worker_id}-{index}").encode()).status == 200
    for connection in (one, other):  # the same answer from either process
        stats = call(connection, "GET", "/stats", token=token).json()
        assert stats["functions"]["talk"]["invocations"] == 5 and stats["processes"] == sorted(calls)
        assert call(connection, "GET", "/stats?scope=process", token=token).json()["functions"]["talk"][
            "invocations"] in (2, 3)
        logs = call(connection, "GET", "/logs/talk", token=token).json()
        said = sorted(line["line"] for line in logs["lines"])
        assert said == sorted(f"said {worker_id}-{index}" for worker_id, count in calls.items()
                              for index in range(count))
        assert {line["worker"] for line in logs["lines"]} == set(calls)
        follow = call(connection, "GET", f"/logs/talk?since={logs['next']}", token=token).json()
        assert follow["lines"] == []  # the cursor covers both processes
        wait_until(partial(billed_calls, connection, token, 5), what="5 calls of talk in the shared ledger")


def billed_calls(connection: http.client.HTTPConnection, token: str, expected: int) -> bool:
    rows = call(connection, "GET", "/billing", token=token).json()["rows"]
    return any(row["bucket"] == "talk" and row["invocations"] == expected for row in rows)


def test_a_deploy_that_fails_at_start_stops_the_supervisor(tmp_path: Path, make_function: FunctionFactory) -> None:
    import subprocess
    import sys

    broken = make_function("broken", "def f(event) return\n")
    done = subprocess.run([sys.executable, "-m", "wasmlambda", "serve", "--processes", "2", "--port", "0",
                           "--data-dir", str(tmp_path / "data"), "--deploy", str(broken)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "SyntaxError" in done.stderr and "listening" not in done.stdout


def test_a_process_streams(two_processes: WorkerProcess, make_function: FunctionFactory) -> None:
    assert two_processes.deploy("gated", make_function("gated", GATED)).status == 201
    stream = RawResponse(two_processes.port, get("/run/gated"))
    try:
        assert stream.chunk() == b"first chunk, "
        assert two_processes.run("gated", "go", fresh=True).json() == "released"  # whichever process answers
        assert stream.chunk() == b"second chunk" and stream.chunk() == b""
    finally:
        stream.close()
