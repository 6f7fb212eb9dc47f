"""Build the CPython-for-WASI guest runtime and its Wizer base snapshot.

The result is platform independent: ``python.wasm`` (a wasm32-wasi reactor
whose memory already holds an initialised interpreter, see shim/wl_shim.c)
and ``lib/python3.11`` (the precompiled standard library the guest sees at
``/usr/local/lib/python3.11``).  It lands in ``<cache>/runtime/<key>/``,
where the key hashes every input in this directory, so an unchanged tree
never rebuilds and a changed one never reuses a stale image.

Usage: ``python runtimes/python/build.py [--cache-dir DIR] [--force]``, or
``wasmlambda runtime build``.  Needs the Debian packages that
``install-system-deps.sh`` installs, and npm for Wizer.  Only the standard
library is used here, so the script runs before anything else is installed.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WIZER_VERSION = "11.0.3"
PYTHON_SOURCE_PACKAGE = "python3.11"
GUEST_STDLIB = "/usr/local/lib/python3.11"
# A function's code directory is preopened here at run time.  wasi-libc reads
# its preopen table once, during Wizer, so the path (and its fd, 4, right
# after the stdlib's 3) must already be mapped then, to an empty directory.
GUEST_CODE_DIR = "/function"
# The guest's in-memory /tmp (shim/wl_tmpfs.c) answers for this preopen (fd 5),
# an empty read-only directory on the host.
GUEST_TMP_DIR = "/tmp"
# Keeps the snapshot small enough for Wasmtime's copy-on-write image (the
# notes measured 4-6 MiB as the window); Python grows memory as it needs.
INITIAL_MEMORY = 6 * 1024 * 1024
STDLIB_EXCLUDES = {
    "test", "tests", "idle_test", "idlelib", "tkinter", "turtledemo",
    "ensurepip", "lib2to3", "__pycache__", "venv", "pydoc_data",
}
# Copied into the guest's standard library (ssl.py replaces CPython's, which needs OpenSSL).
GUEST_MODULES = ("_wl_runtime.py", "_wl_loop.py", "wasmlambda_guest.py", "ssl.py")
SHIM_SOURCES = ("shim/wl_shim.c", "shim/wl_tmpfs.c")
INPUTS = ("build.py", *SHIM_SOURCES, *(f"guest/{name}" for name in GUEST_MODULES))
# The wasi-libc calls wl_tmpfs.c serves for /tmp (passing the rest on to the host).
TMPFS_WRAPPED = (
    "fd_prestat_dir_name", "path_open", "fd_read", "fd_pread", "fd_write", "fd_pwrite", "fd_seek", "fd_tell",
    "fd_close", "fd_sync", "fd_datasync", "fd_advise", "fd_allocate", "fd_fdstat_get", "fd_fdstat_set_flags",
    "fd_filestat_get", "fd_filestat_set_size", "fd_filestat_set_times", "fd_readdir", "fd_renumber",
    "path_create_directory", "path_filestat_get", "path_filestat_set_times", "path_link", "path_readlink",
    "path_remove_directory", "path_rename", "path_symlink", "path_unlink_file",
)
# The wasi-libc calls that may block, announced to the host first (wl_shim.c).
BLOCKING_WRAPPED = ("poll_oneoff",)
# Bump when the steps that build the interpreter itself (sources, zlib,
# configure, make) change: their output is cached apart from the image,
# so editing the shim or the guest module relinks in seconds.
INTERPRETER_RECIPE = 1
STEPS = 8


class BuildError(Exception):
    """A step failed; the message says which and where its log is."""


def default_cache_dir() -> Path:
    env = os.environ.get("WASMLAMBDA_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wasmlambda"


def input_key() -> str:
    """Hash of everything that determines the image's bytes."""
    digest = hashlib.sha256(f"{WIZER_VERSION} {PYTHON_SOURCE_PACKAGE} {INITIAL_MEMORY}".encode())
    for name in INPUTS:
        digest.update(name.encode() + b"\0" + (HERE / name).read_bytes())
    return digest.hexdigest()[:16]


def interpreter_key() -> str:
    return hashlib.sha256(f"{INTERPRETER_RECIPE} {PYTHON_SOURCE_PACKAGE}".encode()).hexdigest()[:16]


