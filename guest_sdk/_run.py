"""``python -m guest_sdk run``: one invocation, locally, in the worker's own
WebAssembly runtime (not the host interpreter), with its logs and timing."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from wasmlambda import _guest_runtime
from wasmlambda.config import Settings
from wasmlambda.errors import GuestError, WasmLambdaError
from wasmlambda.kernel import Limits
from wasmlambda.kernel._package import read_spec
from wasmlambda.sandbox import Runtime, RuntimeImage

from ._build import staged


def run(directory: Path, event: bytes, pip_args: Sequence[str] = (), out: TextIO = sys.stdout,
        err: TextIO = sys.stderr) -> int:
    """Build, snapshot, restore and call once; print the result. Returns an exit code."""
    settings = Settings()

    def progress(message: str) -> None:
        print(message, file=err)

    with staged(directory.resolve(), pip_args, progress, check=False) as staging:  # the snapshot checks
        limits = read_spec(staging, Limits(settings.default_timeout_ms, settings.default_memory_mb),
                           settings.max_memory_mb).limits
        runtime = Runtime(RuntimeImage(_guest_runtime.locate(settings.cache_dir)), settings.cache_dir,
                          max_instances=1, max_memory_mb=max(limits.memory_mb, 64))
        try:
            timings: dict[str, float] = {}
            started = time.perf_counter()
            snapshot = runtime.snapshot(staging, directory.resolve().name, limits.memory_bytes, limits.timeout_ms)
            timings["snapshot"] = time.perf_counter() - started
            started = time.perf_counter()
            instance = runtime.restore(snapshot, staging, limits.memory_bytes)
            timings["restore"] = time.perf_counter() - started
            started = time.perf_counter()
            try:
                result, logs = instance.invoke(event, limits.timeout_ms, os.urandom(8).hex())
            except WasmLambdaError as exc:
                _print_logs(exc.logs, err)
                print(f"error: {type(exc).__name__}: {exc}", file=err)
                if isinstance(exc, GuestError) and not exc.logs:
                    print(exc.traceback, file=err, end="")
                return 1
            finally:
                timings["call"] = time.perf_counter() - started
                instance.close()
        finally:
            runtime.close()
    _print_logs(logs, err)
    print(json.dumps(json.loads(result), indent=2, ensure_ascii=False), file=out)
    print("timing: " + ", ".join(f"{name} {seconds * 1000:.2f} ms" for name, seconds in timings.items()), file=err)
    return 0


def _print_logs(logs: str, err: TextIO) -> None:
    for line in logs.splitlines():
        print(f"log | {line}", file=err)
