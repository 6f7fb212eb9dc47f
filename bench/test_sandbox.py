"""Cold and warm paths of the sandbox, each beside a baseline.

Groups (pytest-benchmark compares within a group):
* ``cold-start``: snapshot restore to first result, versus instantiating the
  base image and importing the handler (no snapshot), versus a new host
  CPython process (what a process-per-call design pays).
* ``warm-call``: a call on a warm instance, versus calling the same handler
  in the host interpreter (json in and out, no sandbox).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from wasmlambda.sandbox import Runtime

MB = 1 << 20
HELLO = Path(__file__).resolve().parent.parent / "examples" / "hello"
EVENT = b'{"name": "alice"}'


@pytest.fixture(scope="module")
def hello_snapshot(runtime: Runtime):  # type: ignore[no-untyped-def]
    return runtime.snapshot(HELLO, "hello", 128 * MB, 5000)


@pytest.mark.benchmark(group="cold-start")
def test_restore_to_first_result(benchmark, runtime: Runtime, hello_snapshot) -> None:  # type: ignore[no-untyped-def]
    def cold_call() -> bytes:
        instance = runtime.restore(hello_snapshot, HELLO, 128 * MB)
        try:
            return instance.invoke(EVENT, 5000)[0]
        finally:
            instance.close()

    assert benchmark.pedantic(cold_call, rounds=300, warmup_rounds=10) == b'{"hello": "alice"}'


@pytest.mark.benchmark(group="cold-start")
def test_baseline_instantiate_and_import(benchmark, runtime: Runtime) -> None:  # type: ignore[no-untyped-def]
    def cold_call() -> bytes:
        instance = runtime.instantiate(HELLO, 128 * MB)
        try:
            instance.load("hello", 5000)
            return instance.invoke(EVENT, 5000)[0]
        finally:
            instance.close()

    assert benchmark.pedantic(cold_call, rounds=300, warmup_rounds=10) == b'{"hello": "alice"}'


@pytest.mark.benchmark(group="cold-start")
def test_baseline_new_host_process(benchmark) -> None:  # type: ignore[no-untyped-def]
    script = (f"import sys, json; sys.path.insert(0, {str(HELLO)!r}); import f; "
              "print(json.dumps(f.f({'name': 'alice'})))")

    def cold_call() -> bytes:
        return subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, check=True).stdout

    assert benchmark.pedantic(cold_call, rounds=30, warmup_rounds=2) == b'{"hello": "alice"}\n'


@pytest.mark.benchmark(group="warm-call")
def test_warm_call(benchmark, runtime: Runtime, hello_snapshot) -> None:  # type: ignore[no-untyped-def]
    instance = runtime.restore(hello_snapshot, HELLO, 128 * MB)
    try:
        assert benchmark(instance.invoke, EVENT, 5000) == (b'{"hello": "alice"}', "")
    finally:
        instance.close()


@pytest.mark.benchmark(group="warm-call")
def test_baseline_host_call(benchmark) -> None:  # type: ignore[no-untyped-def]
    namespace: dict[str, object] = {}
    exec((HELLO / "f.py").read_text(), namespace)
    handler = namespace["f"]

    def host_call() -> bytes:
        return json.dumps(handler(json.loads(EVENT))).encode()  # type: ignore[operator]

    assert benchmark(host_call) == b'{"hello": "alice"}'
