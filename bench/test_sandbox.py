"""Cold and warm paths of the sandbox, each beside a baseline.

Groups (pytest-benchmark compares within a group):
* ``cold-start``: snapshot restore to first result, versus instantiating the
  base image and importing the handler (no snapshot), versus a new host
  CPython process (what a process-per-call design pays).
* ``warm-call``: a call on a warm instance, versus calling the same handler
  in the host interpreter (json in and out, no sandbox).

Each group also has the C version of hello (examples/hello_c) for scale.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from wasmlambda.sandbox import Instance, Runtime

MB = 1 << 20
HELLO = Path(__file__).resolve().parent.parent / "examples" / "hello"
HELLO_C = HELLO.parent / "hello_c"
EVENT = b'{"name": "alice"}'


@pytest.fixture(scope="module")
def hello_snapshot(runtime: Runtime):  # type: ignore[no-untyped-def]
    return runtime.snapshot(HELLO, "hello", 128 * MB, 5000)


@pytest.fixture(scope="module")
def hello_c(runtime: Runtime, tmp_path_factory):  # type: ignore[no-untyped-def]
    from guest_sdk._native import compile_c

    build = tmp_path_factory.mktemp("hello_c")
    compile_c(HELLO_C, build / "f.wasm")
    return runtime.load_native(build / "f.wasm", build / "module.cwasm")


class Retired:
    """Closes the previous round's instance in the (untimed) setup of the next:
    closing (resetting the pooled slot) happens after the response is sent."""

    def __init__(self) -> None:
        self.instances: list[Instance] = []

    def setup(self) -> None:
        while self.instances:
            self.instances.pop().close()

    def keep(self, instance: Instance) -> Instance:
        self.instances.append(instance)
        return instance


@pytest.mark.benchmark(group="cold-start")
def test_restore_to_first_result(benchmark, runtime: Runtime, hello_snapshot) -> None:  # type: ignore[no-untyped-def]
    retired = Retired()

    def cold_call() -> bytes:
        return retired.keep(runtime.restore(hello_snapshot, HELLO, 128 * MB)).invoke(EVENT, 5000)[0]

    assert benchmark.pedantic(cold_call, setup=retired.setup, rounds=300, warmup_rounds=10) == b'{"hello": "alice"}'
    retired.setup()


@pytest.mark.benchmark(group="cold-start")
def test_baseline_instantiate_and_import(benchmark, runtime: Runtime) -> None:  # type: ignore[no-untyped-def]
    retired = Retired()

    def cold_call() -> bytes:
        instance = retired.keep(runtime.instantiate(HELLO, 128 * MB))
        instance.load("hello", 5000)
        return instance.invoke(EVENT, 5000)[0]

    assert benchmark.pedantic(cold_call, setup=retired.setup, rounds=300, warmup_rounds=10) == b'{"hello": "alice"}'
    retired.setup()


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


@pytest.mark.benchmark(group="cold-start")
def test_native_start_to_first_result(benchmark, runtime: Runtime, hello_c) -> None:  # type: ignore[no-untyped-def]
    retired = Retired()

    def cold_call() -> bytes:
        return retired.keep(runtime.start_native(hello_c, 128 * MB)).invoke(EVENT, 5000)[0]

    assert benchmark.pedantic(cold_call, setup=retired.setup, rounds=300, warmup_rounds=10) == b'{"hello": "alice"}'
    retired.setup()


@pytest.mark.benchmark(group="warm-call")
def test_native_warm_call(benchmark, runtime: Runtime, hello_c) -> None:  # type: ignore[no-untyped-def]
    instance = runtime.start_native(hello_c, 128 * MB)
    try:
        assert benchmark(instance.invoke, EVENT, 5000) == (b'{"hello": "alice"}', "")
    finally:
        instance.close()
