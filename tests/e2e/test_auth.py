"""The locked control plane: the admin token, invoke keys, what is open."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import EXAMPLES, FunctionFactory
from .conftest import WorkerProcess

pytestmark = pytest.mark.e2e

CONTROL_PLANE = [
    ("POST", "/registry/intruder"),
    ("GET", "/registry/"),
    ("GET", "/registry/hello"),
    ("DELETE", "/registry/hello"),
    ("GET", "/logs/hello"),
    ("GET", "/billing"),
    ("GET", "/billing/abc"),
    ("GET", "/metrics"),
    ("GET", "/keys/hello"),
    ("POST", "/keys/hello"),
    ("DELETE", "/keys/hello/0badc0de"),
    ("GET", "/namespaces"),
    ("PUT", "/namespaces/team/hello"),
    ("DELETE", "/namespaces/team/hello"),
]


def package(directory: Path) -> bytes:
    from guest_sdk import build_bytes

    return build_bytes(directory, progress=lambda _: None, check=False)


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "Basic YWRtaW46YWRtaW4=", "Bearer"])
def test_the_control_plane_refuses_without_the_token(worker: WorkerProcess, authorization: str | None) -> None:
    assert worker.deploy("hello", EXAMPLES / "hello").status == 201
    worker.run("hello", {"name": "x"})
    headers = {"Authorization": authorization} if authorization else {}
    body = package(EXAMPLES / "echo")
    for method, path in CONTROL_PLANE:
        reply = worker.request(method, path, body if method == "POST" else None, headers=headers, admin=False)
        assert reply.status == 401, (method, path)
        assert reply.headers["www-authenticate"].startswith("Bearer")
        assert reply.error["type"] == "Unauthorized"
    # Nothing changed: hello is still there, nothing else was deployed, no grant exists.
    listing = worker.request("GET", "/registry/").json()["functions"]
    assert [function["name"] for function in listing] == ["hello"]
    assert worker.request("GET", "/namespaces").json() == {"namespaces": {}}
    assert worker.run("hello", {"name": "still"}).json() == {"hello": "still"}


def test_with_the_token_everything_works(worker: WorkerProcess) -> None:
    assert worker.deploy("hello", EXAMPLES / "hello").status == 201
    assert worker.run("hello", {"name": "x"}).status == 200
    for method, path in [("GET", "/registry/"), ("GET", "/registry/hello"), ("GET", "/logs/hello"),
                         ("GET", "/billing"), ("GET", "/metrics"), ("GET", "/keys/hello"), ("GET", "/namespaces")]:
        assert worker.request(method, path).status == 200, path
    assert worker.request("DELETE", "/registry/hello").status == 200


def test_status_and_stats_say_nothing_about_tenants_without_the_token(worker: WorkerProcess) -> None:
    worker.deploy("hello", EXAMPLES / "hello")
    worker.run("hello", {"name": "x"})
    status = worker.request("GET", "/status", admin=False).json()
    assert status["status"] == "ok" and "functions" not in status
    assert worker.request("GET", "/status").json()["functions"] == 1
    stats = worker.request("GET", "/stats", admin=False).json()
    assert stats["invocations"] == 1 and "functions" not in stats and "hello" not in str(stats)
    assert worker.request("GET", "/stats").json()["functions"]["hello"]["invocations"] == 1


def test_a_browser_page_cannot_deploy_with_a_simple_cross_site_request(worker: WorkerProcess) -> None:
    # What a hostile page can send to a loopback worker without a preflight:
    # a form-like POST with a "simple" content type and no custom headers.
    body = package(EXAMPLES / "echo")
    simple = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
    assert worker.request("POST", "/registry/evil", body, headers=simple, admin=False).status == 401
    assert worker.request("GET", "/registry/evil").status == 404
    # Anything with an Authorization header needs a CORS preflight, which the worker never grants.
    preflight = worker.request("OPTIONS", "/registry/evil", admin=False, headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization"})
    assert preflight.status in (404, 405)
    assert not any(name.startswith("access-control-") for name in preflight.headers)


def test_the_token_file_is_private_and_reused(tmp_path: Path) -> None:
    worker = WorkerProcess(tmp_path / "data", tmp_path / "log", env={"WASMLAMBDA_ADMIN_TOKEN": ""})
    worker.start()
    first = worker.admin_token
    assert worker.stop() == 0
    token_file = tmp_path / "data" / "admin-token"
    assert len(first) >= 32 and token_file.read_text().strip() == first
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    worker.start()
    assert worker.admin_token == first and worker.request("GET", "/registry/").status == 200
    assert worker.stop() == 0


def test_flag_and_environment_set_the_token(tmp_path: Path) -> None:
    worker = WorkerProcess(tmp_path / "data", tmp_path / "log", env={"WASMLAMBDA_ADMIN_TOKEN": "from-env"})
    worker.start()
    try:
        assert not (tmp_path / "data" / "admin-token").exists()
        assert worker.request("GET", "/registry/", headers={"Authorization": "Bearer from-env"}).status == 200
        cli = subprocess.run([sys.executable, "-m", "wasmlambda", "ls", "--token", "from-env"], capture_output=True,
                             text=True, timeout=60, env={**worker.cli_env(), "WASMLAMBDA_ADMIN_TOKEN": ""})
        assert cli.returncode == 0, cli.stderr
    finally:
        assert worker.stop() == 0
    worker.start("--admin-token", "from-flag")
    try:
        assert worker.request("GET", "/registry/", headers={"Authorization": "Bearer from-env"}).status == 401
        assert worker.request("GET", "/registry/", headers={"Authorization": "bearer from-flag"}).status == 200
    finally:
        assert worker.stop() == 0


def test_invoke_keys(worker: WorkerProcess, make_function: FunctionFactory) -> None:
    private = make_function("private", "def f(event):\n    return 'inside'\n", toml="[function]\ninvoke_keys = true\n")
    caller = make_function("caller", """
        from wasmlambda_guest import ServiceError, invoke

        def f(event):
            try:
                return invoke("private", None)
            except ServiceError as exc:
                return "refused: " + str(exc)
    """)
    assert worker.deploy("private", private).json()["invoke_keys"] is True
    assert worker.deploy("caller", caller).status == 201

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "wasmlambda", *args], capture_output=True, text=True,
                              timeout=60, env=worker.cli_env())

    refused = worker.run("private")
    assert refused.status == 401 and refused.headers["www-authenticate"].startswith("Bearer")
    created = cli("keys", "create", "private")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("wlk_")
    key_id = key.split("_")[1]
    assert worker.request("POST", "/run/private", "null", headers={"Authorization": f"Bearer {key}"},
                          admin=False).json() == "inside"
    assert worker.request("POST", "/run/private", "null", headers={"Authorization": f"Bearer {key}x"},
                          admin=False).status == 401
    invoked = cli("invoke", "private", "--key", key)
    assert invoked.stdout == '"inside"\n', invoked.stderr
    assert worker.request("POST", "/run/private", "null").json() == "inside"  # the admin token works too
    assert cli("keys", "ls", "private").stdout.startswith(key_id)
    assert key.split("_", 2)[2] not in (worker.data_dir / "invoke-keys.json").read_text()  # only a digest
    # Another tenant's function cannot reach it by calling it in-process.
    assert worker.run("caller").json().startswith("refused: invoke: call: 'private' requires an invoke key")
    assert cli("keys", "rm", "private", key_id).returncode == 0
    assert worker.request("POST", "/run/private", "null", headers={"Authorization": f"Bearer {key}"},
                          admin=False).status == 401
    assert worker.run("caller").status == 200 and worker.run("hello").status == 404


def test_cli_without_a_token_says_how_to_get_one(worker: WorkerProcess, tmp_path: Path) -> None:
    env = {**os.environ, "WASMLAMBDA_URL": f"http://127.0.0.1:{worker.port}",
           "WASMLAMBDA_DATA_DIR": str(tmp_path / "elsewhere")}
    env.pop("WASMLAMBDA_ADMIN_TOKEN", None)
    result = subprocess.run([sys.executable, "-m", "wasmlambda", "ls"], capture_output=True, text=True, timeout=60,
                            env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("error: Unauthorized: ") and "--token" in result.stderr
