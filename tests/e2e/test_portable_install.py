"""From two wheels only: a clean virtualenv, a fresh HOME, no compiler, no build.

What a user on macOS or Windows does: ``pip install`` the worker (pure
Python: its C extensions are optional) and the runtime wheel, then serve.
Here the worker's wheel is built with ``WASMLAMBDA_NO_EXTENSIONS=1`` and
installed with ``CC=/bin/false`` and ``--only-binary :all:``, so nothing can
be compiled, and the fresh HOME holds no build cache to fall back on: the
runtime can only come from its wheel.  Needs PyPI for the dependencies
(pip's own cache is kept).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ..conftest import EXAMPLES

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent.parent


def run(command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: int = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    assert done.returncode == 0, f"{command[:4]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


def test_two_wheels_serve_a_function_without_a_compiler_or_a_build(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    pip_cache = run([sys.executable, "-m", "pip", "cache", "dir"]).stdout.strip()
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist), str(REPO)],
        env={**os.environ, "WASMLAMBDA_NO_EXTENSIONS": "1"})
    run([sys.executable, "-m", "wasmlambda", "runtime", "pack", "-o", str(dist)])
    wheels = sorted(dist.glob("*.whl"))
    worker_wheel = next(wheel for wheel in wheels if wheel.name.startswith("wasmlambda-"))
    assert worker_wheel.name.endswith("-py3-none-any.whl")
    with zipfile.ZipFile(worker_wheel) as archive:
        assert not [name for name in archive.namelist() if name.endswith((".so", ".pyd"))]

    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(home), "PIP_CACHE_DIR": pip_cache,
           "CC": "/bin/false", "CXX": "/bin/false", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], env=env)
    python = str(venv / "bin" / "python")
    run([python, "-m", "pip", "install", "--quiet", "--only-binary", ":all:", *map(str, wheels)], env=env)

    info = json.loads(run([python, "-m", "wasmlambda", "runtime", "info"], env=env, cwd=tmp_path).stdout)
    assert info["in_use"] is not None and info["in_use"].startswith(str(venv))  # the wheel's runtime
    assert set(info["extensions"].values()) == {"pure Python"}

    worker = subprocess.Popen([str(venv / "bin" / "wasmlambda"), "serve", "--port", "0", "--data-dir",
                               str(tmp_path / "data")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env, cwd=tmp_path)
    try:
        assert worker.stdout is not None
        printed = []  # (the first start compiles the runtime's machine code, and says so)
        while "listening on http://" not in (line := worker.stdout.readline()):
            printed.append(line)
            assert line, f"the worker exited: {printed}"
        assert any("compiling the guest runtime" in line for line in printed), printed
        cli_env = {**env, "WASMLAMBDA_URL": f"http://127.0.0.1:{line.rsplit(':', 1)[1].strip()}",
                   "WASMLAMBDA_DATA_DIR": str(tmp_path / "data")}
        wasmlambda = str(venv / "bin" / "wasmlambda")
        run([wasmlambda, "deploy", str(EXAMPLES / "hello")], env=cli_env, cwd=tmp_path)
        called = run([wasmlambda, "invoke", "hello", '{"name": "wheel"}'], env=cli_env, cwd=tmp_path)
        assert called.stdout == '{"hello": "wheel"}\n'
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        for stream in (worker.stdout, worker.stderr):
            if stream is not None:
                stream.close()
    # The machine code was compiled on first use into the fresh HOME's cache.
    assert list((home / ".cache" / "wasmlambda" / "compiled").glob("*.cwasm"))
