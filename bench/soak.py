"""Soak a worker: `make soak` (10 minutes at 80 % of measured capacity over a mix of functions).

Usage: python bench/soak.py [--minutes 10] [--interval 10] [--out .benchmarks]

Starts ``wasmlambda serve`` with six functions deployed (hello, echo, a
CPU-bound one, one that raises, one that times out, one that counts in
key-value state), measures the capacity of the mix with four keep-alive
``http.client`` clients, then offers 80 % of it for the given time, paced
(each client sends on a schedule, not as fast as it can).  Every
``interval`` seconds it samples the worker's resident memory, open
descriptors and threads (from /proc) and its warm and busy instances (from
/stats), and writes a Markdown table and a PNG plot.

Warm-up: the worker keeps high-water marks by design: sandbox threads are
started as concurrency first reaches them, and each new peak of live
instances makes one more pooled memory slot resident (~6.7 MiB, the
runtime's memory image; a freed slot stays mapped for the next instance),
all bounded by the settings.  A function keeps as many warm instances as it
ever ran at once (at most ``max_running_per_function``), so the peak grows
whenever one function reaches a new concurrency, which under a random mix
can take hours.  The warm-up therefore runs each function alone at its cap
for 5 s, then the mix for ``--warmup`` seconds with twice the clients, as
fast as they can.  Then it redeploys every function (the same code), which
closes all their idle instances: a slot becomes wholly resident (the 8 MiB
Wasmtime keeps resident in a freed slot) the first time an instance in it is
closed, and a worker gets there after its first idle-timeout cycle
(``idle_timeout_s``, 10 minutes: inside the soak otherwise, where it showed as
steps of RSS while nothing grew, bench/RESULTS.md).  "Flat" then means no
figure grows beyond noise from the soak's first minute to its end.  The table shows the slots' resident memory
and the live-instance peak beside RSS, so growth can be told apart.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.load import ADMIN_HEADERS, start_server, stop_server  # noqa: E402

FUNCTIONS = {
    "hello": ("def f(event):\n    return {'hello': event['name']}\n", None, {"name": "soak"}),
    "echo": ("def f(event):\n    return event\n", None, [1, 2, 3]),
    "compute": ("def f(event):\n    return sum(i * i for i in range(event))\n", None, 20_000),
    "boom": ("def f(event):\n    raise ValueError('as designed')\n", None, None),
    "slow": ("import time\n\ndef f(event):\n    time.sleep(0.2)\n    return 1\n", "[limits]\ntimeout_ms = 50\n", None),
    "counter": ("from wasmlambda_guest import kv\n\ndef f(event):\n    return kv.incr('n')\n", None, None),
}
# How often each is called, per 20 requests.
MIX = ["hello"] * 6 + ["echo"] * 5 + ["compute"] * 3 + ["counter"] * 3 + ["boom"] * 2 + ["slow"]
CLIENTS = 8
# The worker's default max_running_per_function (half of its 16 sandbox threads).
RUNNING_PER_FUNCTION = 8


def deploy(port: int, scratch: Path) -> None:
    """Deploy the mix's functions (again: the same code, when their folders exist)."""
    from guest_sdk import build_bytes

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for name, (source, toml, _) in FUNCTIONS.items():
        folder = scratch / name
        folder.mkdir(exist_ok=True)
        (folder / "f.py").write_text(source)
        if toml:
            (folder / "wasmlambda.toml").write_text(toml)
        connection.request("POST", f"/registry/{name}", build_bytes(folder, progress=lambda _: None, check=False),
                           headers=ADMIN_HEADERS)
        response = connection.getresponse()
        response.read()
        assert response.status == 201, name
    connection.close()


