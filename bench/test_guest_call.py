"""The guest call itself: the Cython twin over the Wasmtime C API versus the
pure-Python spec over wasmtime-py's ``Func.__call__``.

* ``guest-call-overhead``: hello_c's ``wl_handle`` answering a no-op (`L`)
  request, so the cost measured is the call path, not guest work.
* ``guest-call-<size>``: the Python echo function with 16 B, 4 KiB and 64 KiB
  events: copy in, run, copy out.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wasmlambda._fastpath import _call as fast_call
from wasmlambda.sandbox import Instance, Runtime, _call, _call_py

MB = 1 << 20
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def callers(instance: Instance) -> dict[str, _call.Caller]:
    """Both implementations over the same live instance."""
    handles = (instance._store, instance._exports["wl_handle"], instance._memory)
    return {"wasmtime-py": _call.make_caller(*handles, _call_py), "c-api": _call.make_caller(*handles, fast_call)}


@pytest.fixture(scope="module")
def native(runtime: Runtime, tmp_path_factory):  # type: ignore[no-untyped-def]
    from guest_sdk._native import compile_c

    build = tmp_path_factory.mktemp("hello_c")
    compile_c(EXAMPLES / "hello_c", build / "f.wasm")
    instance = runtime.start_native(runtime.load_native(build / "f.wasm", build / "module.cwasm"), 64 * MB)
    instance.invoke(b"{}", 1000)  # allocates the input buffer
    yield instance
    instance.close()


@pytest.fixture(scope="module")
def echo(runtime: Runtime):  # type: ignore[no-untyped-def]
    snapshot = runtime.snapshot(EXAMPLES / "echo", "echo", 128 * MB, 5000)
    instance = runtime.restore(snapshot, EXAMPLES / "echo", 128 * MB)
    instance.invoke(json.dumps("x" * 70_000).encode(), 5000)  # grow the input buffer once
    yield instance
    instance.close()


@pytest.mark.parametrize("implementation", ["wasmtime-py", "c-api"])
def test_call_overhead(benchmark, native: Instance, implementation: str) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = "guest-call-overhead"
    caller = callers(native)[implementation]
    assert benchmark(caller.call, b"L", b"", native._input_address, 1000) == b"0null"


@pytest.mark.parametrize("size", [16, 4096, 65536], ids=["16B", "4KiB", "64KiB"])
@pytest.mark.parametrize("implementation", ["wasmtime-py", "c-api"])
def test_echo_call(benchmark, echo: Instance, implementation: str, size: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"guest-call-{size}B"
    caller = callers(echo)[implementation]
    event = json.dumps("x" * (size - 2)).encode()
    header = b"I0000000000000000\x005000\x00\x00"  # request id, timeout, (empty) request head
    response = benchmark(caller.call, header, event, echo._input_address, 1000)
    assert response == b"0" + event
