"""End-to-end load: POST /run/hello over loopback, worker versus baseline.

Starts three ``wasmlambda serve`` workers with hello and hello_c deployed (the
fast path; the fast path without busy-waiting, ``spin_us = 0``; and the
reference path: ``--http h11`` with ``WASMLAMBDA_NO_EXTENSIONS=1``) and
bench/baseline_server.py,
then drives each with keep-alive connections from a single-threaded
selectors client, recording every request's latency.  Prints a markdown
table: requests/s, p50, p99, and the worker/baseline ratio.

With wrk installed (Debian package ``wrk``), the 16-connection runs are
repeated with wrk, a C client that takes less CPU from the servers.

Usage: python bench/load.py [--requests N] [--concurrency 1 16] [--wrk-seconds 5] [--json OUT]
Client and servers share this machine's cores, so absolute numbers are a
floor; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# The workers' admin token (deploying through /registry needs it).
ADMIN_TOKEN = secrets.token_urlsafe(24)
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BODY = b'{"name": "alice"}'
EXPECTED = b'{"hello": "alice"}'


def start_server(command: list[str], env: dict[str, str] | None = None, stderr: Any = subprocess.DEVNULL,
                 cwd: Path = REPO) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=cwd,
                               env={**os.environ, "WASMLAMBDA_ADMIN_TOKEN": ADMIN_TOKEN, **(env or {})})
    assert process.stdout is not None
    for line in process.stdout:
        if "listening on http://" in line:
            return process, int(line.rsplit(":", 1)[1])
    raise RuntimeError(f"{command} exited before listening")


def free_port() -> int:
    """A loopback port nothing listens on now (for servers that need a fixed one)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop_server(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(timeout=30)
    if process.stdout is not None:
        process.stdout.close()


class Connection:
    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.request = (
            f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n"
        ).encode() + BODY
        self.buffer = b""
        self.sent_at = 0


def run_load(port: int, path: str, concurrency: int, requests: int) -> list[int]:
    """Send ``requests`` requests over ``concurrency`` connections; return latencies in ns."""
    selector = selectors.DefaultSelector()
    latencies: list[int] = []
    sent = 0
    for _ in range(concurrency):
        connection = Connection(port, path)
        selector.register(connection.sock, selectors.EVENT_READ, connection)
        connection.sent_at = time.perf_counter_ns()
        connection.sock.sendall(connection.request)
        sent += 1
    while len(latencies) < requests:
        for key, _ in selector.select(timeout=30):
            connection = key.data
            connection.buffer += connection.sock.recv(65536)
            head, separator, rest = connection.buffer.partition(b"\r\n\r\n")
            if not separator:
                continue
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            if len(rest) < length:
                continue
            if not head.startswith(b"HTTP/1.1 200") or rest[:length] != EXPECTED:
                raise RuntimeError(f"unexpected response: {connection.buffer[:300]!r}")
            latencies.append(time.perf_counter_ns() - connection.sent_at)
            connection.buffer = rest[length:]
            if sent < requests:
                connection.sent_at = time.perf_counter_ns()
                connection.sock.sendall(connection.request)
                sent += 1
    for key in list(selector.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    return latencies


def measure(port: int, path: str, concurrency: int, requests: int) -> dict[str, float]:
    run_load(port, path, concurrency, min(2000, requests))  # warm up: instances, caches, connections
    started = time.perf_counter()
    latencies = sorted(run_load(port, path, concurrency, requests))
    elapsed = time.perf_counter() - started
    return {
        "requests_per_s": len(latencies) / elapsed,
        "p50_us": latencies[len(latencies) // 2] / 1000,
        "p99_us": latencies[int(len(latencies) * 0.99)] / 1000,
        "mean_us": statistics.fmean(latencies) / 1000,
    }


def wrk_measure(port: int, path: str, connections: int, seconds: int) -> dict[str, float]:
    """The same load from wrk (C, one thread): less client CPU taken from the servers."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(REPO / "bench" / "post.lua"),
               f"http://127.0.0.1:{port}{path}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in output:
        raise RuntimeError(f"wrk saw errors:\n{output}")
    units = {"us": 1.0, "ms": 1000.0, "s": 1e6}

    def latency(label: str) -> float:
        value = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)$", output, re.M)
        assert value is not None, output
        return float(value.group(1)) * units[value.group(2)]

    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    assert rate is not None, output
    return {"requests_per_s": float(rate.group(1)), "p50_us": latency("50%"), "p99_us": latency("99%")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--wrk-seconds", type=int, default=5, help="duration of each wrk run (0: skip wrk)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="wasmlambda-bench-") as data_dir:
        def worker(name: str, *flags: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], int]:
            return start_server([
                sys.executable, "-m", "wasmlambda", "serve", "--port", "0", "--data-dir", f"{data_dir}/{name}",
                "--deploy", str(REPO / "examples" / "hello"), str(REPO / "examples" / "hello_c"), *flags,
            ], env)

        fast, fast_port = worker("fast")
        # The same without busy-waiting for the sandbox hop (spin_us = 0): what the spin buys.
        no_spin, no_spin_port = worker("no-spin", env={"WASMLAMBDA_SPIN_US": "0"})
        # The reference path: h11 for HTTP, wasmtime-py's Func.__call__ for the guest call.
        slow, slow_port = worker("slow", "--http", "h11", env={"WASMLAMBDA_NO_EXTENSIONS": "1"})
        baseline, baseline_port = start_server([sys.executable, str(REPO / "bench" / "baseline_server.py")])
        results = []
        targets = (
            ("baseline: trio + h11, no sandbox", baseline_port, "/run/hello"),
            ("wasmlambda h11 + wasmtime-py, hello", slow_port, "/run/hello"),
            ("wasmlambda fast path, hello", fast_port, "/run/hello"),
            ("wasmlambda fast path, spin_us=0, hello", no_spin_port, "/run/hello"),
            ("wasmlambda fast path, hello_c", fast_port, "/run/hello_c"),
        )
        use_wrk = args.wrk_seconds > 0 and shutil.which("wrk") is not None
        try:
            for concurrency in args.concurrency:
                for name, port, path in targets:
                    figures = measure(port, path, concurrency, args.requests)
                    results.append({"server": name, "client": "python", "concurrency": concurrency, **figures})
            if use_wrk:
                for name, port, path in targets:
                    figures = wrk_measure(port, path, 16, args.wrk_seconds)
                    results.append({"server": name, "client": "wrk", "concurrency": 16, **figures})
        finally:
            for process in (fast, no_spin, slow, baseline):
                stop_server(process)

    print(f"POST /run/hello and /run/hello_c, {args.requests} requests per row, keep-alive, loopback; "
          f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python {platform.python_version()}\n")
    print("| client | server | connections | req/s | p50 µs | p99 µs | req/s vs h11 + wasmtime-py |")
    print("|---|---|---|---|---|---|---|")
    for row in results:
        reference = next(r for r in results if (r["client"], r["concurrency"]) == (row["client"], row["concurrency"])
                         and r["server"].startswith("wasmlambda h11"))
        print(f"| {row['client']} | {row['server']} | {row['concurrency']} | {row['requests_per_s']:,.0f} "
              f"| {row['p50_us']:.0f} | {row['p99_us']:.0f} "
              f"| {row['requests_per_s'] / reference['requests_per_s']:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
