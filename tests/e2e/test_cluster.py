"""``wasmlambda cluster up``: real redis-server, HAProxy and three workers on loopback."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from guest_sdk import build_bytes

from ..conftest import FunctionFactory
from .conftest import Reply, wait_until
from .test_streaming import GATED, RawResponse, get

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists(),
                                reason="HAProxy is not installed (make setup installs it)")


class Cluster:
    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        command = [sys.executable, "-m", "wasmlambda", "cluster", "up", "--workers", "3", "--port", str(self.port),
                   "--data-dir", str(data_dir)]
        with log_path.open("w") as log:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:"), log_path.read_text()
        self.description: dict[str, Any] = json.loads((data_dir / "cluster.json").read_text())
        self.token = (data_dir / "admin-token").read_text().strip()

    def request(self, method: str, path: str, body: bytes = b"", admin: bool = False) -> Reply:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body, headers={"Authorization": f"Bearer {self.token}"} if admin else {})
            return Reply(connection.getresponse())
        finally:
            connection.close()

    def deploy(self, name: str, folder: Path) -> None:
        reply = self.request("POST", f"/registry/{name}", build_bytes(folder, progress=lambda _: None), admin=True)
        assert reply.status == 201, reply.body

    def worker_pid(self, worker_id: str) -> int:
        return next(int(w["pid"]) for w in self.description["workers"] if w["id"] == worker_id)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return code


def free_port() -> int:
    """A loopback port nothing listens on now (HAProxy needs a fixed one)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path / "cluster", tmp_path / "cluster.log")
    yield running
    pids = [running.description["balancer"]["pid"], running.description["redis"]["pid"],
            *(w["pid"] for w in running.description["workers"])]
    assert running.stop() == 0, running.log_path.read_text()
    for pid in pids:  # everything it started is gone
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_cluster_description_and_routing_by_function(cluster: Cluster, make_function: FunctionFactory) -> None:
    assert [w["id"] for w in cluster.description["workers"]] == ["w1", "w2", "w3"]
    assert cluster.description["redis"]["url"].startswith("redis://127.0.0.1:")
    names = [f"fn{index}" for index in range(9)]
    for name in names:
        cluster.deploy(name, make_function(name, f"def f(event):\n    return {name!r}\n"))
    answered_by: dict[str, set[str]] = {name: set() for name in names}
    # One keep-alive client: HAProxy ends each request before routing the next, so the
    # bounded load (which would move a call off a busy worker) never sees this one busy.
    client = http.client.HTTPConnection("127.0.0.1", cluster.port, timeout=30)
    for _ in range(4):
        for name in names:
            client.request("POST", f"/run/{name}", b"null")
            reply = Reply(client.getresponse())
            assert reply.json() == name
            answered_by[name].add(reply.headers["x-wasmlambda-worker"])
    client.close()
    assert all(len(workers) == 1 for workers in answered_by.values()), answered_by  # code locality
    assert len(set().union(*answered_by.values())) >= 2, answered_by  # spread over the workers
    listed = cluster.request("GET", "/registry/", admin=True).json()["functions"]
    assert sorted(entry["name"] for entry in listed) == names

    def billed_everywhere() -> bool:  # any worker answers for the whole cluster's ledgers
        rows = cluster.request("GET", "/billing", admin=True).json()["rows"]
        return {row["bucket"]: row["invocations"] for row in rows} == dict.fromkeys(names, 4)

    wait_until(billed_everywhere, what="36 calls in the cluster's billing")
    stats = cluster.request("GET", "/stats", admin=True).json()
    assert stats["invocations"] == 36 and sorted(stats["processes"]) == ["w1", "w2", "w3"]


def test_kill_9_of_a_worker_under_load(cluster: Cluster, make_function: FunctionFactory) -> None:
    names = [f"fn{index}" for index in range(6)]
    for name in names:
        cluster.deploy(name, make_function(name, f"def f(event):\n    return {name!r}\n"))
    homes = {name: cluster.request("POST", f"/run/{name}", b"null").headers["x-wasmlambda-worker"] for name in names}
    victim = Counter(homes.values()).most_common(1)[0][0]

    stop = threading.Event()
    results: list[Counter[int]] = [Counter(), Counter()]

    def load(tally: Counter[int]) -> None:
        index = 0
        while not stop.is_set():  # one request at a time: at most one in flight when the worker dies
            try:
                tally[cluster.request("POST", f"/run/{names[index % len(names)]}", b"null").status] += 1
            except (OSError, http.client.HTTPException):
                tally[0] += 1
            index += 1

    clients = [threading.Thread(target=load, args=(tally,)) for tally in results]
    for client in clients:
        client.start()
    wait_until(lambda: sum(sum(tally.values()) for tally in results) >= 100, timeout_s=30, what="load before")
    os.kill(cluster.worker_pid(victim), signal.SIGKILL)
    before = sum(sum(tally.values()) for tally in results)
    wait_until(lambda: sum(sum(tally.values()) for tally in results) >= before + 300, timeout_s=60,
               what="load after the kill")
    stop.set()
    for client in clients:
        client.join()
    total = sum(results, Counter())
    failures = sum(count for status, count in total.items() if status != 200)
    assert failures <= len(clients), total  # at most the request each client had in flight on the victim
    for name in names:  # no function lost
        assert cluster.request("POST", f"/run/{name}", b"null").json() == name
    cluster.deploy("after", make_function("after", "def f(event):\n    return 'deployed after the kill'\n"))
    assert cluster.request("POST", "/run/after", b"null").json() == "deployed after the kill"
    assert f"{victim} (pid {cluster.worker_pid(victim)}) exited with -9" in cluster.log_path.read_text()


