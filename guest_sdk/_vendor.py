"""Vendoring a function's requirements.txt as pure-Python code.

The guest is CPython compiled to WebAssembly: it can run any pure-Python
package, but no compiled extension (a ``.so`` built for the host).  pip is
asked for wheels tagged ``py3-none-any`` only.  Many popular packages
(MarkupSafe, PyYAML, msgpack, simplejson, ...) publish no such wheel but
make their C code optional: for those, the package is built here from its
source distribution with no C compiler (``CC=false`` and the packages' own
pure-Python switches), checked to contain no native code, retagged
``py3-none-any`` and kept in a wheel cache (``~/.cache/wasmlambda/wheels``),
so the next build finds it at once.  The caller then checks that it imports
inside the sandbox.  A package whose C code is not optional still fails
here, at build time, with its name.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

_MISSING = re.compile(r"No matching distribution found for ([^\s(]+)|"
                      r"no matching distributions available for your environment:\s+([^\s(]+)")
_PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_NATIVE_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")
# The switches packages read to skip their C extensions, beside a compiler that always fails.
_PURE_BUILD_ENV = {"CC": "false", "CXX": "false", "LDSHARED": "false", "MSGPACK_PUREPYTHON": "1",
                   "DISABLE_SPEEDUPS": "1", "AIOHTTP_NO_EXTENSIONS": "1", "YARL_NO_EXTENSIONS": "1",
                   "MULTIDICT_NO_EXTENSIONS": "1", "FROZENLIST_NO_EXTENSIONS": "1"}


class BuildError(Exception):
    """The function cannot be built; the message says why and names the culprit."""


@dataclasses.dataclass
class Vendored:
    wheels: list[str]  # every wheel unpacked into vendor/
    from_source: dict[str, list[str]]  # wheel built here from source -> its top-level modules


def default_wheel_cache() -> Path:
    from wasmlambda.config import Settings

    return Settings().cache_dir / "wheels"


def vendor(requirements: Path, target: Path, pip_args: Sequence[str] = (),
           progress: Callable[[str], None] = print, wheel_cache: Path | None = None) -> Vendored:
    """Download (or build) and unpack every requirement, with dependencies, into ``target``.

    ``pip_args`` go to pip as is (for example ``--no-index --find-links
    DIR`` to build offline).
    """
    progress(f"vendoring {requirements.name} (pure-Python code only)")
    cache = wheel_cache or default_wheel_cache()
    cache.mkdir(parents=True, exist_ok=True)
    # Resolved as for this machine's Python first: asking pip for pure wheels
    # only would make it backtrack through every older release of a package
    # whose dependency has none (40 Flask releases for MarkupSafe).
    for requirement in _impure(requirements, pip_args, cache):
        build_from_source(requirement, cache, pip_args, progress)
    with tempfile.TemporaryDirectory(prefix="wasmlambda-wheels-") as wheels:
        download = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet",
                    "--only-binary=:all:", "--platform", "any", "--implementation", "py", "--abi", "none",
                    "--python-version", "3.11", "--dest", wheels, "--find-links", str(cache),
                    "--requirement", str(requirements), *pip_args]
        result = subprocess.run(download, capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildError(_explain(result.stderr))
        names = sorted(path.name for path in Path(wheels).glob("*.whl"))
        from_source = {}
        for name in names:
            wheel = Path(wheels) / name
            _check_pure(wheel)
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(target)
                built_here = (cache / name).exists()  # the cache holds only wheels built from source
                if built_here:
                    from_source[name] = _top_level_modules(archive.namelist())
            progress(f"  + {name}" + (" (built from source, pure Python)" if built_here else ""))
    return Vendored(names, from_source)


def _impure(requirements: Path, pip_args: Sequence[str], cache: Path) -> list[str]:
    """``name==version`` of each distribution the requirements resolve to (as for this
    machine's Python) that comes with no pure-Python wheel."""
    with tempfile.TemporaryDirectory(prefix="wasmlambda-resolve-") as scratch:
        report = Path(scratch) / "report.json"
        result = subprocess.run([
            sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--quiet", "--dry-run",
            "--ignore-installed", "--find-links", str(cache), "--report", str(report),
            "--requirement", str(requirements), *pip_args,
        ], capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildError(_explain(result.stderr))
        resolved = json.loads(report.read_text()).get("install", [])
    impure = []
    for item in resolved:
        filename = item["download_info"]["url"].rsplit("/", 1)[-1]
        pure = filename.endswith(".whl") and filename.removesuffix(".whl").split("-")[-2:] == ["none", "any"]
        if not pure:
            impure.append(f"{item['metadata']['name']}=={item['metadata']['version']}")
    return impure


def build_from_source(requirement: str, cache: Path, pip_args: Sequence[str] = (),
                      progress: Callable[[str], None] = print) -> str:
    """Build ``requirement`` from its sdist with its C code disabled; the retagged wheel's name (in ``cache``)."""
    project = _project(requirement)
    progress(f"  {project}: no pure-Python wheel; building it from source without its optional C code")
    with tempfile.TemporaryDirectory(prefix="wasmlambda-sdist-") as out:
        result = subprocess.run([
            sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--quiet", "--no-deps",
            "--no-binary", project, "--wheel-dir", out, requirement, *pip_args,
        ], capture_output=True, text=True, env={**os.environ, **_PURE_BUILD_ENV})
        built = sorted(Path(out).glob("*.whl"))
        if result.returncode != 0 or not built:
            raise BuildError(
                f"{project}: no pure-Python wheel (py3-none-any), and building it from source without a C "
                "compiler failed, so its native code is not optional; it cannot run in the WebAssembly sandbox "
                f"(pip: {_last_error(result.stderr)})")
        return _retag_pure(built[0], cache)


def _retag_pure(wheel: Path, cache: Path) -> str:
    """Copy a wheel holding only Python code into ``cache`` as ``py3-none-any`` (WHEEL and RECORD rewritten)."""
    with zipfile.ZipFile(wheel) as source:
        entries = source.namelist()
        native = [entry for entry in entries if entry.endswith(_NATIVE_SUFFIXES)]
        project = wheel.name.split("-")[0]
        if native:
            raise BuildError(f"{project}: its C code is not optional (the source build made {native[0]}); it "
                             "cannot run in the WebAssembly sandbox")
        name, version = wheel.name.split("-")[:2]
        target = cache / f"{name}-{version}-py3-none-any.whl"
        info = next(entry.split("/")[0] for entry in entries if entry.split("/")[0].endswith(".dist-info"))
        wheel_file = f"{info}/WHEEL"
        metadata = re.sub(r"(?m)^(Tag|Root-Is-Purelib): .*\n", "", source.read(wheel_file).decode())
        metadata += "Root-Is-Purelib: true\nTag: py3-none-any\n"
        digest = base64.urlsafe_b64encode(hashlib.sha256(metadata.encode()).digest()).rstrip(b"=").decode()
        record_file = f"{info}/RECORD"
        record = "".join(f"{wheel_file},sha256={digest},{len(metadata.encode())}\n" if line.startswith(wheel_file + ",")
                         else line + "\n" for line in source.read(record_file).decode().splitlines())
        partial = target.with_suffix(".partial")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as retagged:
            for entry in entries:
                data = metadata.encode() if entry == wheel_file else record.encode() if entry == record_file \
                    else source.read(entry)
                retagged.writestr(entry, data)
    partial.replace(target)
    return target.name


def _top_level_modules(entries: list[str]) -> list[str]:
    tops = set()
    for entry in entries:
        first, _, rest = entry.partition("/")
        if first.endswith((".dist-info", ".data")):
            continue
        if rest == "__init__.py" or (not rest and first.endswith(".py")):
            tops.add(first.removesuffix(".py"))
    return sorted(tops)


def _unavailable(stderr: str) -> str | None:
    """The requirement pip found no pure wheel for (``MarkupSafe>=2.0``), if that is why it failed."""
    match = _MISSING.search(stderr)
    return (match[1] or match[2]) if match else None


def _project(requirement: str) -> str:
    match = _PROJECT.match(requirement)
    if match is None:
        raise BuildError(f"cannot read a project name in the requirement {requirement!r}")
    return match[0].rstrip(".")


def _explain(stderr: str) -> str:
    requirement = _unavailable(stderr)
    if requirement is not None:
        package = _project(requirement)
        return (
            f"{package}: no pure-Python wheel (py3-none-any) is available. It most likely contains native code "
            "(a compiled extension), which cannot run in the WebAssembly sandbox; use a pure-Python alternative."
        )
    return "pip could not download the requirements: " + _last_error(stderr)


def _last_error(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.startswith("ERROR")] or stderr.strip().splitlines()
    return " ".join(lines[-2:])


def _check_pure(wheel: Path) -> None:
    """Refuse a wheel that is tagged pure but ships compiled code anyway."""
    name, tags = wheel.name.split("-")[0], wheel.stem.split("-")[-3:]
    if tags[1:] != ["none", "any"]:
        raise BuildError(f"{name}: {wheel.name} is built for a specific platform (native code)")
    with zipfile.ZipFile(wheel) as archive:
        native = [entry for entry in archive.namelist() if entry.endswith(_NATIVE_SUFFIXES)]
    if native:
        raise BuildError(f"{name}: the wheel contains native code ({native[0]}), which cannot run in the sandbox")
