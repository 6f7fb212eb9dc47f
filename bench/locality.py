"""Code locality: consistent-hash routing against round robin, over 200 functions.

Starts ``wasmlambda cluster up --workers 3`` twice (HAProxy ``--balance hash``,
then ``--balance roundrobin``), each worker keeping at most ``--warm``
instances (``max_instances``), fewer than the 200 functions, as a worker
with many tenants would.  Deploys 200 small functions through the balancer,
then sends the same Zipf-distributed sequence of calls (popularity of the
k-th function proportional to 1/k^s, fixed seed) from 8 keep-alive
``http.client`` clients, and counts cold starts from each answer's
``X-WasmLambda-Start`` header.  With hashing, each function's calls go to
one worker, which keeps its share of the functions warm; with round robin
every worker sees every function and keeps fewer of them warm.  A function's
first call on a worker also builds its snapshot there (fetched from the
shared code store), which round robin does on every worker.

Usage: python bench/locality.py [--requests 6000] [--warm 40] [--zipf 1.1] [--out .benchmarks]
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.load import free_port, start_server, stop_server  # noqa: E402

FUNCTIONS = 200
CLIENTS = 8


def deploy_all(port: int, token: str, scratch: Path) -> None:
    from guest_sdk import build_bytes

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for index in range(FUNCTIONS):
        folder = scratch / f"fn{index}"
        folder.mkdir()
        (folder / "f.py").write_text(f"def f(event):\n    return {index}\n")
        connection.request("POST", f"/registry/fn{index}", build_bytes(folder, progress=lambda _: None, check=False),
                           headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        response.read()
        assert response.status == 201, (index, response.status)
    connection.close()


def drive(port: int, sequence: list[int]) -> list[tuple[int, bool, float, str]]:
    """(function, cold?, latency s, worker) per call, the sequence shared out over CLIENTS in order."""
    results: list[tuple[int, bool, float, str]] = []
    lock = threading.Lock()
    position = iter(range(len(sequence)))

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                index = next(position, None)
            if index is None:
                break
            function = sequence[index]
            started = time.perf_counter()
            connection.request("POST", f"/run/fn{function}", b"null")
            response = connection.getresponse()
            body = response.read()
            elapsed = time.perf_counter() - started
            assert response.status == 200 and int(body) == function, (response.status, body)
            with lock:
                results.append((function, response.getheader("x-wasmlambda-start") == "cold", elapsed,
                                response.getheader("x-wasmlambda-worker") or "?"))
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def run(balance: str, sequence: list[int], warm: int, scratch: Path) -> dict[str, Any]:
    data_dir = scratch / balance
    cluster, port = start_server([sys.executable, "-m", "wasmlambda", "cluster", "up", "--workers", "3",
                                  "--port", str(free_port()), "--data-dir", str(data_dir), "--balance", balance],
                                 env={"WASMLAMBDA_MAX_INSTANCES": str(warm)})
    try:
        token = (data_dir / "admin-token").read_text().strip()
        packages = scratch / f"packages-{balance}"
        packages.mkdir()
        deploy_all(port, token, packages)
        started = time.perf_counter()
        results = drive(port, sequence)
        elapsed = time.perf_counter() - started
    finally:
        stop_server(cluster)
    steady = results[len(results) // 5:]  # after the first fifth: every popular function has been seen
    latencies = sorted(latency for _, _, latency, _ in steady)
    homes: dict[int, set[str]] = {}
    for function, _, _, worker in results:
        homes.setdefault(function, set()).add(worker)
    return {
        "balance": balance,
        "cold_per_1000": 1000 * sum(cold for _, cold, _, _ in results) / len(results),
        "steady_cold_per_1000": 1000 * sum(cold for _, cold, _, _ in steady) / len(steady),
        "warm_hit_rate": 1 - sum(cold for _, cold, _, _ in steady) / len(steady),
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "requests_per_s": len(results) / elapsed,
        "workers_per_function": sum(len(workers) for workers in homes.values()) / len(homes),
        "per_worker": dict(sorted(Counter(worker for _, _, _, worker in results).items())),
    }



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--warm", type=int, default=40, help="max_instances of each worker (default 40)")
    parser.add_argument("--zipf", type=float, default=1.1, help="the Zipf exponent s (default 1.1)")
    parser.add_argument("--out", type=Path, default=REPO / ".benchmarks")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    chooser = random.Random(2026)
    weights = [1 / (rank ** args.zipf) for rank in range(1, FUNCTIONS + 1)]
    sequence = chooser.choices(range(FUNCTIONS), weights=weights, k=args.requests)
    rows = []
    with tempfile.TemporaryDirectory(prefix="wasmlambda-locality-") as scratch:
        for balance in ("hash", "roundrobin"):
            rows.append(run(balance, sequence, args.warm, Path(scratch)))
            print(f"{balance}: done", file=sys.stderr, flush=True)
    lines = [f"{args.requests:,} calls over {FUNCTIONS} functions, Zipf s = {args.zipf:g} (seed 2026), {CLIENTS} "
             f"http.client clients through HAProxy to 3 workers of max_instances = {args.warm} each; "
             f"{os.cpu_count()} cores ({platform.machine()}), everything on this machine", "",
             "| routing | cold starts / 1000 calls (all) | after the first fifth | warm hit rate "
             "| workers per function | p50 ms | p99 ms | calls/s | calls per worker |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['balance']} | {row['cold_per_1000']:.0f} | {row['steady_cold_per_1000']:.0f} "
                     f"| {row['warm_hit_rate']:.1%} | {row['workers_per_function']:.2f} | {row['p50_ms']:.1f} "
                     f"| {row['p99_ms']:.1f} | {row['requests_per_s']:,.0f} | "
                     + ", ".join(f"{worker}: {count}" for worker, count in row["per_worker"].items()) + " |")
    report = "\n".join(lines) + "\n"
    (args.out / "locality.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