def test_an_invoke_key_created_through_any_worker_opens_every_worker(
        cluster: Cluster, make_function: FunctionFactory) -> None:
    cluster.deploy("locked", make_function("locked", "def f(event):\n    return 'opened'\n",
                                           toml="[function]\ninvoke_keys = true\n"))
    key = cluster.request("POST", "/keys/locked", admin=True).json()["key"]
    for worker in cluster.description["workers"]:  # each worker directly, not through the balancer
        connection = http.client.HTTPConnection("127.0.0.1", worker["port"], timeout=30)
        for headers, expected in (({}, 401), ({"Authorization": f"Bearer {key}"}, 200)):
            connection.request("POST", "/run/locked", b"null", headers=headers)
            reply = Reply(connection.getresponse())
            assert reply.status == expected, (worker["id"], reply.body)
        connection.close()


def test_a_worker_that_was_down_catches_up(cluster: Cluster, make_function: FunctionFactory) -> None:
    cluster.deploy("moving", make_function("v1", "def f(event):\n    return 'v1'\n"))
    home = cluster.request("POST", "/run/moving", b"null").headers["x-wasmlambda-worker"]
    os.kill(cluster.process.pid, signal.SIGSTOP)  # `cluster up` cannot restart the worker until SIGCONT
    try:
        os.kill(cluster.worker_pid(home), signal.SIGKILL)
        cluster.deploy("moving", make_function("v2", "def f(event):\n    return 'v2'\n"))  # while it is down
        assert cluster.request("POST", "/run/moving", b"null").json() == "v2"  # from another worker
    finally:
        os.kill(cluster.process.pid, signal.SIGCONT)
    port = next(w["port"] for w in cluster.description["workers"] if w["id"] == home)

    def back() -> bool:
        probe = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            probe.request("GET", "/status")
            return Reply(probe.getresponse()).status == 200
        except OSError:
            return False
        finally:
            probe.close()

    wait_until(back, timeout_s=60, what=f"{home} restarted")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("POST", "/run/moving", b"null")  # on the returned worker itself
    assert Reply(connection.getresponse()).json() == "v2"
    connection.close()
    assert "dropping the copy of 'moving' here" in cluster.log_path.read_text()


def test_a_cluster_that_cannot_start_stops_everything_it_started(tmp_path: Path,
                                                                  make_function: FunctionFactory) -> None:
    broken = make_function("broken", "def f(event) return\n")
    command = [sys.executable, "-m", "wasmlambda", "cluster", "up", "--workers", "2", "--port", str(free_port()),
               "--data-dir", str(tmp_path / "cluster"), "--deploy", str(broken)]
    def redis_servers() -> set[str]:  # (redis-server renames its process: found by name, not by path)
        return set(subprocess.run(["pgrep", "-x", "redis-server"], capture_output=True, text=True).stdout.split())

    before = redis_servers()
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "SyntaxError" in done.stderr and "listening" not in done.stdout
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout
    assert leftovers == "", leftovers  # no worker or HAProxy of it left running...
    assert redis_servers() <= before  # ...nor its Redis


def test_a_stream_passes_the_balancer_as_it_is_produced(cluster: Cluster, make_function: FunctionFactory) -> None:
    cluster.deploy("gated", make_function("gated", GATED))
    stream = RawResponse(cluster.port, get("/run/gated"))
    try:
        assert stream.status == 200 and stream.headers["transfer-encoding"] == "chunked"
        assert stream.chunk() == b"first chunk, "  # HAProxy forwards it while the handler still waits
        assert cluster.request("POST", "/run/gated", b'"go"').json() == "released"
        assert stream.chunk() == b"second chunk" and stream.chunk() == b""
    finally:
        stream.close()
