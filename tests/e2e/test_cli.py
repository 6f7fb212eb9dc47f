"""The wasmlambda CLI against a real worker."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ..conftest import EXAMPLES, FunctionFactory
from .conftest import WorkerProcess

pytestmark = pytest.mark.e2e


def cli(worker: WorkerProcess, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = worker.cli_env()
    return subprocess.run([sys.executable, "-m", "wasmlambda", *args], input=stdin, capture_output=True,
                          text=True, timeout=120, env=env)


def test_deploy_invoke_ls_logs_rm(worker: WorkerProcess, make_function: FunctionFactory) -> None:
    deployed = cli(worker, "deploy", str(EXAMPLES / "hello"))
    assert deployed.returncode == 0, deployed.stderr
    assert deployed.stdout.startswith("deployed hello (version ")
    invoked = cli(worker, "invoke", "hello", '{"name": "cli"}', "--show-cost")
    assert invoked.stdout == '{"hello": "cli"}\n'
    assert "start=cold" in invoked.stderr and "duration-us=" in invoked.stderr
    assert cli(worker, "invoke", "hello", "-", stdin='{"name": "pipe"}').stdout == '{"hello": "pipe"}\n'

    chatty = make_function("chatty", "def f(event):\n    print('seen', event)\n    return event\n")
    assert cli(worker, "deploy", str(chatty), "--name", "talker").returncode == 0
    with_logs = cli(worker, "invoke", "talker", "7", "--logs")
    assert with_logs.stdout == "7\n" and "log | seen 7" in with_logs.stderr
    logs = cli(worker, "logs", "talker")
    assert logs.returncode == 0 and logs.stdout.rstrip().endswith("seen 7")

    listing = cli(worker, "ls").stdout.splitlines()
    assert listing[0].split() == ["NAME", "VERSION", "ISOLATION", "TIMEOUT_MS", "MEMORY_MB", "DEPLOYED"]
    assert [line.split()[0] for line in listing[1:]] == ["hello", "talker"]
    assert cli(worker, "rm", "talker").stdout == "removed talker\n"
    assert "talker" not in cli(worker, "ls").stdout
    assert cli(worker, "status").stdout.startswith("status: ok\n")


def test_deploy_a_built_package(worker: WorkerProcess, tmp_path) -> None:  # type: ignore[no-untyped-def]
    package = tmp_path / "greeter.tar.gz"
    built = subprocess.run([sys.executable, "-m", "guest_sdk", "build", str(EXAMPLES / "hello"), "-o", str(package)],
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    assert cli(worker, "deploy", str(package)).stdout.startswith("deployed greeter ")
    assert cli(worker, "invoke", "greeter", '{"name": "pkg"}').stdout == '{"hello": "pkg"}\n'


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("invoke", "ghost"), "error: FunctionNotFound: no function named 'ghost' is deployed"),
        (("invoke", "echo", "{bad"), "error: BadRequest: the event is not valid JSON"),
        (("rm", "ghost"), "error: FunctionNotFound"),
        (("logs", "ghost"), "error: FunctionNotFound"),
        (("deploy", "/no/such/dir"), "error: /no/such/dir: no such folder or package"),
        (("status", "--url", "http://127.0.0.1:1"), "error: cannot reach the worker at http://127.0.0.1:1"),
        (("status", "--url", "ftp://x"), "error: --url must look like http://HOST:PORT"),
    ],
)
def test_errors_are_one_line(worker: WorkerProcess, args: tuple[str, ...], message: str) -> None:
    worker.deploy("echo", EXAMPLES / "echo")
    result = cli(worker, *args)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(message)
    assert "Traceback" not in result.stderr


def test_handler_error_prints_the_guest_traceback(worker: WorkerProcess, make_function: FunctionFactory) -> None:
    worker.deploy("boom", make_function("boom", "def f(event):\n    raise KeyError('k')\n"))
    result = cli(worker, "invoke", "boom")
    assert result.returncode == 1
    assert 'File "/function/f.py", line 2, in f' in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "error: GuestError: KeyError: 'k'"


def test_every_command_has_help(worker: WorkerProcess) -> None:
    for command in ["serve", "deploy", "invoke", "ls", "rm", "logs", "status", "runtime", "keys", "namespaces"]:
        result = cli(worker, command, "--help")
        assert result.returncode == 0 and "usage: wasmlambda" in result.stdout, command


def test_logs_follow_prints_new_lines(worker: WorkerProcess, make_function: FunctionFactory) -> None:
    worker.deploy("chatty", make_function("chatty", "def f(event):\n    print('event', event)\n    return 1\n"))
    worker.run("chatty", 1)
    env = {**worker.cli_env(), "PYTHONUNBUFFERED": "1"}
    follower = subprocess.Popen([sys.executable, "-m", "wasmlambda", "logs", "chatty", "--follow"],
                                stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline().rstrip().endswith(" event 1")
        worker.run("chatty", 2)
        assert follower.stdout.readline().rstrip().endswith(" event 2")
    finally:
        follower.terminate()
        follower.wait(timeout=10)
        if follower.stdout is not None:
            follower.stdout.close()
