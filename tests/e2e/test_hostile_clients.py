"""Clients that try to smuggle, stall or exhaust the worker: each is answered
and cut off, and the worker keeps serving everyone else."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import EXAMPLES
from .conftest import WorkerProcess, wait_until

pytestmark = pytest.mark.e2e


def read_until_closed(connection: socket.socket, timeout_s: float = 10) -> bytes:
    connection.settimeout(timeout_s)
    answer = b""
    while chunk := connection.recv(65536):
        answer += chunk
    return answer


@pytest.fixture
def strict_worker(tmp_path: Path) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(tmp_path / "data", tmp_path / "log", env={
        "WASMLAMBDA_KEEPALIVE_TIMEOUT_S": "1", "WASMLAMBDA_REQUEST_TIMEOUT_S": "1",
        "WASMLAMBDA_MAX_CONNECTIONS": "8", "WASMLAMBDA_MAX_BUFFERED_REQUEST_MB": "1"})
    worker.start()
    assert worker.deploy("echo", EXAMPLES / "echo").status == 201
    worker.close_connection()
    yield worker
    assert worker.stop() == 0, worker.log_path.read_text()


@pytest.mark.parametrize("first", [b"POST", b"GET"])
def test_content_length_and_transfer_encoding_together_close_the_connection(worker: WorkerProcess,
                                                                            first: bytes) -> None:
    worker.deploy("echo", EXAMPLES / "echo")
    smuggling = (b"POST /run/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"4\r\n1234\r\n0\r\n\r\n"
                 + first + b" /status HTTP/1.1\r\nHost: x\r\n\r\n")
    with socket.create_connection(("127.0.0.1", worker.port)) as raw:
        raw.sendall(smuggling)
        answer = read_until_closed(raw)
    # Read as chunked (the body is 1234), answered once, and the connection closed: the
    # request hidden behind it is never served.
    assert answer.count(b"HTTP/1.1 ") == 1
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\n1234")
    assert b"connection: close" in answer.lower()


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/1.2", b"HTTP/0.9"])
def test_other_http_versions_get_505(worker: WorkerProcess, version: bytes) -> None:
    with socket.create_connection(("127.0.0.1", worker.port)) as raw:
        raw.sendall(b"GET /status " + version + b"\r\nHost: x\r\n\r\n")
        answer = read_until_closed(raw)
    assert answer.startswith(b"HTTP/1.1 505 ")


@pytest.mark.parametrize("head", [b"POST /run/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n",
                                  b"POST /run/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n"])
def test_a_trickling_request_gets_408(strict_worker: WorkerProcess, head: bytes) -> None:
    # One byte every 50 ms: each read is quick, the whole request never arrives.
    with socket.create_connection(("127.0.0.1", strict_worker.port)) as raw:
        raw.settimeout(0.05)
        answer = b""
        started = time.monotonic()
        for byte in (head + b"9" * 1000)[:200]:
            try:
                raw.send(bytes([byte]))
                answer += raw.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if answer:
                break
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert time.monotonic() - started < 5  # cut off at the 1 s deadline, not held open
    assert strict_worker.run("echo", 1).json() == 1


def test_an_idle_connection_is_closed(strict_worker: WorkerProcess) -> None:
    with socket.create_connection(("127.0.0.1", strict_worker.port)) as raw:
        raw.sendall(b"POST /run/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n5")
        answer = read_until_closed(raw)  # answered, then closed after 1 s of silence
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"5")


def test_connections_past_the_cap_get_503(strict_worker: WorkerProcess) -> None:
    held = []
    try:
        for _ in range(8):
            connection = socket.create_connection(("127.0.0.1", strict_worker.port))
            connection.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
            assert connection.recv(65536).startswith(b"HTTP/1.1 200 ")  # accepted and counted
            held.append(connection)
        with socket.create_connection(("127.0.0.1", strict_worker.port)) as extra:
            refused = read_until_closed(extra)
        assert refused.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in refused.lower()
    finally:
        for connection in held:
            connection.close()
    # Once they are gone, new clients are served again.
    wait_until(lambda: strict_worker.request("GET", "/status", fresh=True, admin=False).status == 200,
               what="a new client served")


def test_request_bytes_in_flight_are_capped(strict_worker: WorkerProcess) -> None:
    # Three clients each send 400 KB of a 600 KB event and stall: together they pass the
    # 1 MB cap, and whichever connection's bytes cross it is refused with 503 at once
    # (the others wait for the rest of their request until their 1 s deadline: 408).
    body = b"[" + b"1," * 299_999 + b"1]"
    head = b"POST /run/echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    clients = [socket.create_connection(("127.0.0.1", strict_worker.port)) for _ in range(3)]
    try:
        for client in clients:
            client.sendall(head + body[:400_000])
        answers = [read_until_closed(client)[:12] for client in clients]
    finally:
        for client in clients:
            client.close()
    assert b"HTTP/1.1 503" in answers, answers
    assert set(answers) <= {b"HTTP/1.1 503", b"HTTP/1.1 408"}
    assert strict_worker.run("echo", [1, 2]).json() == [1, 2]  # the bytes were given back


def test_running_out_of_descriptors_is_survived_quietly(tmp_path: Path) -> None:
    worker = WorkerProcess(tmp_path / "data", tmp_path / "log", max_open_files=128)
    worker.start()
    try:
        assert worker.deploy("echo", EXAMPLES / "echo").status == 201
        worker.close_connection()
        clients = [socket.create_connection(("127.0.0.1", worker.port)) for _ in range(300)]
        try:
            # The worker accepts until it runs out of descriptors, then backs off.
            wait_until(lambda: "cannot accept connections" in worker.log_path.read_text(),
                       what="running out of descriptors")
            time.sleep(1)  # what a flood would fill the log with: a line every 100 ms
        finally:
            for client in clients:
                client.close()

        def serves() -> bool:
            try:
                return worker.run("echo", 3, fresh=True).status == 200
            except OSError:
                return False

        wait_until(serves, 15, "serving again")  # the connections drain
        log = worker.log_path.read_text()
        assert log.count("Too many open files") == 1 and "Traceback" not in log, log
    finally:
        assert worker.stop() == 0


@pytest.mark.parametrize("target", [b"/status", b"/run/echo", b"/nowhere"])
def test_head_is_answered_without_a_body(worker: WorkerProcess, target: bytes) -> None:
    # Found by bench/fuzz.py: an answer to HEAD with a body broke h11's framing (a traceback)
    # and, on the fast path, the client's next read.
    worker.deploy("echo", EXAMPLES / "echo")
    with socket.create_connection(("127.0.0.1", worker.port)) as raw:
        raw.sendall(b"HEAD " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n"
                    b"POST /run/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\n7")
        answer = read_until_closed(raw)
    first, _, rest = answer.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 ") and b"content-length: " in first.lower()
    assert rest.startswith(b"HTTP/1.1 200 ") and rest.endswith(b"\r\n\r\n7")
    assert "Traceback" not in worker.log_path.read_text()
