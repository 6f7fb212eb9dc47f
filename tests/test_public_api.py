"""Each package's __all__ names exactly its public (non-underscore) attributes."""

import ast
import importlib
import re
import subprocess
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ["wasmlambda", "wasmlambda.sandbox", "wasmlambda.kernel", "wasmlambda.http", "guest_sdk"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_matches_public_names(name: str) -> None:
    package = importlib.import_module(name)
    public = {
        attribute
        for attribute, value in vars(package).items()
        if not attribute.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(package.__all__) == public


# The only places that may reach Wasmtime: sandbox/ (through wasmtime-py), and
# the sandbox call path's Cython twin, which calls the Wasmtime C API directly.
WASMTIME_ALLOWED = ("wasmlambda/sandbox/", "wasmlambda/_fastpath/_call.pyx")
_PYX_IMPORT = re.compile(r"^\s*(?:from\s+wasmtime\b|c?import\s+wasmtime\b)", re.M)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            names.add(str(node.args[0].value).split(".")[0])
    return names


def test_only_sandbox_imports_wasmtime() -> None:
    offenders = []
    for package in ("wasmlambda", "guest_sdk"):
        for path in sorted((REPO / package).rglob("*")):
            relative = path.relative_to(REPO).as_posix()
            if relative.startswith(WASMTIME_ALLOWED) or "__pycache__" in relative:
                continue
            python = path.suffix == ".py" and "wasmtime" in _imports(path)
            cython = path.suffix == ".pyx" and _PYX_IMPORT.search(path.read_text()) is not None
            if python or cython:
                offenders.append(relative)
    assert offenders == []


def test_the_scan_sees_an_import(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("def f():\n    from wasmtime import Store\n    return importlib.import_module('wasmtime')\n")
    assert "wasmtime" in _imports(sample)


def test_the_repository_stands_alone() -> None:
    """Code and docs refer to nothing beside the repository (design notes, seeds)."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    offenders = []
    for name in tracked.splitlines():
        path = REPO / name
        if path.suffix not in (".py", ".pyx", ".md", ".c", ".h", ".sh", ".toml", ".txt") and path.name != "Makefile":
            continue
        text = path.read_text(errors="replace")
        if re.search(r"DESIGN\.md|\.\./shared|shared/(?:notes|seeds)", text) and name != "tests/test_public_api.py":
            offenders.append(name)
    assert offenders == []


def test_the_command_line_loads_wasmtime_only_to_serve() -> None:
    """Talking to a worker (ls, invoke, billing) must not load the kernel or Wasmtime."""
    import subprocess
    import sys

    probe = ("import sys, wasmlambda.cli, wasmlambda._remote; "
             "print(sorted(m for m in ('wasmtime', 'wasmlambda.kernel', 'wasmlambda.sandbox') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
