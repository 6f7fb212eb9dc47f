"""Request context (headers, query, cookies) and response settings."""

from __future__ import annotations

import http.client
import json
import socket

import pytest

from ..conftest import EXAMPLES, FunctionFactory
from .conftest import WorkerProcess

pytestmark = pytest.mark.e2e


def post(worker: WorkerProcess, path: str, event: object, headers: dict[str, str] | None = None
         ) -> http.client.HTTPResponse:
    connection = worker.connection(fresh=True)
    connection.request("POST", path, body=json.dumps(event).encode(), headers=headers or {})
    response = connection.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    connection.close()
    return response


def test_cart_keeps_a_session_in_a_cookie(worker: WorkerProcess) -> None:
    worker.deploy("cart", EXAMPLES / "cart")
    first = post(worker, "/run/cart", {"add": "apple"})
    assert first.status == 201
    cookie = first.getheader("set-cookie")
    assert cookie is not None and cookie.startswith("cart=") and "HttpOnly" in cookie and "Max-Age=604800" in cookie
    session = cookie.split(";")[0]
    assert json.loads(first.body) == {"items": {"apple": 1}}  # type: ignore[attr-defined]
    for event, expected in (({"add": "pear"}, {"apple": 1, "pear": 1}), ({"add": "apple"}, {"apple": 2, "pear": 1}),
                            ({"remove": "pear"}, {"apple": 2}), ({}, {"apple": 2})):
        reply = post(worker, "/run/cart", event, {"Cookie": session})
        assert reply.status == 200 and reply.getheader("set-cookie") is None
        assert json.loads(reply.body) == {"items": expected}  # type: ignore[attr-defined]
    other = post(worker, "/run/cart", {})
    assert other.status == 201 and json.loads(other.body) == {"items": {}}  # type: ignore[attr-defined]


def test_context_sees_the_request_and_sets_the_response(worker: WorkerProcess,
                                                        make_function: FunctionFactory) -> None:
    worker.deploy("mirror", make_function("mirror", """
        from wasmlambda_guest import context

        def f(event):
            context.response.status = 202
            context.response.headers["X-Mirror"] = context.headers.get("x-probe", "none")
            return {"method": context.method, "path": context.path, "query": context.query,
                    "agent": context.headers.get("user-agent"), "cookies": context.cookies}
    """))
    reply = post(worker, "/run/mirror?q=wasm&page=2", None, {"X-Probe": "yes", "User-Agent": "probe/1",
                                                              "Cookie": "a=1; b=two"})
    assert reply.status == 202 and reply.getheader("x-mirror") == "yes"
    assert json.loads(reply.body) == {  # type: ignore[attr-defined]
        "method": "POST", "path": "/run/mirror", "query": {"q": "wasm", "page": "2"}, "agent": "probe/1",
        "cookies": {"a": "1", "b": "two"}}


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ('context.response.headers["X-Evil"] = "a\\r\\nInjected: 1"', "contains a line break"),
        ('context.response.headers["Content-Length"] = "0"', "cannot be set by a handler"),
        ('context.response.headers["X-WasmLambda-Cost"] = "0"', "cannot be set by a handler"),
        ("context.response.status = 99", "status must be an integer from 200 to 599"),
    ],
)
def test_unsafe_response_settings_are_refused(worker: WorkerProcess, make_function: FunctionFactory,
                                              setting: str, message: str) -> None:
    worker.deploy("sly", make_function("sly", f"from wasmlambda_guest import context\n\ndef f(event):\n"
                                              f"    {setting}\n    return 1\n"))
    reply = worker.run("sly")
    assert reply.status == 502 and message in reply.error["message"]


@pytest.mark.parametrize("worker", ["fast", "h11"], indirect=True)
@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_statuses_send_no_body(worker: WorkerProcess, make_function: FunctionFactory, status: int) -> None:
    worker.deploy("empty", make_function("empty", f"""
        from wasmlambda_guest import context

        def f(event):
            context.response.status = {status}
            return "this must not reach the client"
    """))
    worker.deploy("echo", EXAMPLES / "echo")
    with socket.create_connection(("127.0.0.1", worker.port), timeout=10) as raw:
        # Both requests on one connection: a stray body would be read as the next answer.
        raw.sendall(b"POST /run/empty HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nnull"
                    b"POST /run/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\n7")
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    first, _, rest = answer.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 %d " % status) and b"content-length" not in first.lower()
    assert rest.startswith(b"HTTP/1.1 200 ") and rest.endswith(b"\r\n\r\n7")
