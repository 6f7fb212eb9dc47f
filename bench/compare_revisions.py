"""The warm hello at this checkout beside another git revision, in one run.

Usage: python bench/compare_revisions.py REV [--seconds 5] [--requests 3000]

Checks REV out into a temporary worktree, compiles its Cython extensions
in place and builds (or finds cached) its guest runtime, then starts one
worker from each tree with hello deployed and measures both, alternately,
with two clients: ``http.client`` keep-alive on one connection (p50/p99 of
``--requests`` round trips) and wrk (16 connections, ``--seconds``).  For
each run it also reads the worker's own CPU time (user + system, all
threads, from /proc) and reports CPU microseconds per request.  Linux only.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.load import start_server, stop_server, wrk_measure  # noqa: E402

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime, all threads


def http_client(port: int, requests: int) -> dict[str, float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies = []
    for _ in range(requests):
        started = time.perf_counter()
        connection.request("POST", "/run/hello", b'{"name": "ab"}')
        response = connection.getresponse()
        response.read()
        latencies.append((time.perf_counter() - started) * 1e6)
    connection.close()
    return {"p50_us": statistics.median(latencies), "p99_us": statistics.quantiles(latencies, n=100)[98],
            "requests": requests}


_BUILD = """
import glob, sys
from Cython.Build import cythonize
from setuptools import Extension, setup
tree = sys.argv.pop(1)
sources = sorted(glob.glob(tree + "/wasmlambda/_fastpath/*.pyx"))
names = ["wasmlambda._fastpath." + path.rsplit("/", 1)[1][:-4] for path in sources]
setup(name="ab", ext_modules=cythonize([Extension(name, [path], extra_compile_args=["-O2"])
                                        for name, path in zip(names, sources)], language_level=3, quiet=True,
                                       compiler_directives={"boundscheck": False, "wraparound": False}))
"""


def prepare(tree: Path) -> None:
    # The tree's own setup.py reads its pyproject.toml, which the venv's setuptools may not
    # take outside pip's build isolation: build its .pyx files from a bare script instead.
    with tempfile.TemporaryDirectory() as build:
        script = Path(build) / "setup.py"
        script.write_text(_BUILD)
        subprocess.run([sys.executable, str(script), str(tree), "build_ext", "--build-lib", str(tree),
                        "--build-temp", build], cwd=build, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    subprocess.run([sys.executable, "-m", "wasmlambda", "runtime", "build"], cwd=tree, check=True,
                   stdout=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rev")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wasmlambda-ab-") as scratch:
        other = Path(scratch) / "tree"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(other), args.rev], cwd=REPO, check=True)
        try:
            print(f"building {args.rev} (extensions, runtime)...", file=sys.stderr, flush=True)
            prepare(other)
            servers = {}
            for label, tree in ((args.rev, other), ("this checkout", REPO)):
                # Run from the tree: `python -m` puts the working directory first on sys.path.
                process, port = start_server([sys.executable, "-m", "wasmlambda", "serve", "--port", "0",
                                              "--data-dir", f"{scratch}/{label.replace(' ', '-')}", "--deploy",
                                              str(REPO / "examples" / "hello")], cwd=tree)
                servers[label] = (process, port)
            rows = []
            try:
                for round_ in range(args.rounds):
                    for label, (process, port) in servers.items():
                        http_client(port, 300)  # warm
                        before = cpu_seconds(process.pid)
                        figures = http_client(port, args.requests)
                        cpu = (cpu_seconds(process.pid) - before) / args.requests * 1e6
                        rows.append((round_, label, "http.client, 1 connection", figures["p50_us"],
                                     figures["p99_us"], None, cpu))
                        if shutil.which("wrk"):
                            before = cpu_seconds(process.pid)
                            measured = wrk_measure(port, "/run/hello", 16, args.seconds)
                            total = measured["requests_per_s"] * args.seconds
                            cpu = (cpu_seconds(process.pid) - before) / total * 1e6
                            rows.append((round_, label, "wrk, 16 connections", measured["p50_us"],
                                         measured["p99_us"], measured["requests_per_s"], cpu))
            finally:
                for process, _ in servers.values():
                    stop_server(process)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=REPO, check=False)
    print(f"POST /run/hello, this checkout beside {args.rev}, alternating, {args.rounds} rounds; "
          f"server CPU = the worker's user + system time per request\n")
    print("| round | worker | client | p50 µs | p99 µs | req/s | server CPU µs/request |")
    print("|---|---|---|---|---|---|---|")
    for round_, label, client, p50, p99, rate, cpu in rows:
        print(f"| {round_ + 1} | {label} | {client} | {p50:.0f} | {p99:.0f} | "
              f"{'' if rate is None else f'{rate:,.0f}'} | {cpu:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
