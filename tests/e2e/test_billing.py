"""Billing end to end: headers, ledger, aggregates, crash semantics, the CLI."""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from wasmlambda.kernel import dollars

from ..conftest import EXAMPLES, FunctionFactory
from .conftest import Reply, WorkerProcess, wait_until

pytestmark = pytest.mark.e2e

COST_HEADERS = ("x-wasmlambda-billed-us", "x-wasmlambda-memory-mb", "x-wasmlambda-fuel", "x-wasmlambda-cost",
                "x-wasmlambda-cost-pusd", "x-wasmlambda-queue-us", "x-wasmlambda-restore-us", "x-wasmlambda-run-us")


def deploy_mix(worker: WorkerProcess, make_function: FunctionFactory) -> None:
    worker.deploy("hello", EXAMPLES / "hello")
    worker.deploy("hello_c", EXAMPLES / "hello_c")
    worker.deploy("compute", EXAMPLES / "compute")
    worker.deploy("boom", make_function("boom", "def f(event):\n    raise ValueError(event)\n",
                                        toml="[limits]\nmemory_mb = 64\n"))
    worker.deploy("fresh", make_function("fresh", "def f(event):\n    return event\n",
                                         toml='[function]\nisolation = "fresh"\n[limits]\nmemory_mb = 256\n'))


MIX = [("hello", {"name": "x"}), ("hello_c", {"name": "y"}), ("compute", {"n": 6}), ("boom", 1), ("fresh", [1]),
       ("hello", {"name": "z"}), ("hello", None), ("echo-missing", 0)]


