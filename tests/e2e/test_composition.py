"""Functions calling functions: invoke, map, limits, and the bill."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

from ..conftest import EXAMPLES, FunctionFactory
from .conftest import WorkerProcess

pytestmark = pytest.mark.e2e

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]


def host_wordcount(text: str) -> dict[str, object]:
    spec = importlib.util.spec_from_file_location("wordcount_reference", EXAMPLES / "wordcount" / "f.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result: dict[str, object] = module.f({"text": text, "top": None})
    return result


def test_mapreduce_matches_plain_python_and_runs_in_parallel(worker: WorkerProcess,
                                                             make_function: FunctionFactory) -> None:
    worker.deploy("wordcount", EXAMPLES / "wordcount")
    worker.deploy("mapreduce", EXAMPLES / "mapreduce")
    rng = random.Random(7)
    text = " ".join(rng.choice(WORDS) for _ in range(20_000))
    reply = worker.run("mapreduce", {"text": text, "chunks": 64, "top": None})
    assert reply.status == 200, reply.body
    expected = host_wordcount(text)
    got = reply.json()
    assert (got["total"], got["distinct"]) == (expected["total"], expected["distinct"])
    assert sorted(map(tuple, got["top"])) == sorted(map(tuple, expected["top"]))  # type: ignore[call-overload]
    assert reply.headers["x-wasmlambda-nested-calls"] == "64"
    stats = worker.request("GET", "/stats").json()["functions"]["wordcount"]
    # Parallel callees need several instances at once; a serial map would reuse one.
    assert stats["invocations"] == 64 and stats["cold_starts"] > 1

    # the same, observed from inside: each instance draws a token once
    probe = make_function("probe", "import random\ntoken = None\ndef f(event):\n    global token\n"
                                   "    token = token or random.random()\n    import time\n    time.sleep(0.05)\n"
                                   "    return token\n")
    fan = make_function("fan", "from wasmlambda_guest import map\ndef f(event):\n"
                               "    return len(set(map('probe', [None] * 16)))\n")
    worker.deploy("probe", probe)
    worker.deploy("fan", fan)
    assert worker.run("fan").json() > 1


def test_pipeline_and_its_bill(worker: WorkerProcess) -> None:
    for name in ("wordcount", "render", "pipeline"):
        assert worker.deploy(name, EXAMPLES / name).status == 201
    reply = worker.run("pipeline", {"title": "Words", "text": "b a b c b a", "top": 2})
    assert reply.status == 200, reply.body
    html = reply.json()
    assert "<h1>Words</h1>" in html and "<li>b (3)</li>" in html and "<li>a (2)</li>" in html
    assert reply.headers["x-wasmlambda-nested-calls"] == "2"
    explained = worker.request("GET", f"/billing/{reply.headers['x-request-id']}").json()
    assert explained["cost_pusd"] == int(reply.headers["x-wasmlambda-cost-pusd"])
    nested = next(line for line in explained["price_lines"] if line["item"] == "nested calls")
    assert nested["cost_pusd"] > 0
    assert sum(line["cost_pusd"] for line in explained["price_lines"]) == explained["cost_pusd"]
    # the callees are billed to the pipeline's request, not as requests of their own
    rows = {row["bucket"]: row for row in worker.request("GET", "/billing").json()["rows"]}
    assert set(rows) == {"pipeline"} and rows["pipeline"]["cost_pusd"] == explained["cost_pusd"]


def test_limits_and_failures(tmp_path: Path, make_function: FunctionFactory) -> None:
    worker = WorkerProcess(tmp_path / "data", tmp_path / "log", env={"WASMLAMBDA_MAX_CALL_DEPTH": "2",
                                                                    "WASMLAMBDA_MAX_FAN_OUT": "8"})
    worker.start()
    try:
        caller = """
            from wasmlambda_guest import ServiceError, invoke, map

            def f(event):
                try:
                    if event["op"] == "map":
                        return map(event["to"], event["events"])
                    return invoke(event["to"], event.get("event"))
                except (ServiceError, TypeError) as exc:
                    return {"error": str(exc)}
        """
        for name in ("a", "b", "c"):
            worker.deploy(name, make_function(name, caller))
        worker.deploy("boom", make_function("boom", "def f(event):\n    raise ValueError('no')\n"))
        worker.deploy("echo", EXAMPLES / "echo")

        def run(event: dict[str, object]) -> object:
            return worker.run("a", event).json()

        assert run({"op": "call", "to": "echo", "event": [1, 2]}) == [1, 2]
        assert run({"op": "map", "to": "echo", "events": [1, 2, 3]}) == [1, 2, 3]
        # b catches the failure of its own call and returns it; a passes it on
        assert run({"op": "call", "to": "b", "event": {"op": "call", "to": "a"}}) == {
            "error": "invoke: call: call cycle: a -> b -> a"}
        deep = run({"op": "call", "to": "b", "event": {"op": "call", "to": "c", "event": {"op": "call", "to": "echo"}}})
        assert deep == {"error": "invoke: call: calls nest deeper than 2 (a -> b -> c -> echo)"}
        assert run({"op": "map", "to": "echo", "events": list(range(9))}) == {
            "error": "invoke: map: map over 9 events; at most 8 are allowed"}
        assert run({"op": "call", "to": "boom"}) == {"error": "invoke: call: boom: GuestError: ValueError: no"}
        assert run({"op": "call", "to": ["echo"]}) == {"error": "invoke takes a function name, not ['echo']"}
        assert run({"op": "call", "to": "echo\0"}) == {"error": "invoke takes a function name, not 'echo\\x00'"}
        assert run({"op": "call", "to": "ghost"}) == {
            "error": "invoke: call: no function named 'ghost' is deployed"}
        assert run({"op": "map", "to": "boom", "events": [1, 2]}) == {
            "error": "invoke: map: map item 0: boom: GuestError: ValueError: no"}
    finally:
        assert worker.stop() == 0


def test_a_failed_map_waits_for_its_running_items_and_bills_them(worker: WorkerProcess,
                                                                  make_function: FunctionFactory) -> None:
    # Item 0 fails at once while item 1 is still running: the map's caller must
    # not end (and have its bill read) before item 1 has finished and added its cost.
    worker.deploy("item", make_function("item", """
        import time

        def f(event):
            if event == "boom":
                raise ValueError("no")
            time.sleep(0.3)
            return event
    """))
    worker.deploy("fanner", make_function("fanner", """
        from wasmlambda_guest import ServiceError, map

        def f(event):
            try:
                return map("item", event)
            except ServiceError as exc:
                return str(exc)
    """))
    reply = worker.run("fanner", ["boom", "slow"])
    assert reply.json() == "invoke: map: map item 0: item: GuestError: ValueError: no"
    assert reply.headers["x-wasmlambda-nested-calls"] == "2"
    explained = worker.request("GET", f"/billing/{reply.headers['x-request-id']}").json()
    assert explained["nested_calls"] == 2
