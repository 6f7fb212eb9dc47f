"""Cold starts as a caller sees them: the first call of a function among many taking turns.

Deploys ``--functions`` small functions (each its own module and snapshot),
all with ``isolation = "fresh"``, so that every call restores its function
from its snapshot: calling them in turn over one keep-alive ``http.client``
connection makes every call a first call, with the snapshots competing for
the caches as they would among many tenants.  Reports the round trip (p50,
p99) and, from each answer's headers, the restore and first-run times the
worker measured; every answer must say ``cold``.  A warm hello over the same
connection is the baseline.

Usage: python bench/cold_start.py [--functions 40] [--rounds 25]
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.load import start_server, stop_server  # noqa: E402

SOURCE = """
import json, re

TABLE = {{"function": {index}, "words": [w * {index} for w in ("alpha", "beta", "gamma")]}}

def f(event):
    return {{"index": {index}, "size": len(json.dumps(TABLE)), "hello": (event or {{}}).get("name", "world")}}
"""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wasmlambda-bench-cold-") as scratch:
        root = Path(scratch)
        names = [f"fn{index:03d}" for index in range(args.functions)]
        for index, name in enumerate(names):
            (root / name).mkdir()
            (root / name / "f.py").write_text(SOURCE.format(index=index))
            (root / name / "wasmlambda.toml").write_text('[function]\nisolation = "fresh"\n')
        server, port = start_server([sys.executable, "-m", "wasmlambda", "serve", "--port", "0", "--data-dir",
                                     str(root / "data"), "--deploy", *(str(root / name) for name in names),
                                     str(REPO / "examples" / "hello")])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        rounds, restore, run, warm = [], [], [], []
        try:
            for round_number in range(args.rounds + 1):
                for name in names:
                    started = time.perf_counter()
                    connection.request("POST", f"/run/{name}", body=b'{"name": "bench"}')
                    response = connection.getresponse()
                    response.read()
                    elapsed = time.perf_counter() - started
                    assert response.status == 200 and response.getheader("x-wasmlambda-start") == "cold"
                    if round_number:  # (the first round warms the worker's own code paths)
                        rounds.append(elapsed * 1000)
                        restore.append(int(response.getheader("x-wasmlambda-restore-us") or 0) / 1000)
                        run.append(int(response.getheader("x-wasmlambda-run-us") or 0) / 1000)
            for index in range(200 + args.rounds * 10):
                started = time.perf_counter()
                connection.request("POST", "/run/hello", body=b'{"name": "bench"}')
                connection.getresponse().read()
                if index >= 200:
                    warm.append((time.perf_counter() - started) * 1000)
        finally:
            connection.close()
            stop_server(server)
    print(f"# {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}: {args.functions} "
          f"functions taking turns, {args.rounds} rounds, every call cold (isolation = fresh), "
          "http.client keep-alive\n")
    print("| figure | p50 ms | p99 ms |")
    print("|---|---|---|")
    print(f"| first call, round trip | {percentile(rounds, 0.5):.3f} | {percentile(rounds, 0.99):.3f} |")
    print(f"| of it: restore (worker's measure) | {percentile(restore, 0.5):.3f} | {percentile(restore, 0.99):.3f} |")
    print(f"| of it: first run (worker's measure) | {percentile(run, 0.5):.3f} | {percentile(run, 0.99):.3f} |")
    print(f"| warm hello, round trip (baseline) | {percentile(warm, 0.5):.3f} | {percentile(warm, 0.99):.3f} |")


if __name__ == "__main__":
    main()
