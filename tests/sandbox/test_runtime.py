"""The real guest runtime under real Wasmtime: snapshots, calls, failures."""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

import pytest

from wasmlambda.errors import (
    BadRequest,
    CapacityExceeded,
    DeadlineExceeded,
    DeployError,
    GuestError,
    GuestTrap,
    MemoryLimitExceeded,
)
from wasmlambda.sandbox import Instance, Runtime, RuntimeImage

from ..conftest import CACHE_DIR, FunctionFactory

MB = 1 << 20


def start(runtime: Runtime, code: Path, memory_mb: int = 64, timeout_ms: int = 5000) -> Instance:
    snapshot = runtime.snapshot(code, code.name, memory_mb * MB, timeout_ms)
    return runtime.restore(snapshot, code, memory_mb * MB)


def call(instance: Instance, event: object, timeout_ms: int = 5000) -> object:
    return json.loads(instance.invoke(json.dumps(event).encode(), timeout_ms)[0])


def test_stdlib_works_in_the_guest(runtime: Runtime, make_function: FunctionFactory) -> None:
    code = make_function("stdlib", """
        import datetime, hashlib, json, re, zlib

        def f(event):
            text = event["text"]
            return {
                "sha256": hashlib.sha256(text.encode()).hexdigest(),
                "crc": zlib.crc32(zlib.decompress(zlib.compress(text.encode()))),
                "words": re.findall(r"\\w+", text),
                "day": (datetime.date(2024, 2, 28) + datetime.timedelta(days=1)).isoformat(),
                "json": json.loads(json.dumps({"k": [1, 2]})),
            }
    """)
    assert call(start(runtime, code), {"text": "hello wasm world"}) == {
        "sha256": hashlib.sha256(b"hello wasm world").hexdigest(),
        "crc": zlib.crc32(b"hello wasm world"),
        "words": ["hello", "wasm", "world"],
        "day": "2024-02-29",
        "json": {"k": [1, 2]},
    }


def test_own_modules_data_files_and_lazy_stdlib_imports(runtime: Runtime, make_function: FunctionFactory) -> None:
    code = make_function(
        "multi",
        """
        from helpers.text import shout

        def f(event):
            import fractions  # not in the snapshot: read from the preopened stdlib
            with open("/function/greeting.txt") as file:
                greeting = file.read().strip()
            return [shout(greeting), str(fractions.Fraction(event, 4))]
        """,
        files={
            "helpers/__init__.py": "",
            "helpers/text.py": "def shout(s):\n    return s.upper() + '!'\n",
            "greeting.txt": "hi there\n",
        },
    )
    assert call(start(runtime, code), 2) == ["HI THERE!", "1/2"]


def test_warm_instance_keeps_state_and_restore_resets_it(runtime: Runtime, make_function: FunctionFactory) -> None:
    code = make_function("counter", """
        count = 0

        def f(event):
            global count
            count += 1
            return count
    """)
    snapshot = runtime.snapshot(code, "fn", 64 * MB, 5000)
    warm = runtime.restore(snapshot, code, 64 * MB)
    assert [call(warm, None) for _ in range(3)] == [1, 2, 3]
    assert call(runtime.restore(snapshot, code, 64 * MB), None) == 1


def test_random_is_reseeded_after_every_restore(runtime: Runtime, make_function: FunctionFactory) -> None:
    code = make_function("rand", "import random\n\ndef f(event):\n    return random.random()\n")
    snapshot = runtime.snapshot(code, "fn", 64 * MB, 5000)
    values = {call(runtime.restore(snapshot, code, 64 * MB), None) for _ in range(5)}
    assert len(values) == 5


def test_snapshots_are_small_deltas_of_this_image(runtime: Runtime, make_function: FunctionFactory) -> None:
    # Not byte-for-byte reproducible: freed heap blocks keep stale bytes
    # (the atime floats of stat results, for one).
    snapshot = runtime.snapshot(make_function("small", "def f(event):\n    return event\n"), "small", 64 * MB, 5000)
    assert snapshot.base_id == runtime.base_id
    assert 0 < len(snapshot.payload) < 512 * 1024  # byte ranges, far below the 7 MiB image


def test_handler_exception_returns_guest_traceback(runtime: Runtime, make_function: FunctionFactory) -> None:
    code = make_function("boom", "def f(event):\n    raise KeyError(event)\n")
    instance = start(runtime, code)
    with pytest.raises(GuestError, match="KeyError: 'x'") as caught:
        call(instance, "x")
    assert caught.value.guest_type == "KeyError"
    assert 'File "/function/f.py", line 2, in f' in caught.value.traceback
    assert not instance.dead  # an exception is not a crash: the instance stays usable


