"""Async handlers, invoke_async, and streamed responses, against a real worker.

Streams are read with a raw socket where the test must see chunks arrive one
by one; a handler's progress is synchronised through its own key-value
state (never a sleep).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from ..conftest import EXAMPLES, FunctionFactory
from .conftest import WorkerProcess, wait_until

pytestmark = pytest.mark.e2e


class RawResponse:
    """An HTTP/1.1 response read off a socket as it arrives: head, then chunks."""

    def __init__(self, port: int, request: bytes) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall(request)
        self.buffer = b""
        head = self._until(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines)}

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"closed before {marker!r}; got {self.buffer!r}")
            self.buffer += data
        found, _, self.buffer = self.buffer.partition(marker)
        return found

    def chunk(self) -> bytes:
        """The next chunk's data (b"" for the final, zero-length chunk)."""
        size = int(self._until(b"\r\n"), 16)
        while len(self.buffer) < size + 2:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("closed inside a chunk")
            self.buffer += data
        data, self.buffer = self.buffer[:size], self.buffer[size + 2:]
        return data

    def rest(self) -> bytes:
        """Everything until the server closes the connection."""
        while data := self.sock.recv(65536):
            self.buffer += data
        return self.buffer

    def close(self) -> None:
        self.sock.close()


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


GATED = """
    import time
    from wasmlambda_guest import context, kv

    def chunks():
        yield "first chunk, "
        while not kv.get_json("go", False):  # released by the test, through another call
            time.sleep(0.005)
        kv.put("go", False)
        yield b"second chunk"

    def f(event):
        if event == "go":
            kv.put("go", True)
            return "released"
        return chunks()
"""


@pytest.mark.parametrize("worker", ["fast", "h11"], indirect=True)
def test_a_chunk_arrives_while_the_handler_still_runs(worker: WorkerProcess, make_function: FunctionFactory) -> None:
    assert worker.deploy("gated", make_function("gated", GATED)).status == 201
    stream = RawResponse(worker.port, get("/run/gated"))
    try:
        assert stream.status == 200 and stream.headers["transfer-encoding"] == "chunked"
        assert stream.headers["content-type"] == "text/plain; charset=utf-8"
        assert stream.headers["x-wasmlambda-streamed"] == "true" and stream.headers["x-request-id"]
        assert stream.chunk() == b"first chunk, "  # while the handler waits to be released
        assert worker.run("gated", "go").json() == "released"
        assert stream.chunk() == b"second chunk"
        assert stream.chunk() == b""  # the final chunk: the stream is complete
    finally:
        stream.close()
    billed = worker.request("GET", f"/billing/{stream.headers['x-request-id']}").json()
    assert billed["status"] == 200 and billed["outcome"] == "ok" and billed["bytes_out"] == 25


DISCONNECT = """
    import time
    from wasmlambda_guest import kv

    def chunks():
        try:
            for index in range(10_000):
                yield "chunk %d\\n" % index
                time.sleep(0.01)
        finally:
            kv.put("closed", True)  # GeneratorExit inside the handler: its finally blocks run

    def f(event):
        if event == "closed?":
            return kv.get_json("closed", False)
        return chunks()
"""


def test_a_client_that_leaves_stops_the_guest_and_is_billed_as_such(worker: WorkerProcess,
                                                                   make_function: FunctionFactory) -> None:
    assert worker.deploy("ticker", make_function("ticker", DISCONNECT)).status == 201
    stream = RawResponse(worker.port, get("/run/ticker"))
    assert stream.chunk() == b"chunk 0\n" and stream.chunk() == b"chunk 1\n"
    request_id = stream.headers["x-request-id"]
    stream.close()
    wait_until(lambda: worker.run("ticker", "closed?").json() is True, what="the generator's finally block")
    wait_until(lambda: worker.request("GET", "/stats").json()["pool"]["busy"] == 0, what="no busy instance")
    billed = {}

    def recorded() -> bool:
        reply = worker.request("GET", f"/billing/{request_id}")
        billed.update(reply.json() if reply.status == 200 else {})
        return reply.status == 200

    wait_until(recorded, what="the ledger row")
    assert billed["status"] == 499 and billed["outcome"] == "client-disconnected"
    assert billed["cost_pusd"] > 0 and billed["bytes_out"] >= 16  # what ran is billed
    assert worker.run("ticker", "closed?").json() is True  # the instance went back to the pool and serves