def runtime_dir(cache_dir: Path) -> Path:
    return cache_dir / "runtime" / input_key()


class Builder:
    def __init__(self, cache_dir: Path, jobs: int) -> None:
        self.cache_dir = cache_dir
        self.output = runtime_dir(cache_dir)
        self.work = cache_dir / "build" / input_key()
        self.logs = self.work / "logs"
        self.jobs = jobs
        self.step = 0
        self.interpreter = cache_dir / "interpreter" / interpreter_key()
        self.sysroot = self.interpreter / "sysroot"
        self.deps = self.interpreter / "deps"

    # -- plumbing ---------------------------------------------------------

    def announce(self, what: str) -> float:
        self.step += 1
        print(f"[{self.step}/{STEPS}] {what}", flush=True)
        return time.monotonic()

    def done(self, started: float) -> None:
        print(f"      done in {time.monotonic() - started:.1f} s", flush=True)

    def run(self, log_name: str, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        log = self.logs / f"{log_name}.log"
        with log.open("ab") as out:
            out.write(f"$ {' '.join(argv)}\n".encode())
            out.flush()
            result = subprocess.run(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            tail = log.read_text(errors="replace").splitlines()[-25:]
            raise BuildError(
                f"{argv[0]} failed (exit {result.returncode}); last lines of {log}:\n" + "\n".join(tail)
            )

    def wasm_env(self) -> dict[str, str]:
        # The sysroot confines clang to wasi-libc's headers; the empty
        # pkg-config path keeps configure from finding host libraries.
        cc = f"clang-14 --target=wasm32-wasi --sysroot={self.sysroot}"
        return {
            **os.environ,
            "CC": cc,
            "CPP": f"{cc} -E",
            "CXX": f"clang++-14 --target=wasm32-wasi --sysroot={self.sysroot}",
            "AR": "llvm-ar-14",
            "RANLIB": "llvm-ranlib-14",
            "LDSHARED": "wasm-ld-14",
            "PKG_CONFIG_PATH": "",
            "PKG_CONFIG_LIBDIR": "",
            "PKG_CONFIG_SYSROOT_DIR": str(self.sysroot),
        }

    # -- steps ------------------------------------------------------------

    def check_tools(self) -> None:
        missing = [t for t in ("clang-14", "wasm-ld-14", "llvm-ar-14", "apt-get", "dpkg-source", "make", "npm")
                   if shutil.which(t) is None]
        if not Path("/usr/include/wasm32-wasi/stdio.h").exists():
            missing.append("wasi-libc (/usr/include/wasm32-wasi)")
        if missing:
            raise BuildError(
                "missing build tools: " + ", ".join(missing)
                + f"\n  install them with: sudo bash {HERE / 'install-system-deps.sh'}"
            )

    def fetch_sources(self) -> tuple[Path, Path]:
        started = self.announce("fetch CPython 3.11 and zlib sources (apt-get source)")
        src = self.interpreter / "src"
        src.mkdir(parents=True, exist_ok=True)
        if not glob.glob(str(src / "python3.11-3.11.*/")) or not glob.glob(str(src / "zlib-*/")):
            self.run("sources", ["apt-get", "source", "-qq", PYTHON_SOURCE_PACKAGE, "zlib"], cwd=src)
        python_src = Path(sorted(glob.glob(str(src / "python3.11-3.11.*/")))[-1])
        zlib_src = Path(sorted(glob.glob(str(src / "zlib-*/")))[-1])
        self.done(started)
        return python_src, zlib_src

    def build_zlib(self, zlib_src: Path) -> None:
        started = self.announce("build zlib for wasm32-wasi")
        build = self.interpreter / "build-zlib"
        shutil.rmtree(build, ignore_errors=True)
        shutil.copytree(zlib_src, build, symlinks=True)
        env = {**self.wasm_env(), "CFLAGS": "-O2"}
        self.run("zlib", ["./configure", "--static", f"--prefix={self.deps}"], cwd=build, env=env)
        self.run("zlib", ["make", f"-j{self.jobs}", "libz.a"], cwd=build, env=env)
        self.run("zlib", ["make", "install"], cwd=build, env=env)
        self.done(started)

    def build_cpython(self, python_src: Path) -> None:
        build = self.interpreter / "build-py"
        build.mkdir(exist_ok=True)
        started = self.announce("configure CPython for wasm32-wasi (about 40 s)")
        env = {
            **self.wasm_env(),
            "CONFIG_SITE": str(python_src / "Tools/wasm/config.site-wasm32-wasi"),
            "ZLIB_CFLAGS": f"-I{self.deps}/include",
            "ZLIB_LIBS": f"-L{self.deps}/lib -lz",
        }
        self.run("configure", [
            str(python_src / "configure"), "--host=wasm32-unknown-wasi", "--build=x86_64-linux-gnu",
            f"--with-build-python={build_python()}", "--disable-test-modules",
        ], cwd=build, env=env)
        self.done(started)
        started = self.announce(f"compile CPython (about 30 s on 2 cores, -j{self.jobs})")
        self.run("make", ["make", f"-j{self.jobs}"], cwd=build, env=env)
        self.done(started)

    def stage_stdlib(self, python_src: Path, build: Path) -> Path:
        started = self.announce("stage and precompile the standard library")
        stage = self.work / "stage" / "lib" / "python3.11"
        shutil.rmtree(stage.parent.parent, ignore_errors=True)
        shutil.copytree(python_src / "Lib", stage,
                        ignore=lambda _dir, names: [n for n in names if n in STDLIB_EXCLUDES])
        for name in GUEST_MODULES:
            shutil.copy2(HERE / "guest" / name, stage)
        # Debian's sysconfig looks for the second name; configure writes the first.
        sysconfigdata = build / "build" / "lib.wasi-wasm32-3.11" / "_sysconfigdata__wasi_wasm32-wasi.py"
        shutil.copy2(sysconfigdata, stage)
        shutil.copy2(sysconfigdata, stage / "_sysconfigdata__wasm32-wasi.py")
        # Host-compiled .pyc: a smaller snapshot and 3x faster lazy imports.
        self.run("compileall", [
            build_python(), "-m", "compileall", "-q", f"-j{self.jobs}", "-d", GUEST_STDLIB, str(stage),
        ], cwd=self.work)
        self.done(started)
        return stage

    def link(self, python_src: Path, build: Path) -> Path:
        started = self.announce("link the reactor with the wasmlambda shim")
        out = self.work / "python-reactor.wasm"
        self.run("link", [
            "clang-14", "--target=wasm32-wasi", f"--sysroot={self.sysroot}", "-mexec-model=reactor", "-O2",
            f"-I{python_src / 'Include'}", f"-I{build}", "-o", str(out), *(str(HERE / name) for name in SHIM_SOURCES),
            *(f"-Wl,--wrap=__wasi_{name}" for name in (*TMPFS_WRAPPED, *BLOCKING_WRAPPED)),
            str(build / "libpython3.11.a"),
            str(build / "Modules/_decimal/libmpdec/libmpdec.a"),
            str(build / "Modules/expat/libexpat.a"),
            f"-L{self.deps}/lib", "-lz",
            "-lwasi-emulated-signal", "-lwasi-emulated-getpid", "-lwasi-emulated-process-clocks", "-lm",
            "-z", "stack-size=524288", "-Wl,--stack-first", f"-Wl,--initial-memory={INITIAL_MEMORY}",
            "-Wl,--strip-debug",
        ], cwd=self.work)
        self.done(started)
        return out

    def wizer(self) -> Path:
        tools = self.cache_dir / "tools" / f"wizer-{WIZER_VERSION}"
        binary = tools / "node_modules" / "@bytecodealliance" / "wizer-linux-x64" / "wizer"
        if not binary.exists():
            tools.mkdir(parents=True, exist_ok=True)
            self.run("wizer-install", [
                "npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(tools),
                f"@bytecodealliance/wizer@{WIZER_VERSION}",
            ], cwd=tools)
        return binary

    def snapshot(self, reactor: Path, stage: Path) -> Path:
        started = self.announce("pre-initialise the interpreter with Wizer")
        out = self.work / "python.wasm"
        out.unlink(missing_ok=True)
        empty_code_dir = self.work / "empty-function"
        empty_code_dir.mkdir(exist_ok=True)
        empty_tmp_dir = self.work / "empty-tmp"
        empty_tmp_dir.mkdir(exist_ok=True)
        self.run("wizer", [
            str(self.wizer()), "--allow-wasi", "--init-func", "wizer.initialize", "-r", "_initialize=wl_noop",
            "--mapdir", f"{GUEST_STDLIB}::{stage}", "--mapdir", f"{GUEST_CODE_DIR}::{empty_code_dir}",
            "--mapdir", f"{GUEST_TMP_DIR}::{empty_tmp_dir}",
            "-o", str(out), str(reactor),
        ], cwd=self.work)
        # Wizer leaves an empty file behind when initialisation fails.
        if out.stat().st_size == 0:
            raise BuildError(f"Wizer produced an empty image; see {self.logs / 'wizer.log'}")
        self.done(started)
        return out

    def publish(self, image: Path, stage: Path) -> None:
        started = self.announce(f"publish to {self.output}")
        staging = self.output.with_name(self.output.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "lib").mkdir(parents=True)
        shutil.copy2(image, staging / "python.wasm")
        shutil.copytree(stage, staging / "lib" / "python3.11")
        info = {
            "key": input_key(),
            "python": PYTHON_SOURCE_PACKAGE,
            "wizer": WIZER_VERSION,
            "image_bytes": image.stat().st_size,
            "image_sha256": hashlib.sha256(image.read_bytes()).hexdigest(),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (staging / "build-info.json").write_text(json.dumps(info, indent=2) + "\n")
        shutil.rmtree(self.output, ignore_errors=True)
        os.replace(staging, self.output)
        self.done(started)

    def build(self) -> Path:
        self.check_tools()
        self.logs.mkdir(parents=True, exist_ok=True)
        for link, target in (("include", "/usr/include/wasm32-wasi"), ("lib", "/usr/lib/wasm32-wasi")):
            (self.sysroot / link).mkdir(parents=True, exist_ok=True)
            path = self.sysroot / link / "wasm32-wasi"
            if not path.is_symlink():
                path.symlink_to(target)
        complete = self.interpreter / ".complete"
        if complete.exists():
            self.step = 4
            print(f"[1-4/{STEPS}] CPython interpreter: cached in {self.interpreter}", flush=True)
        else:
            shutil.rmtree(self.interpreter / "build-py", ignore_errors=True)
            python_src, zlib_src = self.fetch_sources()
            self.build_zlib(zlib_src)
            self.build_cpython(python_src)
            complete.touch()
        python_src = Path(sorted(glob.glob(str(self.interpreter / "src" / "python3.11-3.11.*/")))[-1])
        build = self.interpreter / "build-py"
        stage = self.stage_stdlib(python_src, build)
        reactor = self.link(python_src, build)
        image = self.snapshot(reactor, stage)
        self.publish(image, stage)
        shutil.rmtree(self.work, ignore_errors=True)
        return self.output


def build_python() -> str:
    """A host Python 3.11 (same bytecode magic as the guest)."""
    if Path("/usr/bin/python3.11").exists():
        return "/usr/bin/python3.11"
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    raise BuildError("a host python3.11 is needed to build the guest (apt-get install python3.11)")


def is_built(cache_dir: Path) -> bool:
    return (runtime_dir(cache_dir) / "build-info.json").exists()


def build(cache_dir: Path, force: bool = False, jobs: int | None = None) -> Path:
    if is_built(cache_dir) and not force:
        print(f"runtime {input_key()} is up to date: {runtime_dir(cache_dir)}", flush=True)
        return runtime_dir(cache_dir)
    print(f"building the guest runtime {input_key()} (about 2 minutes; logs in "
          f"{cache_dir / 'build' / input_key() / 'logs'})", flush=True)
    started = time.monotonic()
    output = Builder(cache_dir, jobs or os.cpu_count() or 2).build()
    print(f"runtime built in {time.monotonic() - started:.0f} s: {output}", flush=True)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--force", action="store_true", help="rebuild even if the cache is current")
    args = parser.parse_args(argv)
    try:
        build(args.cache_dir, args.force)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
