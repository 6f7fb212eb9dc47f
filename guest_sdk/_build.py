"""``python -m guest_sdk build``: a function folder to a deployable package.

Python (f.py): copy the sources to a staging folder, vendor requirements.txt,
byte-compile for the guest (CPython 3.11, unchecked-hash .pyc, paths as the
guest sees them), validate wasmlambda.toml, import the handler in the same
WebAssembly runtime the worker uses, and pack the result as tar.gz.
C (f.c): compile to f.wasm against wasmlambda.h and check its exports.
"""

from __future__ import annotations

import compileall
import dataclasses
import py_compile
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from wasmlambda.config import Settings
from wasmlambda.errors import WasmLambdaError
from wasmlambda.kernel import FunctionSpec, Limits
from wasmlambda.kernel._manifest import HANDLER_FILE, OL_MANIFEST_FILE, read_spec
from wasmlambda.kernel._package import NATIVE_FILE, VENDOR_DIR, kind_of
from wasmlambda.sandbox import Entry, Instance, Runtime, RuntimeImage
from wasmlambda.services import KeyValueService, Services, SQLiteStore

from ._native import compile_c
from ._package import SKIPPED, pack
from ._vendor import BuildError, vendor

GUEST_CODE_DIR = "/function"
REQUIREMENTS = "requirements.txt"


def build(directory: Path, output: Path | None = None, pip_args: Sequence[str] = (),
          progress: Callable[[str], None] = print) -> Path:
    """Build ``directory`` into ``output`` (default: ``<name>.tar.gz`` beside it)."""
    directory = directory.resolve()
    output = output or directory.parent / f"{directory.name}.tar.gz"
    with staged(directory, pip_args, progress) as staging:
        output.write_bytes(pack(staging, include_bytecode=True))
    progress(f"built {output} ({output.stat().st_size:,} bytes)")
    return output


def build_bytes(directory: Path, pip_args: Sequence[str] = (), progress: Callable[[str], None] = print,
                check: bool = True) -> bytes:
    """Like :func:`build`, returning the package instead of writing it.

    ``check=False`` skips the sandbox import, for callers (the worker) that
    are about to do exactly that themselves.
    """
    with staged(directory.resolve(), pip_args, progress, check) as staging:
        return pack(staging, include_bytecode=True)


@contextmanager
def staged(directory: Path, pip_args: Sequence[str] = (), progress: Callable[[str], None] = print,
           check: bool = True) -> Iterator[Path]:
    """A validated, compiled copy of the function folder, removed afterwards."""
    python = (directory / HANDLER_FILE).is_file() or (directory / OL_MANIFEST_FILE).is_file()
    native = not python and (directory / "f.c").is_file()
    if not python and not native:
        raise BuildError(f"{directory}: no f.py (defining f(event) or a WSGI app), no ol.yaml naming an entry "
                         "file, and no f.c (a C handler using wasmlambda.h)")
    with tempfile.TemporaryDirectory(prefix="wasmlambda-build-") as scratch:
        staging = Path(scratch) / directory.name
        shutil.copytree(directory, staging, ignore=shutil.ignore_patterns(*SKIPPED, "*.pyc", "*.wasm"))
        if native:
            compile_c(staging, staging / NATIVE_FILE)
            progress(f"compiled {NATIVE_FILE} ({(staging / NATIVE_FILE).stat().st_size:,} bytes)")
        else:
            from_source: dict[str, list[str]] = {}
            if (staging / REQUIREMENTS).is_file() and _has_requirements(staging / REQUIREMENTS):
                from_source = vendor(staging / REQUIREMENTS, staging / VENDOR_DIR, pip_args, progress).from_source
            _compile(staging)
            if from_source:
                check_imports(staging, from_source, progress)
        if check:
            with sandbox(staging) as local:
                start(local.runtime, staging, directory.name, local.spec).close()
            progress("the handler loads cleanly in the sandbox")
        yield staging