def test_ten_thousand_calls_bill_exactly(worker: WorkerProcess, make_function: FunctionFactory) -> None:
    deploy_mix(worker, make_function)
    header_totals: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def client(offset: int) -> None:
        connection = worker.connection(fresh=True)
        try:
            for index in range(offset, 10_000, 4):
                name, event = MIX[index % len(MIX)]
                connection.request("POST", f"/run/{name}", body=json.dumps(event).encode())
                reply = Reply(connection.getresponse())
                with lock:
                    statuses[reply.status] += 1
                    if reply.status != 404:
                        header_totals[name] += int(reply.headers["x-wasmlambda-cost-pusd"])
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(statuses.values()) == 10_000
    assert statuses[404] == 1250 and statuses[502] == 1250 and statuses[200] == 7500

    rows = worker.request("GET", "/billing?group=fn").json()["rows"]
    ledger_totals = {row["bucket"]: row["cost_pusd"] for row in rows}
    assert ledger_totals == dict(header_totals)  # exact, per function, to the pico-dollar
    assert sum(row["invocations"] for row in rows) == 8750  # unknown functions are not billed
    by_minute = worker.request("GET", "/billing?group=minute").json()["rows"]
    assert sum(row["cost_pusd"] for row in by_minute) == sum(header_totals.values())

    metrics = worker.request("GET", "/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(metrics.body.decode())}
    cost_samples = {s.labels["function"]: s.value for s in families["wasmlambda_cost_picodollars"].samples}
    assert cost_samples == {name: float(total) for name, total in header_totals.items()}

    table = subprocess.run([sys.executable, "-m", "wasmlambda", "billing"], capture_output=True, text=True,
                           env=worker.cli_env(), timeout=60)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["FUNCTION", "CALLS", "ERRORS", "BILLED_MS"]
    assert "AT_1MS_USD" in lines[0] and "AT_100MS_USD" in lines[0]
    total = next(line for line in lines if line.startswith("TOTAL")).split()
    assert total[1] == "8750" and total[2] == "1250"
    assert total[4] == dollars(sum(header_totals.values()))


def test_cost_headers_and_explanation(worker: WorkerProcess) -> None:
    worker.deploy("hello", EXAMPLES / "hello")
    reply = worker.run("hello", {"name": "bill"})
    for header in COST_HEADERS:
        assert header in reply.headers, header
    billed = int(reply.headers["x-wasmlambda-billed-us"])
    assert billed == int(reply.headers["x-wasmlambda-cpu-us"]) > 0
    # CPU time of restore + run: never more than their wall time (each rounded up to a whole µs).
    assert billed <= int(reply.headers["x-wasmlambda-restore-us"]) + int(reply.headers["x-wasmlambda-run-us"]) + 2
    assert reply.headers["x-wasmlambda-memory-mb"] == "128"
    assert reply.headers["x-wasmlambda-cost"] == dollars(int(reply.headers["x-wasmlambda-cost-pusd"]))
    explained = worker.request("GET", f"/billing/{reply.headers['x-request-id']}").json()
    assert explained["phases_us"]["billed"] == billed
    assert sum(line["cost_pusd"] for line in explained["price_lines"]) == explained["cost_pusd"]
    assert explained["cost_pusd"] == int(reply.headers["x-wasmlambda-cost-pusd"])
    assert worker.request("GET", "/billing/0000").status == 404
    assert worker.request("GET", "/billing?group=week").status == 400
    assert worker.request("GET", "/billing?since=yesterday").status == 400
    assert worker.request("GET", "/billing?since=1h&fn=hello").json()["rows"][0]["invocations"] == 1


def run_many(worker: WorkerProcess, count: int) -> list[str]:
    return [worker.run("hello", {"name": str(i)}).headers["x-request-id"] for i in range(count)]


def ledger_ids(worker: WorkerProcess) -> set[str]:
    import sqlite3

    with sqlite3.connect(worker.data_dir / "ledger.sqlite3") as connection:
        return {row[0] for row in connection.execute("SELECT request_id FROM invocations")}


def test_kill_9_loses_at_most_the_last_batch(tmp_path: Path) -> None:
    # A long flush interval makes "the last batch" deterministic: the five
    # calls after the flush are exactly what a kill -9 may lose.
    worker = WorkerProcess(tmp_path / "data", tmp_path / "log", env={"WASMLAMBDA_LEDGER_FLUSH_MS": "1500"})
    worker.start("--deploy", str(EXAMPLES / "hello"))
    flushed = run_many(worker, 200)
    wait_until(lambda: ledger_ids(worker) == set(flushed), what="a ledger flush")
    unflushed = run_many(worker, 5)  # well inside the next 1.5 s batch
    assert worker.stop(signal.SIGKILL) == -signal.SIGKILL
    assert ledger_ids(worker) == set(flushed)  # every flushed call, none of the last batch
    assert not set(unflushed) & ledger_ids(worker)


def test_clean_shutdown_loses_nothing(tmp_path: Path) -> None:
    worker = WorkerProcess(tmp_path / "data", tmp_path / "log", env={"WASMLAMBDA_LEDGER_FLUSH_MS": "60000"})
    worker.start("--deploy", str(EXAMPLES / "hello"))
    ids = run_many(worker, 50)
    assert worker.stop(signal.SIGTERM) == 0
    assert ledger_ids(worker) == set(ids)


def test_billing_can_be_off(tmp_path: Path) -> None:
    worker = WorkerProcess(tmp_path / "data", tmp_path / "log", env={"WASMLAMBDA_BILLING": "false"})
    worker.start("--deploy", str(EXAMPLES / "hello"))
    try:
        reply = worker.run("hello", {"name": "free"})
        assert reply.status == 200 and "x-wasmlambda-cost" not in reply.headers
        assert "x-wasmlambda-run-us" in reply.headers
        assert worker.request("GET", "/billing").status == 404
    finally:
        assert worker.stop() == 0
    assert not (worker.data_dir / "ledger.sqlite3").exists()


def test_fuel_metering(tmp_path: Path) -> None:
    worker = WorkerProcess(tmp_path / "data", tmp_path / "log",
                           env={"WASMLAMBDA_METER_FUEL": "true", "WASMLAMBDA_PRICE_MILLION_FUEL_PUSD": "1000"})
    worker.start("--deploy", str(EXAMPLES / "compute"), str(EXAMPLES / "hello_c"))
    try:
        small = worker.run("compute", {"n": 5})
        large = worker.run("compute", {"n": 40})
        assert 0 < int(small.headers["x-wasmlambda-fuel"]) < int(large.headers["x-wasmlambda-fuel"])
        assert int(worker.run("hello_c", {}).headers["x-wasmlambda-fuel"]) > 0
        explained = worker.request("GET", f"/billing/{large.headers['x-request-id']}").json()
        fuel_line = next(line for line in explained["price_lines"] if line["item"] == "fuel")
        assert fuel_line["cost_pusd"] == int(large.headers["x-wasmlambda-fuel"]) * 1000 // 1_000_000
    finally:
        assert worker.stop() == 0


def test_explain_command(worker: WorkerProcess) -> None:
    worker.deploy("hello", EXAMPLES / "hello")
    reply = worker.run("hello", {"name": "why"})
    env = worker.cli_env()
    result = subprocess.run([sys.executable, "-m", "wasmlambda", "explain", reply.headers["x-request-id"]],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"request {reply.headers['x-request-id']}: hello, status 200, cold start")
    assert any(line.strip().startswith("memory-time") for line in lines)
    assert lines[-1].strip().startswith(f"total {int(reply.headers['x-wasmlambda-cost-pusd']):,} p$ = "
                                        f"${reply.headers['x-wasmlambda-cost']}")
    missing = subprocess.run([sys.executable, "-m", "wasmlambda", "explain", "nope"], capture_output=True,
                             text=True, env=env, timeout=60)
    assert missing.returncode == 1 and missing.stderr.startswith("error: NotFound: no invocation")


def test_oversubscription_is_not_billed(tmp_path: Path, make_function: FunctionFactory) -> None:
    # Eight sandbox threads on this machine's cores: under load a call's wall time
    # grows with everyone else's work; what it is billed for (its CPU time) does not.
    worker = WorkerProcess(tmp_path / "data", tmp_path / "log", env={
        "WASMLAMBDA_SANDBOX_THREADS": "8", "WASMLAMBDA_MAX_RUNNING_PER_FUNCTION": "8", "WASMLAMBDA_SPIN_US": "0"})
    worker.start()
    try:
        worker.deploy("crunch", make_function("crunch", """
            def f(event):
                total = 0
                for i in range(1_500_000):
                    total += i
                return total
        """))
        worker.run("crunch")  # warm
        alone = [int(worker.run("crunch").headers["x-wasmlambda-billed-us"]) for _ in range(3)]
        replies: list[Reply] = []
        lock = threading.Lock()

        def call() -> None:
            reply = worker.run("crunch", fresh=True)
            with lock:
                replies.append(reply)

        threads = [threading.Thread(target=call) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(reply.status == 200 for reply in replies)
        run_wall = statistics.median(int(reply.headers["x-wasmlambda-run-us"]) for reply in replies)
        billed = statistics.median(int(reply.headers["x-wasmlambda-billed-us"]) for reply in replies)
        assert run_wall > 2 * statistics.median(alone)  # the threads did wait for cores
        assert billed < 1.5 * statistics.median(alone)  # and nobody was billed for it
        rows = {row["request_id"]: row for row in [
            worker.request("GET", f"/billing/{reply.headers['x-request-id']}").json() for reply in replies]}
        assert all(row["billed_us"] == row["cpu_us"] for row in rows.values())
    finally:
        assert worker.stop() == 0
