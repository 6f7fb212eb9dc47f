"""``wasmlambda cluster config``: what it prints is a configuration the real HAProxy accepts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)


def config(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wasmlambda", "cluster", "config", *args],
                          capture_output=True, text=True)


@pytest.mark.skipif(HAPROXY is None, reason="HAProxy is not installed (make setup installs it)")
@pytest.mark.parametrize("balance", ["hash", "roundrobin"])
def test_haproxy_accepts_the_config(tmp_path: Path, balance: str) -> None:
    printed = config("127.0.0.1:9001", "127.0.0.1:9002", "--port", "18080", "--balance", balance)
    assert printed.returncode == 0, printed.stderr
    assert ("hash-type consistent" in printed.stdout) == (balance == "hash")
    (tmp_path / "haproxy.cfg").write_text(printed.stdout)
    assert HAPROXY is not None
    checked = subprocess.run([HAPROXY, "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_nginx_config_routes_by_function_and_retries_only_unsent_requests() -> None:
    printed = config("10.0.0.1:8080", "10.0.0.2:8080", "--nginx")
    assert printed.returncode == 0, printed.stderr
    assert "hash $wasmlambda_function consistent;" in printed.stdout
    assert "proxy_next_upstream error;" in printed.stdout
    assert printed.stdout.count("server 10.0.0.1:8080") == 2  # functions and control plane


def test_a_bad_address_is_one_clear_error() -> None:
    printed = config("no-port-here")
    assert printed.returncode == 2 and printed.stderr.startswith("error: 'no-port-here': give each worker as HOST:PORT")
