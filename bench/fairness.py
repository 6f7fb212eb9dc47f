"""A quiet function's latency while a noisy one saturates the worker.

Usage: python bench/fairness.py [--seconds 20]

One worker (default settings: 16 sandbox threads, a function may hold 8),
two functions: ``noisy`` (CPU-bound, ~20 ms a call) and ``hello``.  The
quiet client calls hello 20 times a second over one keep-alive
``http.client`` connection and records each round trip; it runs alone
first (the baseline, same run), then while 32 keep-alive clients call
noisy as fast as they can, then again with the per-function cap lifted
(``max_running_per_function`` = all 16 threads), so that only the turn-taking
stands between hello and the backlog.  Before fair queues, hello waited for
every noisy call queued ahead of it (first in, first out).
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.load import ADMIN_HEADERS, start_server, stop_server  # noqa: E402

NOISY = "def f(event):\n    total = 0\n    for i in range(150_000):\n        total += i * i\n    return total\n"
HELLO = "def f(event):\n    return {'hello': event['name']}\n"
NOISY_CLIENTS = 32


def deploy(port: int, scratch: Path) -> None:
    from guest_sdk import build_bytes

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for name, source in (("noisy", NOISY), ("hello", HELLO)):
        folder = scratch / name
        folder.mkdir(exist_ok=True)
        (folder / "f.py").write_text(source)
        connection.request("POST", f"/registry/{name}", build_bytes(folder, progress=lambda _: None, check=False),
                           headers=ADMIN_HEADERS)
        response = connection.getresponse()
        response.read()
        assert response.status == 201
    connection.close()


def quiet_client(port: int, seconds: float) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies = []
    next_at = time.monotonic()
    end = next_at + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        connection.request("POST", "/run/hello", b'{"name": "quiet"}')
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        latencies.append((time.perf_counter() - started) * 1000)
        next_at += 0.05
        time.sleep(max(0.0, next_at - time.monotonic()))
    connection.close()
    return latencies


def noisy_load(port: int, stop: threading.Event, counts: list[int]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    while not stop.is_set():
        connection.request("POST", "/run/noisy", b"null")
        response = connection.getresponse()
        response.read()
        counts.append(response.status)
    connection.close()


def scenario(port: int, seconds: float, noisy: bool) -> dict[str, float]:
    stop = threading.Event()
    counts: list[int] = []
    threads = [threading.Thread(target=noisy_load, args=(port, stop, counts), daemon=True)
               for _ in range(NOISY_CLIENTS if noisy else 0)]
    for thread in threads:
        thread.start()
    if noisy:
        time.sleep(2)  # let the backlog build before measuring
    started = time.monotonic()
    latencies = quiet_client(port, seconds)
    elapsed = time.monotonic() - started
    stop.set()
    for thread in threads:
        thread.join()
    cuts = statistics.quantiles(latencies, n=100)
    return {"quiet_p50_ms": statistics.median(latencies), "quiet_p99_ms": cuts[98], "quiet_calls": len(latencies),
            "noisy_per_s": sum(1 for status in counts if status == 200) / (elapsed + 2) if noisy else 0.0,
            "noisy_refused": sum(1 for status in counts if status != 200)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    rows = []
    for label, env, noisy in (("hello alone (baseline)", {}, False),
                              ("hello beside a saturating noisy function", {}, True),
                              ("the same, per-function cap lifted (turns only)",
                               {"WASMLAMBDA_MAX_RUNNING_PER_FUNCTION": "16"}, True)):
        with tempfile.TemporaryDirectory() as scratch:
            worker, port = start_server([sys.executable, "-m", "wasmlambda", "serve", "--port", "0",
                                         "--data-dir", f"{scratch}/data"], env=env)
            try:
                deploy(port, Path(scratch))
                figures = scenario(port, args.seconds, noisy)
            finally:
                stop_server(worker)
        rows.append((label, figures))
        print(json.dumps({"scenario": label, **figures}), file=sys.stderr, flush=True)
    print(f"Quiet function beside a noisy one ({NOISY_CLIENTS} clients on a CPU-bound function, 16 sandbox "
          f"threads; hello at 20/s on one http.client keep-alive connection, {args.seconds:g} s each):\n")
    print("| scenario | hello p50 ms | hello p99 ms | noisy calls/s |")
    print("|---|---|---|---|")
    for label, figures in rows:
        print(f"| {label} | {figures['quiet_p50_ms']:.2f} | {figures['quiet_p99_ms']:.2f} | "
              f"{figures['noisy_per_s']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
