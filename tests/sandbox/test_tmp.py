"""The guest's /tmp: in the instance's own memory (runtimes/python/shim/wl_tmpfs.c),
private to it, empty in every fresh instance, capped by its memory limit."""

from __future__ import annotations

import json
from pathlib import Path

from wasmlambda.sandbox import Runtime

from ..conftest import FunctionFactory
from .test_runtime import MB, call, start

FILES = """
    import os, shutil, tempfile

    def f(event):
        out = {"tempdir": tempfile.gettempdir(), "before": sorted(os.listdir("/tmp"))}
        with tempfile.TemporaryFile() as unnamed:
            unnamed.write(b"0123456789" * 1000)
            unnamed.seek(5)
            out["unnamed"] = [len(unnamed.read()), unnamed.tell()]
        with tempfile.NamedTemporaryFile("w+", suffix=".txt", delete=False) as named:
            named.write("named")
        with open(named.name) as again:
            out["named"] = [again.read(), os.stat(named.name).st_size]
        folder = tempfile.mkdtemp()
        os.makedirs(os.path.join(folder, "a", "b"))
        with open(os.path.join(folder, "a", "b", "c.txt"), "w") as file:
            file.write("x" * 10)
        with open(os.path.join(folder, "a", "b", "c.txt"), "a") as file:
            file.write("y")
        os.rename(os.path.join(folder, "a", "b", "c.txt"), os.path.join(folder, "moved.txt"))
        out["walk"] = sorted([os.path.relpath(root, folder), sorted(files)] for root, _, files in os.walk(folder))
        out["moved"] = open(os.path.join(folder, "moved.txt")).read()
        try:
            os.rmdir(os.path.join(folder, "a"))
        except OSError as exc:
            out["rmdir_not_empty"] = type(exc).__name__
        shutil.rmtree(folder)
        os.unlink(named.name)
        out["after"] = [os.path.exists(folder), sorted(os.listdir("/tmp"))]
        out["refused"] = []
        for path, mode in (("/tmp/../function/x", "w"), ("/function/f.py", "a"), ("/tmp/..", "r")):
            try:
                open(path, mode)
            except OSError as exc:
                out["refused"].append(type(exc).__name__)
        return out
"""


def test_tmp_behaves_like_a_file_system(runtime: Runtime, make_function: FunctionFactory) -> None:
    instance = start(runtime, make_function("files", FILES))
    assert call(instance, None) == {
        "tempdir": "/tmp", "before": [], "unnamed": [9995, 10000], "named": ["named", 5],
        "walk": [[".", ["moved.txt"]], ["a", []], ["a/b", []]], "moved": "xxxxxxxxxxy",
        "rmdir_not_empty": "OSError", "after": [False, []],
        "refused": ["PermissionError", "PermissionError", "PermissionError"],  # nothing outside /tmp
    }


KEEPER = """
    import os

    def f(event):
        if event == "write":
            with open("/tmp/left-behind", "w") as file:
                file.write("from an earlier call")
        return sorted(os.listdir("/tmp"))
"""


def test_tmp_is_private_to_an_instance_and_empty_when_fresh(runtime: Runtime,
                                                            make_function: FunctionFactory) -> None:
    code = make_function("keeper", KEEPER)
    snapshot = runtime.snapshot(code, "keeper", 64 * MB, 5000)
    first, second = (runtime.restore(snapshot, code, 64 * MB) for _ in range(2))
    assert call(first, "write") == ["left-behind"]
    assert call(first, "look") == ["left-behind"]  # a warm instance keeps its files, like its globals
    assert call(second, "look") == []  # another instance of the same function never sees them
    first.close()
    assert call(runtime.restore(snapshot, code, 64 * MB), "look") == []  # a fresh instance starts empty


def test_tmp_counts_against_the_memory_limit(runtime: Runtime, make_function: FunctionFactory) -> None:
    code = make_function("filler", """
        def f(event):
            chunk = b"x" * (1 << 20)
            written = 0
            try:
                with open("/tmp/big", "wb") as file:
                    for _ in range(event):
                        file.write(chunk)
                        written += 1
            except OSError as exc:
                return {"written_mb": written, "error": exc.strerror}
            return {"written_mb": written}
    """)
    instance = start(runtime, code, memory_mb=32)
    answer = call(instance, 64)
    assert answer["error"] == "No space left on device" and 4 <= answer["written_mb"] < 32
    assert call(instance, 1) == {"written_mb": 1}  # the file was rewritten; memory came back to the guest
    assert instance.memory_size() <= 32 * MB


def test_host_tmp_is_untouched(runtime: Runtime, make_function: FunctionFactory, tmp_path: Path) -> None:
    instance = start(runtime, make_function("writer", KEEPER))
    call(instance, "write")
    preopened = Path(runtime._empty_tmp_dir.name)  # what the host lends the guest at /tmp
    assert list(preopened.iterdir()) == []
    assert json.loads(instance.invoke(b'"look"', 5000)[0]) == ["left-behind"]
