"""Native (C) functions beside Python ones, over the same API."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..conftest import EXAMPLES
from .conftest import WorkerProcess

pytestmark = pytest.mark.e2e

FAILING_C = """
#include "wasmlambda.h"

static int handler(const wl_request *request, wl_buffer *response) {
    if (request->event_len > 0 && request->event[0] == '"')
        return wl_fail(response, "strings are not welcome here");
    return wl_appendf(response, "{\\"bytes\\": %zu, \\"request\\": \\"%s\\", \\"timeout_ms\\": %d}",
                      request->event_len, request->request_id, request->timeout_ms);
}

WL_HANDLER(handler)
"""


def test_hello_c_beside_python(worker: WorkerProcess) -> None:
    assert worker.deploy("hello_c", EXAMPLES / "hello_c").status == 201
    assert worker.deploy("hello", EXAMPLES / "hello").status == 201
    first = worker.run("hello_c", {"name": "alice"})
    assert (first.status, first.body) == (200, b'{"hello": "alice"}')
    assert first.headers["x-wasmlambda-start"] == "cold"
    again = worker.run("hello_c", {"name": 'quote " and \\ slash'})
    assert again.json() == {"hello": 'quote " and \\ slash'} and again.headers["x-wasmlambda-start"] == "warm"
    assert worker.run("hello_c", {}).json() == {"hello": "world"}
    assert worker.run("hello", {"name": "py"}).json() == {"hello": "py"}
    described = worker.request("GET", "/registry/hello_c").json()
    assert described["kind"] == "wasm" and "snapshot" not in described


def test_c_errors_and_request_fields(worker: WorkerProcess, tmp_path: Path) -> None:
    (tmp_path / "cfn").mkdir()
    (tmp_path / "cfn" / "f.c").write_text(FAILING_C)
    (tmp_path / "cfn" / "wasmlambda.toml").write_text("[limits]\ntimeout_ms = 1234\n")
    assert worker.deploy("cfn", tmp_path / "cfn").status == 201
    reply = worker.run("cfn", [1, 2])
    assert reply.json() == {"bytes": 6, "request": reply.headers["x-request-id"], "timeout_ms": 1234}
    failed = worker.run("cfn", "x")
    assert failed.status == 502
    assert failed.error["type"] == "GuestError" and failed.error["message"] == "Error: strings are not welcome here"


def test_native_functions_survive_restart(worker: WorkerProcess) -> None:
    worker.deploy("hello_c", EXAMPLES / "hello_c")
    worker.stop()
    worker.start()
    assert worker.run("hello_c", {"name": "back"}).json() == {"hello": "back"}


def test_bad_native_modules_are_rejected(worker: WorkerProcess, tmp_path: Path) -> None:
    import io
    import tarfile

    def package(wasm: bytes) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            info = tarfile.TarInfo("f.wasm")
            info.size = len(wasm)
            tar.addfile(info, io.BytesIO(wasm))
        return buffer.getvalue()

    reply = worker.request("POST", "/registry/junk", package(b"\0asm garbage"))
    assert reply.status == 400 and "not a usable WebAssembly module" in reply.error["message"]
    empty_module = b"\0asm\x01\0\0\0"
    reply = worker.request("POST", "/registry/empty", package(empty_module))
    assert reply.status == 400
    assert reply.error["message"] == ("f.wasm does not export memory, wl_handle, wl_reserve: "
                                      "build it with guest_sdk against wasmlambda.h")


INVOKING_C = """
#include "wasmlambda.h"

/* {"to": NAME, "event": EVENT}, in that order: invoke NAME with EVENT. */
static int handler(const wl_request *request, wl_buffer *response) {
    char to[64];
    if (!wl_json_string(request->event, request->event_len, "to", to, sizeof to))
        return wl_fail(response, "the event needs a \\"to\\" string");
    static const char key[] = "\\"event\\": ";
    const char *event = "null";
    size_t len = 4;
    for (size_t i = 0; i + sizeof key < request->event_len; i++) {
        if (memcmp(request->event + i, key, sizeof key - 1) == 0) {
            event = request->event + i + sizeof key - 1;
            len = request->event_len - (i + sizeof key - 1) - 1;  /* up to the closing brace */
            break;
        }
    }
    wl_buffer result = {0};
    int status = wl_invoke(to, event, len, &result);
    if (status != WL_OK) {
        wl_append_bytes(&result, "", 1);
        status = wl_fail(response, result.data);
    } else {
        wl_append(response, "{\\"got\\": ");
        wl_append_bytes(response, result.data, result.len);
        status = wl_append(response, "}");
    }
    free(result.data);
    return status;
}

WL_HANDLER(handler)
"""


def test_c_functions_invoke_python_and_c_ones(worker: WorkerProcess, tmp_path: Path) -> None:
    (tmp_path / "caller").mkdir()
    (tmp_path / "caller" / "f.c").write_text(INVOKING_C)
    (tmp_path / "boom").mkdir()
    (tmp_path / "boom" / "f.py").write_text("def f(event):\n    raise ValueError('no')\n")
    for name, folder in (("caller", tmp_path / "caller"), ("hello", EXAMPLES / "hello"),
                         ("hello_c", EXAMPLES / "hello_c"), ("boom", tmp_path / "boom")):
        assert worker.deploy(name, folder).status == 201
    assert worker.run("caller", {"to": "hello", "event": {"name": "ç"}}).json() == {"got": {"hello": "ç"}}
    reply = worker.run("caller", {"to": "hello_c", "event": {"name": "c"}})
    assert reply.json() == {"got": {"hello": "c"}}
    assert reply.headers["x-wasmlambda-nested-calls"] == "1"
    for to, message in (("boom", "invoke: call: boom: GuestError: ValueError: no"),
                        ("ghost", "invoke: call: no function named 'ghost' is deployed"),
                        ("caller", "invoke: call: call cycle: caller -> caller")):
        failed = worker.run("caller", {"to": to, "event": {"to": "caller"}})
        assert (failed.status, failed.error["message"]) == (502, f"Error: {message}"), to


def test_python_caller_of_a_c_function_that_answers_no_json(worker: WorkerProcess, tmp_path: Path) -> None:
    # The host passes an invoked function's result through untouched; the
    # Python caller is the one to say that a C callee wrote something else.
    (tmp_path / "sloppy").mkdir()
    (tmp_path / "sloppy" / "f.c").write_text("""#include "wasmlambda.h"

static int sloppy(const wl_request *request, wl_buffer *response) {
    return wl_append(response, request->event_len > 4 ? "[1] and more" : "not json");
}

WL_HANDLER(sloppy)
""")
    (tmp_path / "asker").mkdir()
    (tmp_path / "asker" / "f.py").write_text(
        "from wasmlambda_guest import ServiceError, invoke\n\n"
        "def f(event):\n"
        "    try:\n"
        "        return invoke('sloppy', event)\n"
        "    except ServiceError as exc:\n"
        "        return str(exc)\n")
    for name in ("sloppy", "asker"):
        assert worker.deploy(name, tmp_path / name).status == 201
    assert worker.run("asker", None).json() == "the answer is not valid JSON: not json"
    assert worker.run("asker", "longer").json() == "the answer is not valid JSON: [1] and more"
