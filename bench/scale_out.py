"""Scale-out: one worker process, two, and a cluster of three behind HAProxy, beside trio + h11.

Starts, one after another so they do not share the cores, the baseline
(bench/baseline_server.py: the hello handler in a plain trio + h11 server,
no sandbox), the baseline as two processes on one port ("baseline 2": the
same cores as ``--processes 2``), ``wasmlambda serve --processes 1``,
``--processes 2``, and
``wasmlambda cluster up --workers 3`` (HAProxy, Redis, three workers), each
serving hello.  Each is driven by three clients: wrk (C, 16 connections),
``http.client`` keep-alive (16 threads) and a raw-socket selectors client (16
connections); and the CPU the server's whole process tree used per request
is read from /proc (utime + stime of it and every descendant).  For
``--processes 2`` the private and shared memory of each child is reported
(smaps_rollup): the compiled runtime is mapped from one file, so it should be
shared, not private.

Usage: python bench/scale_out.py [--seconds 5] [--out .benchmarks]   (Linux: reads /proc)
Writes scale_out.md (a table) and scale_out.png (a plot) into --out.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.load import BODY, EXPECTED, free_port, run_load, start_server, stop_server, wrk_measure  # noqa: E402

CONNECTIONS = 16
_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system) of ``root`` and all its descendants, alive now."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / _TICKS
    total, frontier = 0.0, [root]
    while frontier:
        pid = frontier.pop()
        total += times.get(pid, 0.0)
        frontier.extend(child for child, parent in parents.items() if parent == pid)
    return total


def memory_of_children(root: int) -> list[dict[str, float]]:
    children = [int(p) for p in os.listdir("/proc") if p.isdigit() and _parent(int(p)) == root]
    rows = []
    for pid in children:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])

        def mib(*names: str, fields: dict[str, str] = fields) -> float:
            return sum(int(fields[name].split()[0]) for name in names) / 1024

        rows.append({"pid": pid, "rss_mib": mib("Rss"), "private_mib": mib("Private_Clean", "Private_Dirty"),
                     "shared_mib": mib("Shared_Clean", "Shared_Dirty")})
    return rows


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return -1


def http_client_load(port: int, seconds: float) -> tuple[int, list[float]]:
    """CONNECTIONS threads, each a keep-alive http.client connection, as fast as they can."""
    stop = threading.Event()
    latencies: list[list[float]] = [[] for _ in range(CONNECTIONS)]

    def client(out: list[float]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while not stop.is_set():
            started = time.perf_counter()
            connection.request("POST", "/run/hello", BODY, {"Content-Type": "application/json"})
            response = connection.getresponse()
            if response.read() != EXPECTED:
                raise RuntimeError(f"unexpected answer {response.status}")
            out.append(time.perf_counter() - started)
        connection.close()

    threads = [threading.Thread(target=client, args=(out,)) for out in latencies]
    for thread in threads:
        thread.start()
    stop.wait(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    merged = sorted(value for out in latencies for value in out)
    return len(merged), merged


@contextmanager
def server(kind: str, scratch: Path) -> Iterator[tuple[int, int]]:
    """(port, pid of the process tree's root) of a started server."""
    hello = str(REPO / "examples" / "hello")
    if kind == "baseline":
        process, port = start_server([sys.executable, str(REPO / "bench" / "baseline_server.py")])
    elif kind.startswith("baseline"):  # "baseline N": N processes on one port, the same cores as --processes N
        process, port = start_server([sys.executable, str(REPO / "bench" / "baseline_server.py"), "--processes",
                                      kind.split()[1]])
    elif kind.startswith("processes"):
        count = kind.split()[1]
        process, port = start_server([sys.executable, "-m", "wasmlambda", "serve", "--port", "0", "--processes",
                                      count, "--data-dir", str(scratch / kind.replace(" ", "-")), "--deploy", hello])
    else:
        port = free_port()
        process, _ = start_server([sys.executable, "-m", "wasmlambda", "cluster", "up", "--workers", "3", "--port",
                                   str(port), "--data-dir", str(scratch / "cluster"), "--deploy", hello])
    try:
        yield port, process.pid
    finally:
        stop_server(process)



def measured(pid: int, run: Callable[[], tuple[int, dict[str, float]]]) -> dict[str, float]:
    before = tree_cpu_s(pid)
    requests, figures = run()
    return {**figures, "cpu_us_per_request": (tree_cpu_s(pid) - before) / max(requests, 1) * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--out", type=Path, default=REPO / ".benchmarks")
    parser.add_argument("--servers", nargs="+",
                        default=["baseline", "baseline 2", "processes 1", "processes 2", "cluster"])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    memory: list[dict[str, float]] = []
    use_wrk = shutil.which("wrk") is not None
    with tempfile.TemporaryDirectory(prefix="wasmlambda-scale-") as scratch:
        for kind in args.servers:
            with server(kind, Path(scratch)) as (port, pid):
                run_load(port, "/run/hello", CONNECTIONS, 3000)  # warm up every process's instances
                if use_wrk:
                    def wrk() -> tuple[int, dict[str, float]]:
                        figures = wrk_measure(port, "/run/hello", CONNECTIONS, int(args.seconds))
                        return int(figures["requests_per_s"] * args.seconds), figures

                    rows.append({"server": kind, "client": "wrk", **measured(pid, wrk)})

                def python_client() -> tuple[int, dict[str, float]]:
                    count, latencies = http_client_load(port, args.seconds)
                    return count, {"requests_per_s": count / args.seconds,
                                   "p50_us": latencies[len(latencies) // 2] * 1e6,
                                   "p99_us": latencies[int(len(latencies) * 0.99)] * 1e6}

                rows.append({"server": kind, "client": "http.client", **measured(pid, python_client)})

                def raw_socket() -> tuple[int, dict[str, float]]:
                    started = time.perf_counter()
                    latencies = sorted(run_load(port, "/run/hello", CONNECTIONS, int(2000 * args.seconds)))
                    elapsed = time.perf_counter() - started
                    return len(latencies), {"requests_per_s": len(latencies) / elapsed,
                                            "p50_us": latencies[len(latencies) // 2] / 1000,
                                            "p99_us": latencies[int(len(latencies) * 0.99)] / 1000}

                rows.append({"server": kind, "client": "raw socket", **measured(pid, raw_socket)})
                if kind == "processes 2":
                    memory = memory_of_children(pid)
                print(f"{kind}: done", file=sys.stderr, flush=True)
    report = render(rows, memory, args.seconds)
    (args.out / "scale_out.md").write_text(report)
    plot(rows, args.out / "scale_out.png")
    print(report)
    return 0


def render(rows: list[dict[str, Any]], memory: list[dict[str, float]], seconds: float) -> str:
    lines = [f"POST /run/hello, {CONNECTIONS} keep-alive connections per client, {seconds:g} s per row, loopback; "
             f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), clients on the same cores; "
             "server CPU is the process tree's (all processes, HAProxy and Redis included)", "",
             "| client | server | req/s | vs 1 process | vs trio + h11 | p50 µs | p99 µs | server CPU µs/req |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        def rate_of(server: str, row: dict[str, Any] = row) -> float:
            match = [r for r in rows if r["server"] == server and r["client"] == row["client"]]
            return float(match[0]["requests_per_s"]) if match else float("nan")

        lines.append(f"| {row['client']} | {row['server']} | {row['requests_per_s']:,.0f} "
                     f"| {row['requests_per_s'] / rate_of('processes 1'):.2f}x "
                     f"| {row['requests_per_s'] / rate_of('baseline'):.2f}x | {row['p50_us']:,.0f} "
                     f"| {row['p99_us']:,.0f} | {row['cpu_us_per_request']:,.0f} |")
    if memory:
        lines += ["", "Memory of the two processes of `--processes 2` after the runs (smaps_rollup):", "",
                  "| pid | RSS MiB | private MiB | shared MiB |", "|---|---|---|---|"]
        lines += [f"| {m['pid']:.0f} | {m['rss_mib']:.1f} | {m['private_mib']:.1f} | {m['shared_mib']:.1f} |"
                  for m in memory]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    servers = list(dict.fromkeys(row["server"] for row in rows))
    clients = list(dict.fromkeys(row["client"] for row in rows))
    figure, axis = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(clients)
    for index, client in enumerate(clients):
        values = [next((r["requests_per_s"] for r in rows if r["server"] == s and r["client"] == client), 0)
                  for s in servers]
        axis.bar([x + index * width for x in range(len(servers))], values, width, label=client)
    axis.set_xticks([x + width * (len(clients) - 1) / 2 for x in range(len(servers))], servers)
    axis.set_ylabel("requests/s (hello)")
    axis.set_title("Scale-out on this machine's cores")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