def test_event_that_is_not_json(runtime: Runtime, make_function: FunctionFactory) -> None:
    instance = start(runtime, make_function("e", "def f(event):\n    return event\n"))
    for bad, why in ((b"{nope", "Expecting property name"), (b"[1] [2]", "Extra data"),
                     (b"NaN", "NaN is not valid JSON"), (b"[1, ]", "Expecting value"), (b" ", "Expecting value")):
        with pytest.raises(BadRequest, match=f"not valid JSON: {why}"):
            instance.invoke(bad, 5000)
    assert instance.invoke(b"", 5000) == (b"null", "")  # an empty body is a null event
    for spaced in (b" [1]", b"[1]\n", b"\t[1] \r\n"):  # whitespace around the value is JSON too
        assert instance.invoke(spaced, 5000) == (b"[1]", "")


def test_events_in_any_encoding_json_accepts(runtime: Runtime, make_function: FunctionFactory) -> None:
    instance = start(runtime, make_function("enc-in", "def f(event):\n    return event\n"))
    event = {"text": "héllo ✓ \U0001f600", "n": [1, 2.5]}
    text = json.dumps(event, ensure_ascii=False)
    for encoded in (text.encode(), text.encode("utf-8-sig"), text.encode("utf-16"), text.encode("utf-16-le"),
                    text.encode("utf-16-be"), text.encode("utf-32"), b"7", b"[]", '"é"'.encode()):
        assert json.loads(instance.invoke(encoded, 5000)[0]) == json.loads(encoded), encoded[:8]
    with pytest.raises(BadRequest, match="not valid JSON"):
        instance.invoke(b"\xff\xfe\x00", 5000)


def test_result_that_json_cannot_encode(runtime: Runtime, make_function: FunctionFactory) -> None:
    instance = start(runtime, make_function("r", "def f(event):\n    return {1, 2}\n"))
    with pytest.raises(GuestError, match="JSON cannot encode"):
        instance.invoke(b"null", 5000)


def test_spinning_handler_hits_its_deadline(runtime: Runtime, make_function: FunctionFactory) -> None:
    instance = start(runtime, make_function("spin", "def f(event):\n    while True:\n        pass\n"))
    with pytest.raises(DeadlineExceeded, match="timeout of 100 ms"):
        instance.invoke(b"null", 100)
    assert instance.dead
    with pytest.raises(GuestTrap, match="dead"):
        instance.invoke(b"null", 100)


def test_allocating_past_the_limit(runtime: Runtime, make_function: FunctionFactory) -> None:
    instance = start(runtime, make_function("hog", "def f(event):\n    return len(bytearray(event << 20))\n"), 32)
    assert call(instance, 1) == MB
    with pytest.raises(MemoryLimitExceeded, match="memory limit of 32 MB"):
        call(instance, 64)
    assert instance.dead


def test_c_stack_overflow_is_a_trap(runtime: Runtime, make_function: FunctionFactory) -> None:
    code = make_function("deep", """
        import sys
        sys.setrecursionlimit(10 ** 7)

        def f(event):
            nested = []
            for _ in range(200_000):
                nested = [nested]
            return repr(nested)
    """)
    instance = start(runtime, code)
    with pytest.raises(GuestTrap, match="call stack exhausted"):
        call(instance, None)
    assert instance.dead


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"f.py": "def f(event):\n    return (\n\ndef g(:\n"}, r"^f\.py, line 4: SyntaxError: invalid syntax"),
        ({"f.py": "import nothere\n"}, r"^f\.py, line 1: ModuleNotFoundError: No module named 'nothere'"),
        ({"f.py": "import lib\n", "lib.py": "x = 1 / 0\n"}, r"^lib\.py, line 1: ZeroDivisionError"),
        ({"f.py": "def g(event):\n    pass\n"}, r"defines neither a callable f\(event\) nor a WSGI app"),
        ({"f.py": "f = 3\n"}, r"defines neither a callable f\(event\) nor a WSGI app"),
        ({"f.py": "while True:\n    pass\n"}, "took longer than the 200 ms timeout"),
        ({"f.py": "big = bytearray(64 << 20)\n"}, "exceeded the memory limit of 32 MB"),
    ],
)
def test_bad_handlers_fail_at_deploy(
    runtime: Runtime, tmp_path: Path, files: dict[str, str], message: str
) -> None:
    for name, source in files.items():
        (tmp_path / name).write_text(source)
    with pytest.raises(DeployError, match=message):
        runtime.snapshot(tmp_path, "bad", 32 * MB, 200)


