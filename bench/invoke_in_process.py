"""What one ``invoke`` hop costs inside the worker, without HTTP or threads:
a chain of 10 functions and a leaf, each called through
``Worker.call_nested`` on this thread, hot, in a loop.  The hop is
(chain - leaf) / 9; Python functions and C ones (wasmlambda.h).

Usage: python bench/invoke_in_process.py [--calls 3000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.composition import CHAINS, chain_functions
from guest_sdk import build_bytes
from wasmlambda import _guest_runtime
from wasmlambda.config import Settings
from wasmlambda.kernel import Worker
from wasmlambda.kernel._meter import Bill
from wasmlambda.sandbox import Runtime, RuntimeImage
from wasmlambda.services import CallContext, Services


def timed(worker: Worker, name: str, calls: int) -> float:
    """p50 µs of ``calls`` nested calls of ``name`` from a request context."""
    context = CallContext("bench", frozenset(), "bench", 0, ("bench",), time.perf_counter_ns() + 10**15, Bill())
    for _ in range(200):
        worker.call_nested(name, b"null", context)
    samples = []
    for _ in range(calls):
        started = time.perf_counter_ns()
        worker.call_nested(name, b"null", context)
        samples.append(time.perf_counter_ns() - started)
    return statistics.median(samples) / 1000


async def measure(calls: int, scratch: Path) -> None:
    settings = Settings(data_dir=scratch / "data")
    services = Services({})
    runtime = Runtime(RuntimeImage(_guest_runtime.locate(settings.cache_dir)), settings.cache_dir,
                      max_instances=32, max_memory_mb=256, host_dispatch=services.dispatch)
    worker = Worker(settings, runtime, services, lambda _: None)
    try:
        print(f"{calls} calls each, p50, one thread, in process\n")
        print("| functions | leaf µs | chain of 10 µs | hop: (chain - leaf) / 9 µs |")
        print("|---|---|---|---|")
        for language, (prefix, file, link, leaf) in CHAINS.items():
            for name, source in chain_functions(prefix, link, leaf):
                folder = scratch / name
                folder.mkdir()
                (folder / file).write_text(source)
                await worker.deploy(name, build_bytes(folder, progress=lambda _: None, check=False))
            leaf_us, chain_us = timed(worker, f"{prefix}leaf", calls), timed(worker, f"{prefix}link0", calls)
            print(f"| {language} | {leaf_us:.1f} | {chain_us:.1f} | **{(chain_us - leaf_us) / 9:.1f}** |")
    finally:
        worker.close()
        runtime.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wasmlambda-invoke-") as scratch:
        trio.run(measure, args.calls, Path(scratch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
