"""Vendoring a function's requirements.txt as pure-Python wheels.

The guest is CPython compiled to WebAssembly: it can run any pure-Python
package, but no compiled extension (a ``.so`` built for the host).  pip is
asked for wheels tagged ``py3-none-any`` only, so a dependency with native
code fails here, at build time, with its name, instead of at run time.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

_MISSING = re.compile(r"No matching distribution found for ([A-Za-z0-9_.\-\[\]]+)")
_NATIVE_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")


class BuildError(Exception):
    """The function cannot be built; the message says why and names the culprit."""


def vendor(requirements: Path, target: Path, pip_args: Sequence[str] = (),
           progress: Callable[[str], None] = print) -> list[str]:
    """Download and unpack every requirement (with dependencies) into ``target``.

    Returns the wheel file names.  ``pip_args`` go to ``pip download`` as is
    (for example ``--no-index --find-links DIR`` to build offline).
    """
    progress(f"vendoring {requirements.name} (pure-Python wheels only)")
    with tempfile.TemporaryDirectory(prefix="wasmlambda-wheels-") as wheels:
        command = [
            sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet",
            "--only-binary=:all:", "--platform", "any", "--implementation", "py", "--abi", "none",
            "--python-version", "3.11", "--dest", wheels, "--requirement", str(requirements), *pip_args,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildError(_explain(result.stderr))
        names = sorted(path.name for path in Path(wheels).glob("*.whl"))
        for name in names:
            _check_pure(Path(wheels) / name)
            with zipfile.ZipFile(Path(wheels) / name) as wheel:
                wheel.extractall(target)
            progress(f"  + {name}")
    return names


def _explain(stderr: str) -> str:
    missing = _MISSING.search(stderr)
    if missing:
        package = missing.group(1)
        return (
            f"{package}: no pure-Python wheel (py3-none-any) is available. It most likely contains native code "
            "(a compiled extension), which cannot run in the WebAssembly sandbox; use a pure-Python alternative."
        )
    lines = [line for line in stderr.strip().splitlines() if line.startswith("ERROR")] or stderr.strip().splitlines()
    return "pip could not download the requirements: " + " ".join(lines[-2:])


def _check_pure(wheel: Path) -> None:
    """Refuse a wheel that is tagged pure but ships compiled code anyway."""
    name, tags = wheel.name.split("-")[0], wheel.stem.split("-")[-3:]
    if tags[1:] != ["none", "any"]:
        raise BuildError(f"{name}: {wheel.name} is built for a specific platform (native code)")
    with zipfile.ZipFile(wheel) as archive:
        native = [entry for entry in archive.namelist() if entry.endswith(_NATIVE_SUFFIXES)]
    if native:
        raise BuildError(f"{name}: the wheel contains native code ({native[0]}), which cannot run in the sandbox")
