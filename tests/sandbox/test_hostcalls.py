"""The guest's one door to the host (``_wl_host.call``), through whichever
twin links it: wasmtime-py trampolines or the Cython C callbacks."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from wasmlambda.sandbox import Runtime, RuntimeImage

from ..conftest import CACHE_DIR, FunctionFactory

MB = 1 << 20
GUEST = """
import _wl_host

def f(event):
    try:
        return _wl_host.call(event.encode()).decode()
    except RuntimeError as exc:
        return "failed: " + str(exc)
"""


@pytest.fixture(scope="module")
def host_runtime(runtime_image: RuntimeImage) -> Iterator[tuple[Runtime, list[bytes]]]:
    seen: list[bytes] = []

    def dispatch(request: bytes) -> bytes:
        seen.append(request)
        if request == b"explode":
            raise RuntimeError("a bug in a service")
        return b"echo:" + request * 2

    runtime = Runtime(runtime_image, CACHE_DIR, max_instances=2, max_memory_mb=64, host_dispatch=dispatch)
    yield runtime, seen
    runtime.close()


def test_requests_and_responses_of_any_size_cross_intact(host_runtime: tuple[Runtime, list[bytes]],
                                                          make_function: FunctionFactory) -> None:
    runtime, seen = host_runtime
    code = make_function("door", GUEST)
    instance = runtime.restore(runtime.snapshot(code, "door", 64 * MB, 5000), code, 64 * MB)
    for text in ("é", "ab" * 40_000):
        result, _ = instance.invoke(json.dumps(text).encode(), 5000)
        assert json.loads(result) == "echo:" + text * 2
        assert seen[-1] == text.encode()
    # An empty request is the guest's "about to block" (before a sleep): answered empty, never dispatched.
    calls = len(seen)
    result, _ = instance.invoke(b'""', 5000)
    assert json.loads(result) == "" and len(seen) == calls


def test_a_failing_dispatch_is_an_error_in_the_guest_not_the_worker(host_runtime: tuple[Runtime, list[bytes]],
                                                                    make_function: FunctionFactory,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    runtime, _ = host_runtime
    code = make_function("door", GUEST)
    instance = runtime.restore(runtime.snapshot(code, "door", 64 * MB, 5000), code, 64 * MB)
    result, _ = instance.invoke(b'"explode"', 5000)
    assert json.loads(result) == "failed: the host failed to answer a service call"
    assert "RuntimeError: a bug in a service" in capsys.readouterr().out  # the operator sees the bug
    assert json.loads(instance.invoke(b'"next"', 5000)[0]) == "echo:nextnext"


def test_without_services_the_guest_is_told_so(runtime: Runtime, make_function: FunctionFactory) -> None:
    code = make_function("door", GUEST)
    instance = runtime.restore(runtime.snapshot(code, "door", 64 * MB, 5000), code, 64 * MB)
    result, _ = instance.invoke(b'"anything"', 5000)
    assert json.loads(json.loads(result)) == {"error": "this worker runs no host services"}
