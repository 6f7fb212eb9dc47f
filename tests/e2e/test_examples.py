"""Every example deploys through the worker and answers as its README says."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from ..conftest import EXAMPLES
from .conftest import WorkerProcess

pytestmark = pytest.mark.e2e


def host_handler(example: str) -> Any:
    """The example's f() run by the host interpreter, as a reference."""
    spec = importlib.util.spec_from_file_location(f"example_{example}", EXAMPLES / example / "f.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.f


CASES: dict[str, list[tuple[Any, Any]]] = {
    "hello": [({"name": "alice"}, {"hello": "alice"}), (None, {"hello": "world"})],
    "hello_c": [({"name": "alice"}, {"hello": "alice"}), ({}, {"hello": "world"})],
    "echo": [({"any": ["json", 1, None]}, {"any": ["json", 1, None]})],
    "counter": [({}, {"count": 1}), (None, {"count": 2}), ({"by": 5}, {"count": 7})],
    "wordcount": [
        ({"text": "to be or not to be", "top": 2}, {"total": 6, "distinct": 4, "top": [["to", 2], ["be", 2]]}),
        ({"text": "Don't stop, don't!"}, {"total": 3, "distinct": 2, "top": [["don't", 2], ["stop", 1]]}),
    ],
    "json_transform": [(
        {"records": [{"dept": "eng", "salary": 10}, {"dept": "ops", "salary": 4}, {"dept": "eng", "salary": 5}],
         "group_by": "dept", "sum": "salary"},
        {"groups": [{"dept": "eng", "count": 2, "salary": 15, "mean": 7.5},
                    {"dept": "ops", "count": 1, "salary": 4, "mean": 4.0}]},
    )],
}


def test_every_example_is_covered() -> None:
    examples = sorted(path.name for path in EXAMPLES.iterdir() if path.is_dir())
    # compute and render: below; mapreduce, pipeline: test_composition; cart: test_sessions;
    # flask_app, wsgi_echo: test_openlambda; sse_clock, csv_export, async_fanout, starlette_app: test_streaming
    assert examples == sorted([*CASES, "compute", "render", "mapreduce", "pipeline", "cart", "flask_app",
                               "wsgi_echo", "sse_clock", "csv_export", "async_fanout", "starlette_app"])
    for example in examples:
        assert (EXAMPLES / example / "README.md").read_text().startswith(f"{example} — ")


@pytest.mark.parametrize("example", sorted(CASES))
def test_example(worker: WorkerProcess, example: str) -> None:
    assert worker.deploy(example, EXAMPLES / example).status == 201
    for event, expected in CASES[example]:
        reply = worker.run(example, event)
        assert (reply.status, reply.json()) == (200, expected)


def test_compute_matches_host_python(worker: WorkerProcess) -> None:
    worker.deploy("compute", EXAMPLES / "compute")
    for event in ({"n": 8, "seed": 1}, {"n": 48, "seed": 7}):
        assert worker.run("compute", event).json() == host_handler("compute")(event)
    reply = worker.run("compute", {"n": 0})
    assert reply.status == 502 and reply.error["message"] == "ValueError: n must be between 1 and 400"


def test_render_uses_the_vendored_library(worker: WorkerProcess) -> None:
    assert worker.deploy("render", EXAMPLES / "render").status == 201
    html = worker.run("render", {"title": "Menu", "items": ["tea", "<cake>"]}).json()
    assert html.startswith("<!doctype html>")
    assert "<title>Menu</title>" in html
    assert "<li>tea</li>" in html and "<li>&lt;cake&gt;</li>" in html  # chevron escapes HTML
    assert "Nothing here yet." in worker.run("render", {"title": "Empty"}).json()


def test_render_from_the_cli(worker: WorkerProcess) -> None:
    from .test_cli import cli

    assert cli(worker, "deploy", str(EXAMPLES / "render")).returncode == 0
    result = cli(worker, "invoke", "render", json.dumps({"title": "CLI", "items": ["a"]}))
    assert result.returncode == 0
    assert "<h1>CLI</h1>" in json.loads(result.stdout)


def test_serve_deploys_every_example_at_startup(tmp_path: Path) -> None:
    # What `make serve` runs: `wasmlambda serve --deploy examples/*/`.
    process = WorkerProcess(tmp_path / "data", tmp_path / "log")
    examples = sorted(path for path in EXAMPLES.iterdir() if path.is_dir())
    process.start("--deploy", *map(str, examples))
    try:
        listed = process.request("GET", "/registry/").json()["functions"]
        assert sorted(fn["name"] for fn in listed) == [path.name for path in examples]
        assert process.run("hello", {"name": "alice"}).body == b'{"hello": "alice"}'
    finally:
        assert process.stop() == 0
