"""How late does a timed-out call answer?  Measures the 504 latency of a
spinning handler (epoch interruption) and a sleeping one (the scheduler's
backstop) against their timeout, through the real worker over HTTP.

Usage: python bench/deadline.py [--timeout-ms 200] [--calls 20]
"""

from __future__ import annotations

import argparse
import http.client
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.load import ADMIN_HEADERS, start_server, stop_server
from guest_sdk import pack

HANDLERS = {
    "spin": "def f(event):\n    while True:\n        pass\n",
    "sleep": "import time\n\ndef f(event):\n    time.sleep(60)\n",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout-ms", type=int, default=200)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wasmlambda-deadline-") as scratch:
        worker, port = start_server([sys.executable, "-m", "wasmlambda", "serve", "--port", "0",
                                     "--data-dir", str(Path(scratch) / "data")])
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            print(f"timeout_ms = {args.timeout_ms}, {args.calls} calls each\n")
            print("| handler | 504s | overshoot p50 ms | overshoot max ms |")
            print("|---|---|---|---|")
            for name, source in HANDLERS.items():
                code = Path(scratch) / name
                code.mkdir()
                (code / "f.py").write_text(source)
                (code / "wasmlambda.toml").write_text(f"[limits]\ntimeout_ms = {args.timeout_ms}\n")
                connection.request("POST", f"/registry/{name}", pack(code), headers=ADMIN_HEADERS)
                deployed = connection.getresponse()
                if deployed.status != 201:
                    raise RuntimeError(f"deploying {name} failed: {deployed.read()!r}")
                deployed.read()
                overshoots, statuses = [], []
                for _ in range(args.calls):
                    started = time.perf_counter()
                    connection.request("POST", f"/run/{name}", b"null")
                    response = connection.getresponse()
                    response.read()
                    overshoots.append((time.perf_counter() - started) * 1000 - args.timeout_ms)
                    statuses.append(response.status)
                overshoots.sort()
                print(f"| {name} | {statuses.count(504)}/{len(statuses)} | {overshoots[len(overshoots) // 2]:.1f} "
                      f"| {overshoots[-1]:.1f} |")
        finally:
            stop_server(worker)
    return 0


if __name__ == "__main__":
    sys.exit(main())
