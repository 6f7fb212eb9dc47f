"""Composition and state, end to end through a worker:

* a chain of 10 functions (each ``invoke``s the next) in one HTTP request,
  beside HTTP round trips to a leaf function: what one in-process hop
  costs against one HTTP round trip; once with Python functions, once with
  C ones (wasmlambda.h), to separate the hop from the interpreter's work.
  Two orders: chain and leaf requests alternating, so that both find their
  instances as warm (the headline); and each chain request after 10 leaf
  requests, where the chain's 10 instances have gone cold in the caches
  while the leaf's are hot, which charges the chain for it;
* key-value get and put latency from inside a guest, SQLite versus Redis
  (a redis-server is started on a free loopback port).

Usage: python bench/composition.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.load import ADMIN_HEADERS, free_port, start_server, stop_server
from guest_sdk import build_bytes

LINK = "from wasmlambda_guest import invoke\n\ndef f(event):\n    return invoke('NEXT', event) + 1\n"
LEAF = "def f(event):\n    return 0\n"
# The same chain in C: what a hop costs without CPython's own work in each guest.
C_LINK = """#include "wasmlambda.h"

static int link(const wl_request *request, wl_buffer *response) {
    wl_buffer result = {0};
    int status = wl_invoke("NEXT", request->event, request->event_len, &result);
    wl_append_bytes(&result, "", 1);
    status = status == WL_OK ? wl_appendf(response, "%d", atoi(result.data) + 1) : wl_fail(response, result.data);
    free(result.data);
    return status;
}

WL_HANDLER(link)
"""
C_LEAF = """#include "wasmlambda.h"

static int leaf(const wl_request *request, wl_buffer *response) { return wl_append(response, "0"); }

WL_HANDLER(leaf)
"""
# The two chains: functions named <prefix>link0..9 (link0 calls link1, ...; link9 is a leaf
# returning 0, so the chain answers 9) and <prefix>leaf, a lone leaf.
CHAINS = {"Python": ("py", "f.py", LINK, LEAF), "C (wasmlambda.h)": ("c", "f.c", C_LINK, C_LEAF)}


def chain_functions(prefix: str, link: str, leaf: str) -> list[tuple[str, str]]:
    """(name, source) of one chain's functions, its lone leaf last."""
    functions = [(f"{prefix}link{index}", link.replace("NEXT", f"{prefix}link{index + 1}") if index < 9 else leaf)
                 for index in range(10)]
    return [*functions, (f"{prefix}leaf", leaf)]
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


def deploy(connection: http.client.HTTPConnection, scratch: Path, name: str, source: str,
           file: str = "f.py") -> None:
    folder = scratch / name
    folder.mkdir()
    (folder / file).write_text(source)
    package = build_bytes(folder, progress=lambda _: None, check=False)
    connection.request("POST", f"/registry/{name}", package, headers=ADMIN_HEADERS)
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


def measure_chain(connection: http.client.HTTPConnection, first: str, leaf: str, rounds: int,
                  leaves_between: int) -> tuple[float, float, float, float]:
    """p50 of: one round trip to ``leaf``, one request running the chain from
    ``first``, the hop from round trips, the hop from the worker's run time;
    each chain request follows ``leaves_between`` leaf requests."""
    for _ in range(20):
        call(connection, first, None)
        call(connection, leaf, None)
    chain, single, chain_run, leaf_run = [], [], [], []
    for _ in range(rounds):
        elapsed, value, run_us = call_timed(connection, first, None)
        assert value == 9, value
        chain.append(elapsed)
        chain_run.append(run_us)
        for elapsed, _, run_us in (call_timed(connection, leaf, None) for _ in range(leaves_between)):
            single.append(elapsed)
            leaf_run.append(run_us)
    chain_p50, http_p50 = statistics.median(chain), statistics.median(single)
    run_hop = (statistics.median(chain_run) - statistics.median(leaf_run)) / 9
    return http_p50, chain_p50, (chain_p50 - http_p50) / 9, run_hop


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
            print(f"{args.rounds} chain requests per row, p50, one keep-alive connection (http.client)\n")
            print("| functions | requests | one HTTP round trip to the leaf | 10 round trips | one request, "
                  "chain of 10 via invoke | hop: (chain - round trip) / 9 | hop from run time: (chain - leaf) / 9 "
                  "| hop / round trip |")
            print("|---|---|---|---|---|---|---|---|")
            for language, (prefix, file, link, leaf) in CHAINS.items():
                for name, source in chain_functions(prefix, link, leaf):
                    deploy(connection, scratch, name, source, file)
                for order, leaves_between in (("alternating", 1), ("chain after 10 leaf", 10)):
                    http_p50, chain_p50, hop, run_hop = measure_chain(connection, f"{prefix}link0",
                                                                      f"{prefix}leaf", args.rounds, leaves_between)
                    print(f"| {language} | {order} | {http_p50:.0f} | {10 * http_p50:.0f} | {chain_p50:.0f} "
                          f"| {hop:.0f} | {run_hop:.0f} | **{hop / http_p50:.2f}** |")
            print()

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
