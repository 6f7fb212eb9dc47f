"""Shared fixtures: the real guest runtime, and function folders on disk."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from wasmlambda import _guest_runtime
from wasmlambda.config import Settings
from wasmlambda.sandbox import Runtime, RuntimeImage

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
CACHE_DIR = Settings().cache_dir

FunctionFactory = Callable[..., Path]


@pytest.fixture(scope="session")
def runtime_image() -> RuntimeImage:
    # No skip: without a runtime the suite must fail (`make test` builds it).
    return RuntimeImage(_guest_runtime.locate(CACHE_DIR))


@pytest.fixture(scope="session")
def runtime(runtime_image: RuntimeImage) -> Iterator[Runtime]:
    shared = Runtime(runtime_image, CACHE_DIR, max_instances=16, max_memory_mb=256)
    yield shared
    shared.close()


@pytest.fixture
def make_function(tmp_path: Path) -> FunctionFactory:
    """Write a function folder: ``make_function("name", "def f(event): ...", toml=..., files={path: text})``."""

    def make(name: str, source: str, toml: str | None = None, files: dict[str, str] | None = None) -> Path:
        directory = tmp_path / "functions" / name
        directory.mkdir(parents=True)
        (directory / "f.py").write_text(textwrap.dedent(source))
        if toml is not None:
            (directory / "wasmlambda.toml").write_text(textwrap.dedent(toml))
        for filename, content in (files or {}).items():
            path = directory / filename
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(content))
        return directory

    return make


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port, for the whole session."""
    server = shutil.which("redis-server")
    if server is None:  # (make setup installs it on Debian; elsewhere it is optional)
        message = "redis-server is not installed (runtimes/python/install-system-deps.sh installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    directory = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                "--dir", str(directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
                    connection.sendall(b"PING\r\n")
                    if connection.recv(64).startswith(b"+PONG"):
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)
