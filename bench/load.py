"""End-to-end load: POST /run/hello over loopback, worker versus baseline.

Starts three ``wasmlambda serve`` workers with hello and hello_c deployed (the
fast path; the fast path with every call handed to a sandbox thread,
``inline_us = 0``; and the reference path: ``--http h11`` with
``WASMLAMBDA_NO_EXTENSIONS=1``) and
bench/baseline_server.py (the same handler in plain Trio + h11, no sandbox),
then drives each, in the same run, with three clients over keep-alive
connections:

* ``raw``: a single-threaded selectors client on raw sockets (light: it
  flatters servers that busy-wait);
* ``http.client``: the standard library's client (what ``requests`` and
  urllib3 use underneath), one thread per connection;
* ``wrk`` (Debian package ``wrk``), a C client, one thread.

For every row: requests/s, p50, p99, and the **server's CPU µs per request**
(utime + stime of the server process and all its threads, from /proc,
over the measured requests only), with ratios against the baseline.  With
``--pin``, the client runs on core 0 and the servers on the others
(``taskset``): steadier figures, as a client on another machine would see.

Usage: python bench/load.py [--requests N] [--concurrency 1 16] [--wrk-seconds 5] [--pin] [--json OUT]
Client and servers share this machine's cores unless pinned, so absolute
numbers are a floor; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import http.client
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
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# The workers' admin token (deploying through /registry needs it).
ADMIN_TOKEN = secrets.token_urlsafe(24)
BASELINE = "native: trio + h11, no sandbox"
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


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_client_load(port: int, path: str, concurrency: int, requests: int) -> list[int]:
    """The same requests from http.client, one thread per keep-alive connection."""
    per_thread = -(-requests // concurrency)
    latencies: list[int] = []
    lock = threading.Lock()

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port)
        mine = []
        for _ in range(per_thread):
            started = time.perf_counter_ns()
            connection.request("POST", path, body=BODY, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            body = response.read()
            mine.append(time.perf_counter_ns() - started)
            if response.status != 200 or body != EXPECTED:
                raise RuntimeError(f"unexpected response: {response.status} {body[:200]!r}")
        connection.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


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
        ready = selector.select(timeout=30)
        if not ready:
            raise RuntimeError(f"no answer in 30 s ({len(latencies)} of {requests} answered)")
        for key, _ in ready:
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


def measure(port: int, path: str, concurrency: int, requests: int, pid: int = 0,
            load: Any = run_load) -> dict[str, float]:
    load(port, path, concurrency, min(2000, requests))  # warm up: instances, caches, connections
    cpu_before = cpu_seconds(pid) if pid else 0.0
    started = time.perf_counter()
    latencies = sorted(load(port, path, concurrency, requests))
    elapsed = time.perf_counter() - started
    figures = {
        "requests_per_s": len(latencies) / elapsed,
        "p50_us": latencies[len(latencies) // 2] / 1000,
        "p99_us": latencies[int(len(latencies) * 0.99)] / 1000,
        "mean_us": statistics.fmean(latencies) / 1000,
    }
    if pid:
        figures["cpu_us_per_request"] = (cpu_seconds(pid) - cpu_before) / len(latencies) * 1e6
    return figures


def wrk_measure(port: int, path: str, connections: int, seconds: int, pid: int = 0,
                client_cpus: str = "") -> dict[str, float]:
    """The same load from wrk (C, one thread): less client CPU taken from the servers."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(REPO / "bench" / "post.lua"),
               f"http://127.0.0.1:{port}{path}"]
    if client_cpus:
        command = ["taskset", "-c", client_cpus, *command]
    cpu_before = cpu_seconds(pid) if pid else 0.0
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(pid) - cpu_before if pid else 0.0
    if "Non-2xx" in output:
        raise RuntimeError(f"wrk saw errors:\n{output}")
    units = {"us": 1.0, "ms": 1000.0, "s": 1e6}

    def latency(label: str) -> float:
        value = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)$", output, re.M)
        assert value is not None, output
        return float(value.group(1)) * units[value.group(2)]

    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    total = re.search(r"^\s+(\d+) requests in", output, re.M)
    assert rate is not None and total is not None, output
    figures = {"requests_per_s": float(rate.group(1)), "p50_us": latency("50%"), "p99_us": latency("99%")}
    if pid:
        figures["cpu_us_per_request"] = cpu / int(total.group(1)) * 1e6
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--wrk-seconds", type=int, default=5, help="duration of each wrk run (0: skip wrk)")
    parser.add_argument("--pin", action="store_true", help="client on core 0, servers on the other cores")
    parser.add_argument("--clients", nargs="+", default=["raw", "http.client", "wrk"],
                        choices=["raw", "http.client", "wrk"])
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    server_cpus = f"1-{cores - 1}" if args.pin and cores > 1 else ""
    client_cpus = "0" if server_cpus else ""
    if client_cpus:
        os.sched_setaffinity(0, {0})
    pinned = ["taskset", "-c", server_cpus] if server_cpus else []

    with tempfile.TemporaryDirectory(prefix="wasmlambda-bench-") as data_dir:
        def worker(name: str, *flags: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], int]:
            return start_server([
                *pinned, sys.executable, "-m", "wasmlambda", "serve", "--port", "0", "--data-dir", f"{data_dir}/{name}",
                "--deploy", str(REPO / "examples" / "hello"), str(REPO / "examples" / "hello_c"), *flags,
            ], env)

        fast, fast_port = worker("fast")
        # The same with every call handed to a sandbox thread (inline_us = 0): what running inline buys.
        no_inline, no_inline_port = worker("no-inline", env={"WASMLAMBDA_INLINE_US": "0"})
        # The reference path: h11 for HTTP, wasmtime-py's Func.__call__ for the guest call.
        slow, slow_port = worker("slow", "--http", "h11", env={"WASMLAMBDA_NO_EXTENSIONS": "1"})
        baseline, baseline_port = start_server([*pinned, sys.executable, str(REPO / "bench" / "baseline_server.py")])
        results = []
        targets = (
            (BASELINE, baseline, baseline_port, "/run/hello"),
            ("wasmlambda h11 + wasmtime-py, hello", slow, slow_port, "/run/hello"),
            ("wasmlambda fast path, hello", fast, fast_port, "/run/hello"),
            ("wasmlambda fast path, inline_us=0, hello", no_inline, no_inline_port, "/run/hello"),
            ("wasmlambda fast path, hello_c", fast, fast_port, "/run/hello_c"),
        )
        loads = {"raw": run_load, "http.client": http_client_load}
        try:
            for client in (name for name in args.clients if name in loads):
                for concurrency in args.concurrency:
                    for name, process, port, path in targets:
                        figures = measure(port, path, concurrency, args.requests, process.pid, loads[client])
                        results.append({"server": name, "client": client, "concurrency": concurrency, **figures})
            if "wrk" in args.clients and args.wrk_seconds > 0 and shutil.which("wrk") is not None:
                for name, process, port, path in targets:
                    figures = wrk_measure(port, path, 16, args.wrk_seconds, process.pid, client_cpus)
                    results.append({"server": name, "client": "wrk", "concurrency": 16, **figures})
        finally:
            for process in (fast, no_inline, slow, baseline):
                stop_server(process)

    placement = (f"client pinned to core {client_cpus}, servers to cores {server_cpus}" if server_cpus
                 else "client and servers sharing all cores")
    print(f"POST /run/hello and /run/hello_c, {args.requests} requests per row (wrk: {args.wrk_seconds} s), "
          f"keep-alive, loopback; {cores} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}; {placement}\n")
    print("| client | server | connections | req/s | p50 µs | p99 µs | server CPU µs/req | "
          "req/s, p50, CPU vs native |")
    print("|---|---|---|---|---|---|---|---|")
    for row in results:
        native = next(r for r in results if (r["client"], r["concurrency"]) == (row["client"], row["concurrency"])
                      and r["server"] == BASELINE)
        print(f"| {row['client']} | {row['server']} | {row['concurrency']} | {row['requests_per_s']:,.0f} "
              f"| {row['p50_us']:.0f} | {row['p99_us']:.0f} | {row['cpu_us_per_request']:.0f} "
              f"| {row['requests_per_s'] / native['requests_per_s']:.2f}, {row['p50_us'] / native['p50_us']:.2f}, "
              f"{row['cpu_us_per_request'] / native['cpu_us_per_request']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
