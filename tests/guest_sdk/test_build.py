"""guest_sdk build and run, with wheels made on the spot (no network)."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from guest_sdk import BuildError, build, run

from ..conftest import FunctionFactory


def make_wheel(directory: Path, name: str, tag: str, files: dict[str, str]) -> Path:
    """A minimal valid wheel, enough for `pip download`."""
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{name}-1.0-{tag}.whl"
    info = f"{name}-1.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, content in files.items():
            archive.writestr(path, content)
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        archive.writestr(f"{info}/WHEEL", f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n")
        archive.writestr(f"{info}/RECORD", "")
    return wheel


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    house = tmp_path / "wheels"
    make_wheel(house, "shouty", "py3-none-any", {"shouty/__init__.py": "def shout(s):\n    return s.upper() + '!'\n"})
    make_wheel(house, "fastmath", "cp311-cp311-manylinux_2_17_x86_64", {"fastmath/_core.so": "\x7fELF"})
    make_wheel(house, "sneaky", "py3-none-any", {"sneaky/__init__.py": "", "sneaky/_speedups.so": "\x7fELF"})
    return house


def names_in(package: Path) -> list[str]:
    with tarfile.open(package) as tar:
        return sorted(tar.getnames())


def test_build_compiles_and_packages(tmp_path: Path, make_function: FunctionFactory) -> None:
    code = make_function("pkg", "import helper\n\ndef f(event):\n    return helper.X\n",
                         files={"helper.py": "X = 1\n", "notes.txt": "data"})
    output = build(code, tmp_path / "out.tar.gz", progress=lambda _: None)
    assert names_in(output) == [
        "__pycache__/f.cpython-311.pyc", "__pycache__/helper.cpython-311.pyc", "f.py", "helper.py", "notes.txt"]


def test_vendored_dependency_runs_in_the_sandbox(tmp_path: Path, make_function: FunctionFactory,
                                                 wheelhouse: Path) -> None:
    code = make_function("vendored", "import shouty\n\ndef f(event):\n    return shouty.shout(event)\n",
                         files={"requirements.txt": "# pure only\nshouty\n"})
    pip_args = ["--no-index", "--find-links", str(wheelhouse)]
    output = build(code, tmp_path / "v.tar.gz", pip_args, progress=lambda _: None)
    assert "vendor/shouty/__init__.py" in names_in(output)
    out, err = io.StringIO(), io.StringIO()
    assert run(code, b'"hi"', pip_args, out, err) == 0
    assert out.getvalue() == '"HI!"\n'


@pytest.mark.parametrize(
    ("requirement", "message"),
    [
        ("fastmath", "fastmath: no pure-Python wheel"),
        ("sneaky", r"sneaky: the wheel contains native code \(sneaky/_speedups.so\)"),
        ("nosuchthing", "nosuchthing: no pure-Python wheel"),
    ],
)
def test_native_dependencies_fail_at_build_time(tmp_path: Path, make_function: FunctionFactory,
                                                wheelhouse: Path, requirement: str, message: str) -> None:
    code = make_function("native", "def f(event):\n    return 1\n", files={"requirements.txt": requirement})
    with pytest.raises(BuildError, match=message):
        build(code, tmp_path / "n.tar.gz", ["--no-index", "--find-links", str(wheelhouse)], progress=lambda _: None)
    assert not (tmp_path / "n.tar.gz").exists()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def f(event):\n    return (\n", r"^f\.py, line 2: SyntaxError"),
        ("import missing_module\n", "No module named 'missing_module'"),
        ("def g(event):\n    pass\n", "defines neither a callable f\\(event\\) nor a WSGI app named app"),
    ],
)
def test_bad_handlers_fail_at_build_time(tmp_path: Path, make_function: FunctionFactory, source: str,
                                         message: str) -> None:
    with pytest.raises(BuildError, match=message):
        build(make_function("bad", source), tmp_path / "b.tar.gz", progress=lambda _: None)


def test_missing_handler_file(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"no f\.py"):
        build(tmp_path, progress=lambda _: None)


def test_run_prints_result_logs_and_timing(make_function: FunctionFactory) -> None:
    code = make_function("talk", "def f(event):\n    print('thinking about', event)\n    return {'n': event * 2}\n")
    out, err = io.StringIO(), io.StringIO()
    assert run(code, b"21", (), out, err) == 0
    assert out.getvalue() == '{\n  "n": 42\n}\n'
    assert "log | thinking about 21" in err.getvalue()
    assert "timing: start" in err.getvalue() and "call" in err.getvalue()


def test_run_reports_handler_errors(make_function: FunctionFactory) -> None:
    code = make_function("oops", "def f(event):\n    return 1 / 0\n")
    out, err = io.StringIO(), io.StringIO()
    assert run(code, b"null", (), out, err) == 1
    assert out.getvalue() == ""
    assert "error: GuestError: ZeroDivisionError: division by zero" in err.getvalue()
    assert 'log |   File "/function/f.py", line 2, in f' in err.getvalue()
    assert "_wl_runtime" not in err.getvalue()


def test_command_line(tmp_path: Path, make_function: FunctionFactory) -> None:
    code = make_function("cmd", "def f(event):\n    return event\n")
    result = subprocess.run([sys.executable, "-m", "guest_sdk", "run", str(code), '{"a": 1}'],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout == '{\n  "a": 1\n}\n'
    result = subprocess.run([sys.executable, "-m", "guest_sdk", "build", str(code), "-o", str(tmp_path / "c.tgz")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and (tmp_path / "c.tgz").exists()
    result = subprocess.run([sys.executable, "-m", "guest_sdk", "build", str(tmp_path / "nope")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stderr.startswith("error: ") and "no f.py" in result.stderr
