"""The guest runtime as a wheel: ``wasmlambda runtime pack``, and finding an installed one.

Theory of operation: the built runtime (``python.wasm``, the snapshot inside
it, ``lib/python3.11`` and ``build-info.json``) is the same bytes on every
operating system and CPU; only its machine code is not, and the worker
compiles that on first use into the per-user cache.  So it ships as a
``py3-none-any`` wheel, ``wasmlambda-runtime-python``, whose version carries
the runtime's input hash as a local label (``0.1.0+<hash>``): ``pip install``
it, on any OS, and the worker needs no compiler and no build.

The package holds the runtime under ``wasmlambda_runtime_python/runtime/``
and says which input hash it was built from (``RUNTIME_KEY``).  A worker
running from a source checkout uses an installed runtime only if that hash
is its own (else it would run a guest ABI older or newer than its host
side); a worker installed from a wheel has no source tree to compare with,
and uses it.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.util
import zipfile
from pathlib import Path

from . import __version__

__all__ = ["DISTRIBUTION", "PACKAGE", "installed", "pack"]

DISTRIBUTION = "wasmlambda-runtime-python"
PACKAGE = "wasmlambda_runtime_python"

_INIT = '''"""The wasmlambda guest runtime (CPython 3.11 compiled to WASI, pre-initialised), as data.

Made by `wasmlambda runtime pack`; the worker finds it by itself.
"""

from pathlib import Path

RUNTIME_KEY = {key!r}


def directory() -> Path:
    return Path(__file__).resolve().parent / "runtime"
'''


def pack(runtime_dir: Path, key: str, out_dir: Path) -> Path:
    """Write the wheel of ``runtime_dir`` (built from inputs hashing to ``key``) into ``out_dir``."""
    version = f"{__version__}+{key}"
    info = f"{PACKAGE}-{version}.dist-info"
    entries: list[tuple[str, bytes | Path]] = [(f"{PACKAGE}/__init__.py", _INIT.format(key=key).encode())]
    entries += [(f"{PACKAGE}/runtime/{path.relative_to(runtime_dir).as_posix()}", path)
                for path in sorted(runtime_dir.rglob("*")) if path.is_file()]  # (.pyc included: lazy imports)
    entries += [
        (f"{info}/METADATA", (f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\nVersion: {version}\n"
                              "Summary: The wasmlambda guest runtime: CPython 3.11 for WASI, pre-initialised\n"
                              "License: Apache-2.0 AND PSF-2.0\n").encode()),
        (f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: wasmlambda runtime pack\nRoot-Is-Purelib: true\n"
                          b"Tag: py3-none-any\n"),
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"{PACKAGE}-{version}-py3-none-any.whl"
    partial = wheel.with_suffix(".partial")
    record = []
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries:
            data = content.read_bytes() if isinstance(content, Path) else content
            archive.writestr(name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(data)}")
        record.append(f"{info}/RECORD,,")
        archive.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    partial.replace(wheel)
    return wheel


def installed() -> tuple[Path, str] | None:
    """(the runtime directory, its input hash) of an installed runtime wheel, or None."""
    if importlib.util.find_spec(PACKAGE) is None:
        return None
    module = importlib.import_module(PACKAGE)
    directory: Path = module.directory()
    if not (directory / "build-info.json").exists():
        return None
    return directory, str(module.RUNTIME_KEY)