def test_instances_beyond_the_slot_limit_are_refused(runtime_image: RuntimeImage) -> None:
    small = Runtime(runtime_image, CACHE_DIR, max_instances=1, max_memory_mb=64)
    try:
        held = [small.instantiate(None, 64 * MB) for _ in range(5)]  # 1 + 4 spare slots
        with pytest.raises(CapacityExceeded, match="slots"):
            small.instantiate(None, 64 * MB)
        held.pop().close()
        small.instantiate(None, 64 * MB).close()
    finally:
        small.close()


def test_context_logs_and_prints(runtime: Runtime, make_function: FunctionFactory) -> None:
    code = make_function("ctx", """
        print("imported")  # import-time output is not part of any call's logs
        from wasmlambda_guest import context, log

        def f(event):
            print("printed", event)
            log("logged", context.function_name, context.request_id, context.memory_limit_mb)
            assert 0 < context.remaining_time_ms() <= 2000
            if event == "fail":
                raise RuntimeError("failing on purpose")
            return "ok"
    """)
    snapshot = runtime.snapshot(code, "ctx", 48 * MB, 5000)
    instance = runtime.restore(snapshot, code, 48 * MB)
    result, logs = instance.invoke(b'"x"', 2000, "req-1")
    assert result == b'"ok"'
    assert logs == "printed x\nlogged ctx req-1 48\n"
    with pytest.raises(GuestError) as caught:
        instance.invoke(b'"fail"', 2000, "req-2")
    assert caught.value.logs.startswith("printed fail\nlogged ctx req-2 48\nTraceback (most recent call last):")
    assert caught.value.logs.rstrip().endswith("RuntimeError: failing on purpose")


def test_each_call_gets_only_its_own_logs(runtime: Runtime, make_function: FunctionFactory) -> None:
    # The capture behind sys.stdout is kept between calls: it must start every call empty,
    # and come back if a handler swaps sys.stdout or sys.stderr for something else.
    instance = start(runtime, make_function("quiet", """
        import io, sys

        def f(event):
            if event == "loud":
                print("one")
            elif event == "swap":
                print("before the swap")
                sys.stdout = sys.stderr = io.StringIO()
                print("into the handler's own buffer")
            elif event == "unencodable":
                print("then a bad result")
                return object()
            return event
    """))
    assert instance.invoke(b'"loud"', 5000)[1] == "one\n"
    assert instance.invoke(b'"quiet"', 5000)[1] == ""
    with pytest.raises(GuestError):
        instance.invoke(b'"unencodable"', 5000)
    assert instance.invoke(b'"quiet"', 5000)[1] == ""
    assert instance.invoke(b'"swap"', 5000)[1] == "before the swap\n"
    assert instance.invoke(b'"loud"', 5000)[1] == "one\n"


def test_results_encode_as_json_dumps_does_and_failures_leave_nothing_behind(
        runtime: Runtime, make_function: FunctionFactory) -> None:
    instance = start(runtime, make_function("enc", """
        HOLDER = []

        class Broken(dict):
            def items(self):
                raise KeyError("not JSON's fault")

        def f(event):
            if event == "unencodable":  # fails inside HOLDER, after the encoder has marked it
                HOLDER.append(object())
                return HOLDER
            if event == "broken":  # fails with an error of its own, also inside HOLDER
                HOLDER.append(Broken(a=1))
                return HOLDER
            if event == "nan":
                return float("nan")
            HOLDER[:] = [1]  # (an empty list would be written without a look at the marks)
            return {"text": "héllo ✓", "values": [1, 2.5, None, True, "x"], "holder": [HOLDER]}
    """))
    good = json.dumps({"text": "héllo ✓", "values": [1, 2.5, None, True, "x"], "holder": [[1]]},
                      ensure_ascii=False).encode()
    for bad, message in (("unencodable", "JSON cannot encode"), ("nan", "JSON cannot encode"),
                         ("broken", "KeyError: \"not JSON's fault\"")):
        with pytest.raises(GuestError, match=message):
            instance.invoke(json.dumps(bad).encode(), 5000)
        # Had the encoder kept its marks from the failed call, HOLDER would now look circular.
        assert instance.invoke(b'"good"', 5000)[0] == good
