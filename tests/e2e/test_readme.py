"""README's "Write your first function", run verbatim against a real worker.

The commands and their expected output are read from README.md itself, so
the tutorial cannot drift from what the product does.  `...` in an expected
line matches anything; `localhost:8080` is pointed at the test worker.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import REPO
from .conftest import WorkerProcess

pytestmark = pytest.mark.e2e


def tutorial() -> tuple[dict[str, str], list[tuple[str, list[str]]]]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Write your first function", 1)[1].split("\n## ", 1)[0]
    files: dict[str, str] = {}
    steps: list[tuple[str, list[str]]] = []
    for language, body in re.findall(r"```(\w+)\n(.*?)```", section, re.S):
        if language == "python":
            first, rest = body.split("\n", 1)
            files[first.removeprefix("# ")] = rest
        elif language == "console":
            for line in body.splitlines():
                if line.startswith("$ "):
                    steps.append((line[2:], []))
                else:
                    steps[-1][1].append(line)
    return files, steps


def matches(expected: str, actual: str) -> bool:
    return re.fullmatch(re.escape(expected).replace(re.escape("..."), ".*"), actual) is not None


def test_first_function_tutorial(tmp_path: Path) -> None:
    # The worker and the CLI use the default data dir (under XDG_DATA_HOME), as
    # after `make serve`: the CLI must find the admin token there by itself.
    xdg = {"XDG_DATA_HOME": str(tmp_path / "xdg")}
    worker = WorkerProcess(tmp_path / "xdg" / "wasmlambda", tmp_path / "worker.log", env=xdg)
    worker.start()
    try:
        run_tutorial(worker, tmp_path, xdg)
    finally:
        assert worker.stop() == 0, worker.log_path.read_text()


def run_tutorial(worker: WorkerProcess, tmp_path: Path, xdg: dict[str, str]) -> None:
    files, steps = tutorial()
    assert set(files) == {"greet/f.py"} and len(steps) == 5
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    env = {**os.environ, **xdg, "WASMLAMBDA_URL": f"http://127.0.0.1:{worker.port}"}
    for variable in ("WASMLAMBDA_ADMIN_TOKEN", "WASMLAMBDA_DATA_DIR"):
        env.pop(variable, None)
    for command, expected in steps:
        command = command.replace("localhost:8080", f"127.0.0.1:{worker.port}")
        result = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, f"{command}\n{result.stderr}"
        actual = result.stdout.splitlines()
        assert len(actual) == len(expected), f"{command}: {actual}"
        for want, got in zip(expected, actual, strict=True):
            assert matches(want, got), f"{command}: expected {want!r}, got {got!r}"
