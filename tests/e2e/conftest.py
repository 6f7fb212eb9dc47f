"""A real worker process on a free loopback port, and a small HTTP client."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from guest_sdk import build_bytes
from wasmlambda import _admin_token as admin_token

STARTUP_TIMEOUT_S = 60


def wait_until(condition: Callable[[], object], timeout_s: float = 10, what: str = "the condition") -> None:
    """Poll ``condition`` until it is true; fail after ``timeout_s`` (never a bare sleep)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout_s} s"
        time.sleep(0.01)


class Reply:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = {name.lower(): value for name, value in response.getheaders()}
        self.body = response.read()

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = self.json()["error"]
        return error


class WorkerProcess:
    """``wasmlambda serve`` as a subprocess; restartable on the same data dir."""

    def __init__(self, data_dir: Path, log_path: Path, env: dict[str, str] | None = None,
                 max_open_files: int | None = None) -> None:
        self.data_dir = data_dir
        self.max_open_files = max_open_files  # RLIMIT_NOFILE for the worker, to run it out of descriptors
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[str] | None = None
        self.port = 0
        self.admin_token = ""  # read from the data dir once started (the worker creates it)
        self._connection: http.client.HTTPConnection | None = None

    def start(self, *args: str) -> None:
        command = [sys.executable, "-m", "wasmlambda", "serve", "--port", "0", "--data-dir", str(self.data_dir), *args]
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=self.env,
                                            preexec_fn=self._limit_open_files if self.max_open_files else None)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"worker exited during startup:\n{self.log_path.read_text()}")
            if "listening on http://" in line:
                self.port = int(line.rsplit(":", 1)[1])
                self.admin_token = admin_token.read(self.data_dir) or ""
                return
        raise RuntimeError(f"worker did not start in {STARTUP_TIMEOUT_S} s")

    def _limit_open_files(self) -> None:
        import resource

        assert self.max_open_files is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.max_open_files, self.max_open_files))

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.close_connection()
        self.process.send_signal(sig)
        code = self.process.wait(timeout=30)
        assert self.process.stdout is not None
        self.process.stdout.close()
        self.process = None
        return code

    def close_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def connection(self, fresh: bool = False) -> http.client.HTTPConnection:
        if fresh:
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        if self._connection is None:
            self._connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        return self._connection

    def request(self, method: str, path: str, body: bytes | str | None = None, fresh: bool = False,
                headers: dict[str, str] | None = None, admin: bool = True) -> Reply:
        """``admin``: send the admin token (unless ``headers`` has an Authorization of its own)."""
        connection = self.connection(fresh)
        if isinstance(body, str):
            body = body.encode()
        headers = dict(headers or {})
        if admin and self.admin_token:
            headers.setdefault("Authorization", f"Bearer {self.admin_token}")
        connection.request(method, path, body=body, headers=headers)
        reply = Reply(connection.getresponse())
        if fresh:
            connection.close()
        return reply

    def run(self, name: str, event: Any = None, fresh: bool = False) -> Reply:
        return self.request("POST", f"/run/{name}", json.dumps(event), fresh=fresh, admin=False)

    def cli_env(self) -> dict[str, str]:
        """The environment for ``wasmlambda`` CLI commands aimed at this worker: it
        finds the admin token in the data dir, as on the worker's own machine."""
        return {**os.environ, "WASMLAMBDA_URL": f"http://127.0.0.1:{self.port}",
                "WASMLAMBDA_DATA_DIR": str(self.data_dir)}

    def deploy_fresh(self, name: str, directory: Path) -> Reply:
        """Deploy on a connection of its own (for a deploy running beside other requests)."""
        return self.request("POST", f"/registry/{name}", build_bytes(directory, progress=lambda _: None, check=False),
                            fresh=True)

    def deploy(self, name: str, directory: Path) -> Reply:
        return self.request("POST", f"/registry/{name}", build_bytes(directory, progress=lambda _: None, check=False))


@pytest.fixture
def worker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WorkerProcess]:
    """A started worker; parametrize indirectly with "fast" or "h11" to pick --http."""
    process = WorkerProcess(tmp_path / "data", tmp_path / "worker.log")
    process.start(*(["--http", request.param] if hasattr(request, "param") else []))
    yield process
    if process.process is not None:
        assert process.stop() == 0, process.log_path.read_text()
