"""Streamed responses and async handlers, worker versus a plain Trio + h11 server.

Starts ``wasmlambda serve`` with three functions deployed (``stream``: a
generator yielding N chunks of S bytes, read from the query string;
``hello`` and ``ahello``: the same handler, sync and ``async def``), and
bench/baseline_server.py, whose ``/stream`` does what the generator does in
the host interpreter.  Measured with a raw-socket client, same machine:

* time to first byte of the body (request sent -> first chunk's data),
  p50 and p99 over ``--ttfb-requests`` keep-alive requests of 1 chunk;
* chunks/s and MB/s over a long stream (``--chunks`` of ``--size`` bytes),
  best of 3, with the server's CPU seconds per MB (/proc: Linux only);
* the warm round trip (``http.client`` keep-alive) of ``hello`` against
  ``ahello``: what running the handler on the guest's event loop costs;
* ``fan``, an async handler awaiting three ``invoke_async`` calls of
  ``nap`` (a 100 ms function) with ``asyncio.gather``: its round trip
  against one call of ``nap``.

Usage: python bench/streaming.py [--ttfb-requests 500] [--chunks 20000] [--size 1024]
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.load import ADMIN_TOKEN, cpu_seconds, start_server, stop_server  # noqa: E402

STREAM = """
from wasmlambda_guest import context

def f(event):
    size = int(context.query.get("size", 1024))
    chunk = b"x" * size
    for _ in range(int(context.query.get("chunks", 10))):
        yield chunk
"""
HELLO = "def f(event):\n    return {'hello': (event or {}).get('name', 'world')}\n"
AHELLO = "async def f(event):\n    return {'hello': (event or {}).get('name', 'world')}\n"
NAP = "import time\n\ndef f(event):\n    time.sleep(0.1)\n    return event\n"
FAN = ("import asyncio\nfrom wasmlambda_guest import invoke_async\n\n"
       "async def f(event):\n    return await asyncio.gather(*(invoke_async('nap', i) for i in range(3)))\n")
FUNCTIONS = {"stream": STREAM, "hello": HELLO, "ahello": AHELLO, "nap": NAP, "fan": FAN}


class ChunkedReader:
    """One keep-alive connection reading chunked responses off a raw socket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()

    def _fill(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError("the server closed the connection")
        self.buffer += data

    def _line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            self._fill()
        line = bytes(self.buffer[:end])
        del self.buffer[:end + 2]
        return line

    def get(self, path: str) -> tuple[float, float, int]:
        """(seconds to the first body byte, seconds to the end, body bytes)."""
        started = time.perf_counter()
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        while self._line():  # the head
            pass
        first = 0.0
        total = 0
        while size := int(self._line(), 16):
            while len(self.buffer) < size + 2:
                self._fill()
            if not first:
                first = time.perf_counter() - started
            total += size
            del self.buffer[:size + 2]
        self._line()  # after the last chunk
        return first, time.perf_counter() - started, total


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def measure_stream(port: int, pid: int, path: str, args: argparse.Namespace) -> dict[str, float]:
    reader = ChunkedReader(port)
    ttfb = [reader.get(f"{path}?chunks=1&size=16")[0] for _ in range(args.ttfb_requests)]
    best = float("inf")
    cpu = 0.0
    for _ in range(3):
        before = cpu_seconds(pid)
        _, seconds, total = reader.get(f"{path}?chunks={args.chunks}&size={args.size}")
        assert total == args.chunks * args.size
        if seconds < best:
            best, cpu = seconds, cpu_seconds(pid) - before
    reader.sock.close()
    megabytes = args.chunks * args.size / 1e6
    return {"ttfb_p50_ms": percentile(ttfb, 0.5) * 1000, "ttfb_p99_ms": percentile(ttfb, 0.99) * 1000,
            "chunks_per_s": args.chunks / best, "mb_per_s": megabytes / best, "cpu_s_per_mb": cpu / megabytes}


def round_trip(port: int, path: str, requests: int, warmup: int = 100) -> tuple[float, float]:
    connection = http.client.HTTPConnection("127.0.0.1", port)
    latencies = []
    for index in range(requests + warmup):
        started = time.perf_counter()
        connection.request("POST", path, body=b'{"name": "bench"}')
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status
        if index >= warmup:
            latencies.append(time.perf_counter() - started)
    connection.close()
    return percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ttfb-requests", type=int, default=500)
    parser.add_argument("--chunks", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--requests", type=int, default=3000, help="round trips of hello and ahello")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wasmlambda-bench-stream-") as scratch:
        root = Path(scratch)
        for name, source in FUNCTIONS.items():
            (root / name).mkdir()
            (root / name / "f.py").write_text(source)
        worker, worker_port = start_server([sys.executable, "-m", "wasmlambda", "serve", "--port", "0", "--data-dir",
                                            str(root / "data"), "--deploy", *(str(root / name) for name in FUNCTIONS)])
        baseline, baseline_port = start_server([sys.executable, str(REPO / "bench" / "baseline_server.py")])
        try:
            rows = {
                "wasmlambda (generator handler)": measure_stream(worker_port, worker.pid, "/run/stream", args),
                "trio + h11 (baseline, no sandbox)": measure_stream(baseline_port, baseline.pid, "/stream", args),
            }
            sync = round_trip(worker_port, "/run/hello", args.requests)
            asynchronous = round_trip(worker_port, "/run/ahello", args.requests)
            one_nap = round_trip(worker_port, "/run/nap", 20, warmup=3)
            three_naps = round_trip(worker_port, "/run/fan", 20, warmup=3)
        finally:
            stop_server(worker)
            stop_server(baseline)
    assert ADMIN_TOKEN  # (the worker was started with it)
    print(f"# {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{args.chunks} chunks of {args.size} B; TTFB over {args.ttfb_requests} requests\n")
    print("| server | TTFB p50 ms | TTFB p99 ms | chunks/s | MB/s | server CPU s per MB |")
    print("|---|---|---|---|---|---|")
    for label, row in rows.items():
        print(f"| {label} | {row['ttfb_p50_ms']:.3f} | {row['ttfb_p99_ms']:.3f} | {row['chunks_per_s']:,.0f} | "
              f"{row['mb_per_s']:.1f} | {row['cpu_s_per_mb']:.3f} |")
    ours, theirs = rows["wasmlambda (generator handler)"], rows["trio + h11 (baseline, no sandbox)"]
    print(f"\nratios (wasmlambda / baseline): TTFB p50 {ours['ttfb_p50_ms'] / theirs['ttfb_p50_ms']:.2f}, "
          f"chunks/s {ours['chunks_per_s'] / theirs['chunks_per_s']:.2f}")
    print(f"\nwarm round trip, http.client keep-alive, {args.requests} requests: sync hello p50 {sync[0]:.3f} ms "
          f"p99 {sync[1]:.3f} ms; async hello p50 {asynchronous[0]:.3f} ms p99 {asynchronous[1]:.3f} ms "
          f"(+{asynchronous[0] - sync[0]:.3f} ms at p50)")
    print(f"\ninvoke_async: one call of a 100 ms function p50 {one_nap[0]:.1f} ms; three awaited together "
          f"(asyncio.gather) p50 {three_naps[0]:.1f} ms, p99 {three_naps[1]:.1f} ms (20 calls each)")


if __name__ == "__main__":
    main()
