"""Deploy time of examples/flask_app, cold and with warm caches.

Cold: empty pip cache, empty wheel cache (MarkupSafe is built from its
source), a new worker with an empty package cache.  Warm: the same
function deployed again under other names (pip's and the wheel cache hit;
the worker already holds every vendored file).  Each deploy is
``wasmlambda deploy examples/flask_app --name ...`` timed end to end
(vendoring and packing on the client, unpacking, snapshot and publish on
the worker), then its first request (a cold start: snapshot restore + the
view) and a warm one.  Needs PyPI.

Then, in the same worker, warm keep-alive round trips (``http.client``):
``GET /run/flask0/`` (a Jinja2 page) beside ``POST /run/hello`` and the
wsgi_echo app, with p50, p99 and the worker's CPU time per request (utime +
stime of all its threads, from /proc: Linux only).

Usage: python bench/deploy_flask.py [--warm-runs 3] [--requests 2000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.load import ADMIN_TOKEN, cpu_seconds, start_server, stop_server  # noqa: E402
from guest_sdk._vendor import default_wheel_cache  # noqa: E402


def deploy(port: int, name: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "wasmlambda", "deploy", str(REPO / "examples" / "flask_app"),
                           "--name", name, "--url", f"http://127.0.0.1:{port}", "--token", ADMIN_TOKEN], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"deploying {name} failed:\n{done.stderr}")
    return time.perf_counter() - started


def get(port: int, path: str) -> tuple[float, dict[str, str]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    elapsed = time.perf_counter() - started
    connection.close()
    assert response.status == 200, response.status
    return elapsed, {name.lower(): value for name, value in response.getheaders()}


def round_trips(pid: int, port: int, method: str, path: str, body: bytes | None, count: int) -> tuple[float, ...]:
    """p50 and p99 in ms, and the worker's CPU µs per request, over ``count`` keep-alive requests."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(50):  # warm-up
        connection.request(method, path, body=body)
        connection.getresponse().read()
    latencies = []
    cpu_before = cpu_seconds(pid)
    for _ in range(count):
        started = time.perf_counter()
        connection.request(method, path, body=body)
        response = connection.getresponse()
        response.read()
        latencies.append(time.perf_counter() - started)
        assert response.status == 200
    cpu = cpu_seconds(pid) - cpu_before
    connection.close()
    latencies.sort()
    return latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.99)] * 1000, cpu / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm-runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wasmlambda-bench-deploy-") as scratch:
        root = Path(scratch)
        env = {**os.environ, "PIP_CACHE_DIR": str(root / "pip-cache")}
        # The runtime stays where it is: only the build caches start empty (the wheel cache is set aside).
        wheels = default_wheel_cache()
        if wheels.exists():
            wheels.rename(root / "wheels-set-aside")
        server, port = start_server([sys.executable, "-m", "wasmlambda", "serve", "--port", "0", "--data-dir",
                                     str(root / "data")])
        try:
            rows = []
            for run in range(1 + args.warm_runs):
                name = f"flask{run}"
                seconds = deploy(port, name, env)
                first, headers = get(port, f"/run/{name}/?name=bench")
                assert headers["x-wasmlambda-start"] == "cold"
                warm, _ = get(port, f"/run/{name}/?name=bench")
                rows.append(("cold caches" if run == 0 else "warm caches", seconds, first,
                             int(headers["x-wasmlambda-restore-us"]), warm))
            for example in ("hello", "wsgi_echo"):
                subprocess.run([sys.executable, "-m", "wasmlambda", "deploy", str(REPO / "examples" / example),
                                "--url", f"http://127.0.0.1:{port}", "--token", ADMIN_TOKEN], check=True, env=env,
                               capture_output=True)
            warm_rows = [(label, *round_trips(server.pid, port, *request, args.requests)) for label, request in (
                ("`POST /run/hello` (f(event), JSON)", ("POST", "/run/hello", b'{"name": "bench"}')),
                ("`POST /run/wsgi_echo/x?y=1` (bare WSGI)", ("POST", "/run/wsgi_echo/x?y=1", b"some text")),
                ("`GET /run/flask0/?name=bench` (Flask + Jinja2)", ("GET", "/run/flask0/?name=bench", None)),
            )]
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            connection.request("GET", "/stats")
            packages = json.loads(connection.getresponse().read())["packages"]
            connection.close()
        finally:
            stop_server(server)
            if (root / "wheels-set-aside").exists():
                shutil.rmtree(wheels, ignore_errors=True)
                (root / "wheels-set-aside").rename(wheels)
    print(f"# {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| deploy | `wasmlambda deploy` s | first request ms | of which restore ms | warm request ms |")
    print("|---|---|---|---|---|")
    for label, seconds, first, restore_us, warm in rows:
        print(f"| {label} | {seconds:.2f} | {first * 1000:.1f} | {restore_us / 1000:.1f} | {warm * 1000:.2f} |")
    print(f"\nwarm round trips, http.client keep-alive, {args.requests} requests each:\n")
    print("| request | p50 ms | p99 ms | worker CPU µs/request |")
    print("|---|---|---|---|")
    for label, p50, p99, cpu in warm_rows:
        print(f"| {label} | {p50:.3f} | {p99:.3f} | {cpu:.0f} |")
    warm_deploys = [row[1] for row in rows[1:]]
    if warm_deploys:
        print(f"\nwarm deploys: median {statistics.median(warm_deploys):.2f} s; package cache: {packages}")


if __name__ == "__main__":
    main()
