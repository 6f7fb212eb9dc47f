"""Invocation logs: kept per function, readable by request, and inline on demand."""

from __future__ import annotations

import pytest

from ..conftest import FunctionFactory
from .conftest import WorkerProcess

pytestmark = pytest.mark.e2e

CHATTY = """
    from wasmlambda_guest import context, log

    def f(event):
        print("got", event)
        log("request", context.request_id)
        if event == "boom":
            raise ValueError("boom")
        return event
"""


def test_logs_by_function_and_request(worker: WorkerProcess, make_function: FunctionFactory) -> None:
    worker.deploy("chatty", make_function("chatty", CHATTY))
    first = worker.run("chatty", "one")
    rid = first.headers["x-request-id"]
    assert len(rid) == 16
    second = worker.run("chatty", "two")
    assert second.headers["x-request-id"] != rid

    everything = worker.request("GET", "/logs/chatty").json()
    assert [line["line"] for line in everything["lines"]] == [
        "got one", f"request {rid}", "got two", f"request {second.headers['x-request-id']}"]
    mine = worker.request("GET", f"/logs/chatty?request_id={rid}").json()["lines"]
    assert [line["line"] for line in mine] == ["got one", f"request {rid}"]
    after = worker.request("GET", f"/logs/chatty?since={everything['lines'][1]['seq']}").json()
    assert [line["line"] for line in after["lines"]] == ["got two", f"request {second.headers['x-request-id']}"]
    assert after["next"] == everything["next"]


def test_logs_inline_and_on_errors(worker: WorkerProcess, make_function: FunctionFactory) -> None:
    worker.deploy("chatty", make_function("chatty", CHATTY))
    reply = worker.request("POST", "/run/chatty?logs=true", '"hi"')
    rid = reply.headers["x-request-id"]
    assert reply.json() == {"request_id": rid, "logs": f"got hi\nrequest {rid}\n", "result": "hi"}
    failed = worker.request("POST", "/run/chatty?logs=1", '"boom"')
    assert failed.status == 502
    assert failed.error["logs"].startswith("got boom\n")
    assert "ValueError: boom" in failed.error["logs"]
    lines = worker.request("GET", f"/logs/chatty?request_id={failed.headers['x-request-id']}").json()["lines"]
    assert lines[-1]["line"] == "ValueError: boom"


def test_logs_errors(worker: WorkerProcess, make_function: FunctionFactory) -> None:
    assert worker.request("GET", "/logs/nobody").status == 404
    worker.deploy("chatty", make_function("chatty", CHATTY))
    assert worker.request("GET", "/logs/chatty?since=abc").status == 400
    assert worker.request("GET", "/logs/chatty").json() == {"function": "chatty", "lines": [], "next": 0}


def test_output_is_capped_per_call_and_per_function(worker: WorkerProcess, make_function: FunctionFactory) -> None:
    worker.deploy("loud", make_function("loud", """
        def f(event):
            print("start")
            print("x" * event)
            return len("x" * event)
    """))
    # 50 MB of print: the call succeeds, and its logs say what was cut (the guest kept 1 MiB).
    huge = worker.request("POST", "/run/loud?logs=true", str(50 << 20))
    assert huge.status == 200 and huge.json()["result"] == 50 << 20
    logs = huge.json()["logs"]
    assert logs.startswith("start\nxxx") and len(logs) < 70_000
    assert "characters of this call's output were cut" in logs
    for _ in range(40):  # 8 MB each: the worker keeps at most 1 MiB of the function's lines
        assert worker.run("loud", 8 << 20).status == 200
    lines = worker.request("GET", "/logs/loud").json()["lines"]
    assert sum(len(line["line"]) for line in lines) <= 1 << 20
    assert lines[-1]["line"].startswith("[wasmlambda: ")
    page = worker.request("GET", "/logs/loud?limit=2").json()
    assert len(page["lines"]) == 2 and page["next"] == page["lines"][-1]["seq"]