class Client(threading.Thread):
    """One keep-alive client sending the mix, as fast as it can or every ``period_s``."""

    def __init__(self, port: int, index: int, stop: threading.Event, period_s: float = 0.0,
                 mix: list[str] = MIX) -> None:
        super().__init__(daemon=True)
        self.port, self.index, self.stop, self.period_s, self.mix = port, index, stop, period_s, mix
        self.statuses: Counter[int] = Counter()

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        bodies = {name: json.dumps(event).encode() for name, (_, _, event) in FUNCTIONS.items()}
        sent = 0
        next_at = time.monotonic()
        while not self.stop.is_set():
            name = self.mix[(sent * 7 + self.index) % len(self.mix)]
            try:
                connection.request("POST", f"/run/{name}", bodies[name])
                response = connection.getresponse()
                response.read()
                self.statuses[response.status] += 1
            except (OSError, http.client.HTTPException):
                self.statuses[0] += 1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            sent += 1
            if self.period_s:
                next_at += self.period_s
                delay = next_at - time.monotonic()
                if delay > 0:
                    self.stop.wait(delay)
                else:
                    next_at = time.monotonic()  # behind: do not burst to catch up
        connection.close()


def run_clients(port: int, seconds: float, period_s: float = 0.0, count: int = CLIENTS,
                mix: list[str] = MIX) -> Counter[int]:
    stop = threading.Event()
    clients = [Client(port, index, stop, period_s, mix) for index in range(count)]
    for client in clients:
        client.start()
    stop.wait(seconds)
    stop.set()
    total: Counter[int] = Counter()
    for client in clients:
        client.join()
        total.update(client.statuses)
    return total


# Each instance holds its WASI preopens (the stdlib, its code, /tmp) open: descriptors
# follow the live instances, which are bounded; what else is open must stay flat.
DESCRIPTORS_PER_INSTANCE = 3


def sample(pid: int, port: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/stats", headers=ADMIN_HEADERS)
    stats = json.loads(connection.getresponse().read())
    connection.close()
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024, "slots_mb": slot_resident_mb(pid),
            "anon_mb": int(fields["RssAnon"].split()[0]) / 1024, "file_mb": int(fields["RssFile"].split()[0]) / 1024,
            "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": int(fields["Threads"]), "idle_instances": stats["pool"]["idle_instances"],
            "high_water": stats["pool"]["high_water"], "idle_linear_mb": stats["pool"]["idle_bytes"] / 2**20,
            "busy_instances": stats["pool"]["busy"], "invocations": stats["invocations"]}


def other_descriptors(figures: dict[str, float]) -> float:
    """Descriptors not held by live instances (see DESCRIPTORS_PER_INSTANCE)."""
    return figures["fds"] - DESCRIPTORS_PER_INSTANCE * (figures["idle_instances"] + figures["busy_instances"])


def slot_resident_mb(pid: int) -> float:
    """Resident MiB of the sandboxes' memory slots: each slot the pooling
    allocator has used maps the runtime's memory image (a private mapping of
    the compiled ``.cwasm``, written over by restores)."""
    resident, in_slot = 0, False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if not line[:1].isupper():  # a mapping's header: address range, perms, ..., path
            fields = line.split()
            in_slot = fields[1] == "rw-p" and fields[-1].endswith(".cwasm")
        elif in_slot and line.startswith("Rss:"):
            resident += int(line.split()[1])
    return resident / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--interval", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=120, help="seconds at full load first (default 120)")
    parser.add_argument("--out", type=Path, default=REPO / ".benchmarks")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        worker, port = start_server([sys.executable, "-m", "wasmlambda", "serve", "--port", "0",
                                     "--data-dir", f"{scratch}/data"])
        try:
            deploy(port, Path(scratch))
            measured = run_clients(port, 15)
            capacity = sum(measured.values()) / 15
            target = 0.8 * capacity
            print(f"capacity of the mix: {capacity:,.0f} req/s with {CLIENTS} keep-alive clients; warming up for "
                  f"{args.warmup:g} s, then soaking at {target:,.0f} req/s for {args.minutes:g} min",
                  file=sys.stderr, flush=True)
            for name in FUNCTIONS:  # each function at its concurrency cap, then the mix
                run_clients(port, 5, count=RUNNING_PER_FUNCTION, mix=[name])
            run_clients(port, args.warmup, count=2 * CLIENTS)
            deploy(port, Path(scratch))  # every slot used so far closed once (see the docstring)
            run_clients(port, 15)
            samples: list[dict[str, float]] = []
            results: Counter[int] = Counter()
            done = threading.Event()

            def load() -> None:
                results.update(run_clients(port, args.minutes * 60, CLIENTS / target))
                done.set()

            started = time.monotonic()
            threading.Thread(target=load, daemon=True).start()
            while not done.is_set():
                figures = sample(worker.pid, port)
                figures["t_s"] = round(time.monotonic() - started)
                samples.append(figures)
                print(json.dumps(figures), file=sys.stderr, flush=True)
                done.wait(args.interval)
            samples.append({**sample(worker.pid, port), "t_s": round(time.monotonic() - started)})
        finally:
            stop_server(worker)
    report = render(samples, capacity, target, results, args.minutes)
    (args.out / "soak.md").write_text(report)
    plot(samples, args.out / "soak.png")
    print(report)
    return 0


