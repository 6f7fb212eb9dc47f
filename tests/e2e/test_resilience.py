"""Bad input and damaged state must never take the worker down."""

from __future__ import annotations

import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from wasmlambda.sandbox import Snapshot

from ..conftest import EXAMPLES
from .conftest import WorkerProcess

pytestmark = pytest.mark.e2e


def test_random_bytes_never_crash_the_worker(worker: WorkerProcess) -> None:
    worker.deploy("echo", EXAMPLES / "echo")
    rng = random.Random(1234)
    prefixes = [b"", b"POST /run/echo HTTP/1.1\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n", b"POST /registry/x HTTP/1.1\r\n"]
    for _ in range(60):
        payload = rng.choice(prefixes) + rng.randbytes(rng.randrange(0, 3000))
        with socket.create_connection(("127.0.0.1", worker.port), timeout=10) as raw:
            raw.sendall(payload)
            raw.shutdown(socket.SHUT_WR)
            while raw.recv(65536):
                pass
    assert worker.run("echo", "still here").json() == "still here"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"\xff\xfe", 400, "not valid JSON"),
        (b"[" * 100_000, 400, "maximum recursion depth"),
        (b"NaN", 400, "NaN is not valid JSON"),
        (b'"\\ud800"', 502, "JSON cannot encode"),  # valid JSON in, but not encodable as UTF-8 out
        (b"1e999999", 502, "Out of range float"),
        (b"\x00", 400, "not valid JSON"),
    ],
)
def test_odd_events(worker: WorkerProcess, body: bytes, status: int, message: str) -> None:
    worker.deploy("echo", EXAMPLES / "echo")
    reply = worker.request("POST", "/run/echo", body)
    assert reply.status == status and message in reply.error["message"]
    assert worker.request("POST", "/registry/echo", body).status == 400
    assert worker.run("echo", "fine").json() == "fine"


def test_stale_snapshot_is_retaken_after_a_runtime_change(worker: WorkerProcess) -> None:
    worker.deploy("hello", EXAMPLES / "hello")
    worker.stop()
    snapshot_file = next((worker.data_dir / "store").glob("hello-*")) / "snapshot.bin"
    old = Snapshot.from_bytes(snapshot_file.read_bytes())
    snapshot_file.write_bytes(Snapshot("0123456789abcdef", old.pages, old.ranges, old.payload).to_bytes())
    worker.start()
    assert worker.run("hello", {"name": "again"}).json() == {"hello": "again"}
    assert "re-snapshotting 'hello'" in worker.log_path.read_text()
    assert Snapshot.from_bytes(snapshot_file.read_bytes()).base_id != "0123456789abcdef"


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_a_damaged_snapshot_is_taken_again(worker: WorkerProcess, damage: str) -> None:
    worker.deploy("hello", EXAMPLES / "hello")
    worker.deploy("echo", EXAMPLES / "echo")
    worker.stop()
    snapshot_file = next((worker.data_dir / "store").glob("hello-*")) / "snapshot.bin"
    data = bytearray(snapshot_file.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    snapshot_file.write_bytes(bytes(data[: len(data) // 2] if damage == "truncate" else b"" if damage == "empty"
                                    else data))
    worker.start()
    assert worker.run("hello", {"name": "again"}).json() == {"hello": "again"}
    assert worker.run("echo", 1).json() == 1
    log = worker.log_path.read_text()
    assert "unusable snapshot" in log and "re-snapshotting 'hello'" in log
    assert Snapshot.from_bytes(snapshot_file.read_bytes()).base_id  # written again, whole


def test_damaged_function_is_skipped_not_fatal(worker: WorkerProcess) -> None:
    worker.deploy("hello", EXAMPLES / "hello")
    worker.deploy("echo", EXAMPLES / "echo")
    worker.stop()
    (next((worker.data_dir / "store").glob("echo-*")) / "manifest.json").write_text("{truncated")
    worker.start()
    assert worker.run("hello", {"name": "ok"}).status == 200
    assert worker.run("echo", 1).status == 404
    assert "skipping function 'echo'" in worker.log_path.read_text()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wasmlambda", *args], capture_output=True, text=True, timeout=120)


def test_cli_reports_bad_settings_in_one_line(tmp_path: Path) -> None:
    result = run_cli("serve", "--port", "99999", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == "error: port must be 0-65535, got 99999"
    result = run_cli("serve", "--deploy", str(tmp_path), "--data-dir", str(tmp_path))
    assert result.returncode == 2 and "no f.py, ol.yaml or f.c in that folder" in result.stderr


def test_cli_reports_a_busy_port(worker: WorkerProcess, tmp_path: Path) -> None:
    result = run_cli("serve", "--port", str(worker.port), "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{worker.port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_runtime_info() -> None:
    result = run_cli("runtime", "info")
    assert result.returncode == 0
    assert '"built": true' in result.stdout


def test_oversized_event_is_413(tmp_path: Path) -> None:
    process = WorkerProcess(tmp_path / "data", tmp_path / "log", env={"WASMLAMBDA_MAX_EVENT_BYTES": "1000"})
    process.start("--deploy", str(EXAMPLES / "echo"))
    try:
        assert process.run("echo", "x" * 900).status == 200
        reply = process.run("echo", "x" * 2000, fresh=True)
        assert reply.status == 413 and reply.error["type"] == "PayloadTooLarge"
        assert process.run("echo", "ok", fresh=True).json() == "ok"
    finally:
        assert process.stop() == 0