_IMPORT_CHECK = "_wasmlambda_import_check"


def check_imports(staging: Path, wheels: dict[str, list[str]], progress: Callable[[str], None]) -> None:
    """Import each package built from source inside the sandbox: its pure-Python
    fallback must work there, not only on this machine.  (Top-level modules
    whose name starts with ``_`` are private shims, not imported on their own.)"""
    owners = {module: wheel.split("-")[0] for wheel, modules in wheels.items() for module in modules
              if not module.startswith("_")}
    check = staging / f"{_IMPORT_CHECK}.py"
    check.write_text(
        f"failures = []\nfor name in {sorted(owners)!r}:\n    try:\n        __import__(name)\n"
        "    except Exception as exc:\n        failures.append(f'{name}: {type(exc).__name__}: {exc}')\n"
        "if failures:\n    raise ImportError('; '.join(failures))\n\ndef f(event):\n    return None\n")
    try:
        with sandbox(staging) as local:
            limits = local.limits
            try:
                local.runtime.snapshot(staging, staging.name, limits.memory_bytes, limits.timeout_ms,
                                       Entry(_IMPORT_CHECK))
            except WasmLambdaError as exc:
                raise BuildError(f"{', '.join(sorted(set(owners.values())))} (built from source without C code) "
                                 f"do not import in the sandbox: {exc}") from None
    finally:
        check.unlink()
    progress(f"  {', '.join(sorted(owners))}: import cleanly in the sandbox")


def _has_requirements(path: Path) -> bool:
    return any(line.split("#")[0].strip() for line in path.read_text().splitlines())


def _compile(staging: Path) -> None:
    """Unchecked-hash .pyc: valid whatever the file times after unpacking.

    Files that do not compile are left as they are: the guest import (the
    check in :func:`staged`, or the worker's deploy) reports the error with
    its file and line.
    """
    if sys.version_info[:2] == (3, 11):  # another host Python writes bytecode the guest rejects
        compileall.compile_dir(staging, quiet=2, ddir=GUEST_CODE_DIR, workers=1,
                               invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)


@dataclasses.dataclass
class LocalSandbox:
    """The worker's runtime, sized for one function, with throwaway key-value state."""

    runtime: Runtime
    spec: FunctionSpec
    services: Services

    @property
    def limits(self) -> Limits:
        return self.spec.limits


@contextmanager
def sandbox(staging: Path) -> Iterator[LocalSandbox]:
    from wasmlambda import _guest_runtime

    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="wasmlambda-state-") as state:
        try:
            spec = read_spec(staging, Limits(settings.default_timeout_ms, settings.default_memory_mb),
                             settings.max_memory_mb, python=kind_of(staging) == "python")
            services = Services({"kv": KeyValueService(SQLiteStore(Path(state) / "state.sqlite3"))})
            runtime = Runtime(RuntimeImage(_guest_runtime.locate(settings.cache_dir)), settings.cache_dir,
                              max_instances=1, max_memory_mb=max(spec.limits.memory_mb, 64),
                              host_dispatch=services.dispatch)
        except WasmLambdaError as exc:
            raise BuildError(str(exc)) from None
        try:
            yield LocalSandbox(runtime, spec, services)
        finally:
            runtime.close()
            services.close()


def start(runtime: Runtime, staging: Path, name: str, spec: FunctionSpec) -> Instance:
    """A ready instance: the snapshot restored (Python) or the module started (C)."""
    limits = spec.limits
    try:
        if kind_of(staging) == "wasm":
            program = runtime.load_native(staging / NATIVE_FILE, staging.parent / "module.cwasm")
            return runtime.start_native(program, limits.memory_bytes)
        snapshot = runtime.snapshot(staging, name, limits.memory_bytes, limits.timeout_ms,
                                    Entry(spec.entry, spec.wsgi_entry, spec.env))
        return runtime.restore(snapshot, staging, limits.memory_bytes)
    except WasmLambdaError as exc:
        raise BuildError(str(exc)) from None
