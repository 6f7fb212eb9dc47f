"""Metering overhead on a warm hello call, end to end: the same worker with
billing on (meter, pricing, ledger, cost headers) and off, measured in
interleaved rounds so both see the same machine noise.

Usage: python bench/metering.py [--rounds 5] [--requests 4000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.load import REPO, run_load, start_server, stop_server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=4000)
    args = parser.parse_args()
    latencies: dict[str, list[int]] = {"billing on": [], "billing off": []}
    rates: dict[str, list[float]] = {"billing on": [], "billing off": []}
    with tempfile.TemporaryDirectory(prefix="wasmlambda-metering-") as scratch:
        servers = {}
        for label, flag in (("billing on", "true"), ("billing off", "false")):
            config = Path(scratch) / f"{flag}.toml"
            config.write_text(f"billing = {flag}\n")
            servers[label] = start_server([
                sys.executable, "-m", "wasmlambda", "serve", "--port", "0", "--config", str(config),
                "--data-dir", str(Path(scratch) / flag), "--deploy", str(REPO / "examples" / "hello"),
            ])
        try:
            for _, port in servers.values():
                run_load(port, "/run/hello", 1, 2000)  # warm up
            for _ in range(args.rounds):
                for label, (_, port) in servers.items():
                    started = time.perf_counter()
                    latencies[label] += run_load(port, "/run/hello", 1, args.requests)
                    rates[label].append(args.requests / (time.perf_counter() - started))
        finally:
            for process, _ in servers.values():
                stop_server(process)
    print(f"POST /run/hello, 1 connection, {args.rounds} interleaved rounds of {args.requests} requests\n")
    print("| worker | req/s (median of rounds) | p50 µs | p99 µs |")
    print("|---|---|---|---|")
    summary = {}
    for label, values in latencies.items():
        values.sort()
        summary[label] = (statistics.median(rates[label]), values[len(values) // 2] / 1000,
                          values[int(len(values) * 0.99)] / 1000)
        rate, p50, p99 = summary[label]
        print(f"| {label} | {rate:,.0f} | {p50:.0f} | {p99:.0f} |")
    on, off = summary["billing on"], summary["billing off"]
    print(f"\nmetering overhead: p50 {100 * (on[1] / off[1] - 1):+.1f} %, "
          f"throughput {100 * (off[0] / on[0] - 1):+.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