def test_a_timeout_after_the_head_cuts_the_stream(worker: WorkerProcess, make_function: FunctionFactory) -> None:
    code = make_function("slow_stream", """
        import time

        def f(event):
            yield "started"
            time.sleep(60)
            yield "never"
    """, toml="[limits]\ntimeout_ms = 500\n")
    assert worker.deploy("slow_stream", code).status == 201
    stream = RawResponse(worker.port, get("/run/slow_stream"))
    assert stream.chunk() == b"started"
    assert stream.rest() == b""  # closed without the final chunk: the client can tell it was cut
    stream.close()
    path = f"/billing/{stream.headers['x-request-id']}"
    wait_until(lambda: worker.request("GET", path).status == 200, what="the ledger row")
    billed = worker.request("GET", path)
    assert billed.json()["status"] == 504 and billed.json()["outcome"] == "timeout"
    assert worker.request("GET", "/status").status == 200


def test_server_sent_events_and_an_error_before_the_first_chunk(worker: WorkerProcess,
                                                                make_function: FunctionFactory) -> None:
    code = make_function("events", """
        def f(event):
            if event == "fail":
                raise ValueError("before any chunk")
            yield "one"
            yield "two\\nlines"
            yield "event: named\\ndata: framed already\\n\\n"
    """)
    assert worker.deploy("events", code).status == 201
    reply = worker.request("POST", "/run/events", "null", headers={"Accept": "text/event-stream"}, admin=False)
    assert reply.headers["content-type"] == "text/event-stream"
    assert reply.body == b"data: one\n\ndata: two\ndata: lines\n\nevent: named\ndata: framed already\n\n"
    failed = worker.run("events", "fail")
    assert failed.status == 502 and "before any chunk" in failed.error["message"]  # a plain error response


def test_sse_clock_example(worker: WorkerProcess) -> None:
    assert worker.deploy("sse_clock", EXAMPLES / "sse_clock").status == 201
    reply = worker.request("GET", "/run/sse_clock/?count=3&interval=0.01", admin=False)
    events = [json.loads(line.removeprefix("data: ")) for line in reply.body.decode().split("\n\n") if line]
    assert reply.headers["content-type"] == "text/event-stream" and [event["tick"] for event in events] == [0, 1, 2]


def test_csv_export_example_streams_exact_bytes(worker: WorkerProcess) -> None:
    assert worker.deploy("csv_export", EXAMPLES / "csv_export").status == 201
    reply = worker.request("GET", "/run/csv_export/?rows=1234", admin=False)
    expected = "id,name,square\r\n" + "".join(f"{i},item-{i},{i * i}\r\n" for i in range(1234))
    assert reply.status == 200 and reply.headers["transfer-encoding"] == "chunked"
    assert reply.headers["content-type"] == "text/csv; charset=utf-8" and reply.body.decode() == expected


def test_wsgi_apps_without_a_length_stream(worker: WorkerProcess, tmp_path: Path) -> None:
    code = tmp_path / "wsgi_stream"
    code.mkdir()
    (code / "f.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    def body():\n        for index in range(3):\n            yield b'part %d;' % index\n"
        "    return body()\n")
    assert worker.deploy("wsgi_stream", code).status == 201
    reply = worker.request("GET", "/run/wsgi_stream/", admin=False)
    assert reply.headers["transfer-encoding"] == "chunked" and reply.body == b"part 0;part 1;part 2;"


