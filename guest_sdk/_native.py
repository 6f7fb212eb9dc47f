"""Native guests: compile a C handler (f.c plus any other .c files in its
folder) with clang for wasm32-wasi into f.wasm, against wasmlambda.h."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from ._vendor import BuildError

INCLUDE_DIR = Path(__file__).resolve().parent / "include"
WASI_INCLUDE = Path("/usr/include/wasm32-wasi")
WASI_LIB = Path("/usr/lib/wasm32-wasi")


def compile_c(source_dir: Path, output: Path) -> None:
    clang = shutil.which("clang-14") or shutil.which("clang")
    if clang is None or not WASI_INCLUDE.exists():
        raise BuildError("building a C function needs clang-14 and wasi-libc "
                         "(apt-get install clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32)")
    sources = sorted(str(path) for path in source_dir.glob("*.c"))
    with tempfile.TemporaryDirectory(prefix="wasmlambda-sysroot-") as sysroot:
        # Only wasi-libc's headers: without a sysroot the host's leak in.
        for kind, target in (("include", WASI_INCLUDE), ("lib", WASI_LIB)):
            (Path(sysroot) / kind).mkdir()
            (Path(sysroot) / kind / "wasm32-wasi").symlink_to(target)
        command = [
            clang, "--target=wasm32-wasi", f"--sysroot={sysroot}", "-mexec-model=reactor", "-O2",
            "-Wall", "-Werror=implicit-function-declaration", f"-I{INCLUDE_DIR}", "-o", str(output), *sources,
            "-Wl,--strip-debug", "-z", "stack-size=65536",
        ]
        result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError("compiling the C handler failed:\n" + (result.stderr or result.stdout).strip())
