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

from wasmlambda.errors import GuestError, WasmLambdaError
from wasmlambda.services import CallContext

from ._build import sandbox, staged, start


def run(directory: Path, event: bytes, pip_args: Sequence[str] = (), out: TextIO = sys.stdout,
        err: TextIO = sys.stderr) -> int:
    """Build, start (snapshot + restore, or instantiate) and call once; print the result. Returns an exit code."""

    def progress(message: str) -> None:
        print(message, file=err)

    name = directory.resolve().name
    with staged(directory.resolve(), pip_args, progress, check=False) as staging, sandbox(staging) as local:
        started = time.perf_counter()
        instance = start(local.runtime, staging, name, local.spec)
        timings = {"start": time.perf_counter() - started}
        started = time.perf_counter()
        try:
            with local.services.bound(CallContext(name, frozenset())):
                result, logs = instance.invoke(event, local.limits.timeout_ms, os.urandom(8).hex())
        except WasmLambdaError as exc:
            _print_logs(exc.logs, err)
            print(f"error: {type(exc).__name__}: {exc}", file=err)
            if isinstance(exc, GuestError) and not exc.logs:
                print(exc.traceback, file=err, end="")
            return 1
        finally:
            timings["call"] = time.perf_counter() - started
            instance.close()
    _print_logs(logs, err)
    print(json.dumps(json.loads(result), indent=2, ensure_ascii=False), file=out)
    print("timing: " + ", ".join(f"{name} {seconds * 1000:.2f} ms" for name, seconds in timings.items()), file=err)
    return 0


def _print_logs(logs: str, err: TextIO) -> None:
    for line in logs.splitlines():
        print(f"log | {line}", file=err)
