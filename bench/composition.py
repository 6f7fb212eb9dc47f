"""Composition and state, end to end through a worker:

* a chain of 10 functions (each ``invoke``s the next) in one HTTP request,
  beside 10 HTTP round trips to a leaf function: what one in-process hop
  costs against one HTTP round trip;
* key-value get and put latency from inside a guest, SQLite versus Redis
  (a redis-server is started on a free loopback port).

Usage: python bench/composition.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.load import start_server, stop_server
from guest_sdk import build_bytes

LINK = "from wasmlambda_guest import invoke\n\ndef f(event):\n    return invoke({next!r}, event) + 1\n"
LEAF = "def f(event):\n    return 0\n"
KV = """import time
from wasmlambda_guest import kv

def f(event):
    kv.put("k", b"x" * 64)
    started = time.perf_counter()
    for _ in range(event["n"]):
        if event["op"] == "get":
            kv.get("k")
        else:
            kv.put("k", b"x" * 64)
    return (time.perf_counter() - started) / event["n"] * 1e6
"""


def deploy(connection: http.client.HTTPConnection, scratch: Path, name: str, source: str) -> None:
    folder = scratch / name
    folder.mkdir()
    (folder / "f.py").write_text(source)
    connection.request("POST", f"/registry/{name}", build_bytes(folder, progress=lambda _: None, check=False))
    response = connection.getresponse()
    if response.status != 201:
        raise RuntimeError(f"deploying {name}: {response.read()!r}")
    response.read()


def call(connection: http.client.HTTPConnection, name: str, event: object) -> tuple[float, object]:
    elapsed, value, _ = call_timed(connection, name, event)
    return elapsed, value


def call_timed(connection: http.client.HTTPConnection, name: str, event: object) -> tuple[float, object, int]:
    """Round-trip µs, the result, and the worker's own run time (X-WasmLambda-Run-Us)."""
    started = time.perf_counter()
    connection.request("POST", f"/run/{name}", json.dumps(event).encode())
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        raise RuntimeError(f"{name}: {body!r}")
    return (time.perf_counter() - started) * 1e6, json.loads(body), int(response.getheader("x-wasmlambda-run-us", "0"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    redis_port = free_port()
    redis = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(redis_port), "--bind",
                              "127.0.0.1", "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    time.sleep(0.3)
    with tempfile.TemporaryDirectory(prefix="wasmlambda-composition-") as scratch_dir:
        scratch = Path(scratch_dir)
        workers = {
            "sqlite": start_server([sys.executable, "-m", "wasmlambda", "serve", "--port", "0",
                                    "--data-dir", str(scratch / "a")]),
            "redis": start_server([sys.executable, "-m", "wasmlambda", "serve", "--port", "0",
                                   "--data-dir", str(scratch / "b"), "--state", f"redis://127.0.0.1:{redis_port}/0"]),
        }
        try:
            connection = http.client.HTTPConnection("127.0.0.1", workers["sqlite"][1], timeout=60)
            for index in range(10):
                deploy(connection, scratch, f"link{index}", LINK.format(next=f"link{index + 1}") if index < 9 else LEAF)
            deploy(connection, scratch, "leaf", LEAF)
            for _ in range(20):
                call(connection, "link0", None)
                call(connection, "leaf", None)
            chain, single, chain_run, leaf_run = [], [], [], []
            for _ in range(args.rounds):
                elapsed, value, run_us = call_timed(connection, "link0", None)
                assert value == 9
                chain.append(elapsed)
                chain_run.append(run_us)
                leaf = [call_timed(connection, "leaf", None) for _ in range(10)]
                single.append(sum(elapsed for elapsed, _, _ in leaf) / 10)
                leaf_run.extend(run_us for _, _, run_us in leaf)
            chain_p50, http_p50 = statistics.median(chain), statistics.median(single)
            hop = (chain_p50 - http_p50) / 9
            run_hop = (statistics.median(chain_run) - statistics.median(leaf_run)) / 9
            print(f"{args.rounds} rounds, p50 over rounds, one keep-alive connection\n")
            print("| what | p50 µs |")
            print("|---|---|")
            print(f"| one HTTP round trip to a leaf function (mean of 10 per round) | {http_p50:.0f} |")
            print(f"| 10 HTTP round trips (the chain done over HTTP) | {10 * http_p50:.0f} |")
            print(f"| one HTTP request running a chain of 10 functions via invoke | {chain_p50:.0f} |")
            print(f"| one in-process invoke hop: (chain - one round trip) / 9 | {hop:.0f} |")
            print(f"| the same, from the worker's run time (X-WasmLambda-Run-Us): (chain - leaf) / 9 | {run_hop:.0f} |")
            print(f"\nan invoke hop costs {hop / http_p50:.2f} of an HTTP round trip; the whole chain "
                  f"{10 * http_p50 / chain_p50:.1f}x faster than 10 HTTP round trips\n")

            print("| backend | kv.get µs | kv.put µs |")
            print("|---|---|---|")
            for backend, (_, port) in workers.items():
                kv_connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                (scratch / backend).mkdir()
                deploy(kv_connection, scratch / backend, "kvb", KV)
                figures = []
                for op in ("get", "put"):
                    call(kv_connection, "kvb", {"op": op, "n": 50})
                    figures.append(statistics.median(call(kv_connection, "kvb", {"op": op, "n": 200})[1]
                                                     for _ in range(15)))  # type: ignore[type-var]
                print(f"| {backend} | {figures[0]:.1f} | {figures[1]:.1f} |")
        finally:
            for process, _ in workers.values():
                stop_server(process)
            redis.terminate()
            redis.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
