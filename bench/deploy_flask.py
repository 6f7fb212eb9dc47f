"""Deploy time of examples/flask_app, cold and with warm caches.

Cold: empty pip cache, empty wheel cache (MarkupSafe is built from its
source), a new worker with an empty package cache.  Warm: the same
function deployed again under other names (pip's and the wheel cache hit;
the worker already holds every vendored file).  Each deploy is
``wasmlambda deploy examples/flask_app --name ...`` timed end to end
(vendoring and packing on the client, unpacking, snapshot and publish on
the worker), then its first request (a cold start: snapshot restore + the
view) and a warm one.  Needs PyPI.

Usage: python bench/deploy_flask.py [--warm-runs 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.load import ADMIN_TOKEN, start_server, stop_server  # noqa: E402


def deploy(port: int, name: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "wasmlambda", "deploy", str(REPO / "examples" / "flask_app"), "--name", name,
                    "--url", f"http://127.0.0.1:{port}", "--token", ADMIN_TOKEN], check=True, env=env,
                   capture_output=True, text=True)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm-runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wasmlambda-bench-deploy-") as scratch:
        root = Path(scratch)
        env = {**os.environ, "PIP_CACHE_DIR": str(root / "pip-cache"), "XDG_CACHE_HOME": str(root / "cache")}
        # The worker's runtime stays where it is: only the client's build caches start empty.
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
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            connection.request("GET", "/stats")
            packages = json.loads(connection.getresponse().read())["packages"]
            connection.close()
        finally:
            stop_server(server)
    print(f"# {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| deploy | `wasmlambda deploy` s | first request ms | of which restore ms | warm request ms |")
    print("|---|---|---|---|---|")
    for label, seconds, first, restore_us, warm in rows:
        print(f"| {label} | {seconds:.2f} | {first * 1000:.1f} | {restore_us / 1000:.1f} | {warm * 1000:.2f} |")
    warm_deploys = [row[1] for row in rows[1:]]
    if warm_deploys:
        print(f"\nwarm deploys: median {statistics.median(warm_deploys):.2f} s; package cache: {packages}")


if __name__ == "__main__":
    main()