def test_async_handlers_run_on_the_guest_loop(worker: WorkerProcess, make_function: FunctionFactory) -> None:
    code = make_function("aio", """
        import asyncio
        from wasmlambda_guest import kv

        async def double(value):
            await asyncio.sleep(0.01)
            return value * 2

        async def f(event):
            results = await asyncio.gather(*(double(value) for value in event))
            try:
                await asyncio.wait_for(asyncio.sleep(10), timeout=0.01)
            except asyncio.TimeoutError:
                timed_out = True
            task = asyncio.create_task(double(21))
            total = await kv.aincr("total", sum(results))
            return {"results": results, "timed_out": timed_out, "task": await task, "total": total}
    """)
    assert worker.deploy("aio", code).status == 201
    assert worker.run("aio", [1, 2, 3]).json() == {"results": [2, 4, 6], "timed_out": True, "task": 42,
                                                   "total": 12}
    assert worker.run("aio", [5]).json()["total"] == 22  # the same instance serves again


def test_awaited_invoke_async_calls_run_in_parallel(worker: WorkerProcess, make_function: FunctionFactory) -> None:
    nap = make_function("nap", """
        import time
        from wasmlambda_guest import kv

        def f(event):
            kv.incr("started")
            time.sleep(0.1)
            return kv.get_json("started")  # how many had started when this one ended
    """)
    fan = make_function("fan", """
        import asyncio
        from wasmlambda_guest import ServiceError, invoke_async, kv

        async def f(event):
            naps = await asyncio.gather(*(invoke_async("nap", index) for index in range(3)))
            try:
                await invoke_async("no_such_function")
            except ServiceError as exc:
                missing = str(exc)
            return {"naps": naps, "missing": missing}
    """)
    assert worker.deploy("nap", nap).status == 201 and worker.deploy("fan", fan).status == 201
    reply = worker.run("fan", None)
    assert reply.status == 200, reply.body
    # All three had started before any ended: they ran at the same time (bench/ measures the time).
    assert reply.json()["naps"] == [3, 3, 3]
    assert "no function named 'no_such_function'" in reply.json()["missing"]
    assert int(reply.headers["x-wasmlambda-nested-calls"]) == 3  # (the missing function never ran)


def test_async_fanout_example(worker: WorkerProcess) -> None:
    for example in ("hello", "echo", "wordcount", "async_fanout"):
        assert worker.deploy(example, EXAMPLES / example).status == 201
    reply = worker.run("async_fanout", {"text": "a b a"})
    assert reply.json() == {"hello": {"hello": "fan-out"}, "echo": {"text": "a b a"},
                            "wordcount": {"total": 3, "distinct": 2, "top": [["a", 2], ["b", 1]]}, "calls": 1}


def test_starlette_app_routes_bodies_streams_and_lifespan(worker: WorkerProcess) -> None:
    # Vendors starlette (and anyio) from PyPI.
    assert worker.deploy("starlette_app", EXAMPLES / "starlette_app").status == 201
    index = worker.request("GET", "/run/starlette_app/?x=1", admin=False)
    assert index.status == 200 and index.headers["content-type"] == "application/json"
    assert index.json() == {"path": "/run/starlette_app/", "query": {"x": "1"}, "primes_known": 46}  # lifespan state
    reversed_ = worker.request("POST", "/run/starlette_app/reverse", "stressed", admin=False)
    assert (reversed_.status, reversed_.body) == (201, b"desserts")
    primes = worker.request("GET", "/run/starlette_app/primes?upto=20", admin=False)
    assert primes.headers["transfer-encoding"] == "chunked" and primes.body == b"2\n3\n5\n7\n11\n13\n17\n19\n"
    assert worker.request("GET", "/run/starlette_app/sync", admin=False).body == b"plain def endpoints work too"
    missing = worker.request("GET", "/run/starlette_app/nowhere", admin=False)
    assert (missing.status, missing.body) == (404, b"Not Found")