def verdict(samples: list[dict[str, float]], key: str, tolerance: float) -> tuple[float, float, bool]:
    """(at the start, at the end, flat?): medians of the soak's first and last minute (under load:
    the final sample, taken after the clients left, is not one of them)."""
    under_load = samples[:-1] or samples
    warm = [s[key] for s in under_load if s["t_s"] < 60]
    end = [s[key] for s in under_load if s["t_s"] >= under_load[-1]["t_s"] - 60]
    before, after = statistics.median(warm), statistics.median(end)
    return before, after, after - before <= tolerance


def render(samples: list[dict[str, float]], capacity: float, target: float, results: Counter[int],
           minutes: float) -> str:
    seconds = samples[-1]["t_s"] or 1
    lines = [f"Soak: after a warm-up at full load, {minutes:g} min at 80 % of capacity "
             f"({target:,.0f} of {capacity:,.0f} req/s, {CLIENTS} "
             f"keep-alive http.client clients); answered {sum(results.values()):,} "
             f"({sum(results.values()) / seconds:,.0f}/s) by status: "
             + ", ".join(f"{status or 'no answer'}: {count:,}" for status, count in sorted(results.items())), "",
             "| t (s) | RSS (MB) | of it, sandbox slots (MB) | descriptors | of them, not instances' | threads "
             "| idle instances | busy | most live at once | invocations |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in samples:
        s["other_fds"] = other_descriptors(s)
        lines.append(f"| {s['t_s']:.0f} | {s['rss_mb']:.1f} | {s['slots_mb']:.1f} | {s['fds']:.0f} "
                     f"| {s['other_fds']:.0f} | {s['threads']:.0f} | {s['idle_instances']:.0f} "
                     f"| {s['busy_instances']:.0f} | {s['high_water']:.0f} | {s['invocations']:,.0f} |")
    lines.append("")
    for key, tolerance, unit in (("rss_mb", 10.0, "MB"), ("other_fds", 4, ""), ("threads", 2, "")):
        before, after, flat = verdict(samples, key, tolerance)
        lines.append(f"* {key}: {before:.1f}{unit} in the first minute, {after:.1f}{unit} at the end: "
                     f"{'flat' if flat else 'GROWING'} (tolerance {tolerance:g}{unit})")
    return "\n".join(lines) + "\n"


def plot(samples: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = [s["t_s"] / 60 for s in samples]
    figure, (memory, counts) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    memory.plot(times, [s["rss_mb"] for s in samples], marker=".")
    memory.set_ylabel("RSS (MB)")
    memory.set_ylim(bottom=0)
    memory.set_title("wasmlambda worker under `make soak`")
    for key in ("fds", "threads", "idle_instances"):
        counts.plot(times, [s[key] for s in samples], marker=".", label=key)
    counts.set_ylabel("count")
    counts.set_xlabel("minutes")
    counts.set_ylim(bottom=0)
    counts.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
