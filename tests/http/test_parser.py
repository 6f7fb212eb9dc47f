"""The hot-path HTTP parser: table-driven cases, and a hypothesis
differential test against h11.  Every test runs against both twins."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wasmlambda import _fastpath
from wasmlambda.http import _parser_py
from wasmlambda.http._parser_py import FALLBACK, MAX_HEAD, ParsedRequest, ParseError

IMPLEMENTATIONS = [pytest.param(_parser_py, id="python")]
if _fastpath.is_built("_parser"):
    IMPLEMENTATIONS.append(pytest.param(_fastpath.pick("_parser", _parser_py), id="cython"))

LIMIT = 1000
HELLO = (b"POST /run/hello HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         b"Content-Length: 17\r\n\r\n{\"name\": \"alice\"}")


def parse_all(implementation: ModuleType, data: bytes, chunk: int | None = None) -> list[Any]:
    """Feed ``data`` (in chunks) and collect everything the parser yields."""
    parser = implementation.RequestParser(lambda path: LIMIT)
    results: list[Any] = []
    chunks = [data] if chunk is None else [data[i:i + chunk] for i in range(0, len(data), chunk)]
    for piece in chunks:
        parser.feed(piece)
        while True:
            try:
                item = parser.next()
            except ParseError as exc:
                results.append(("error", exc.status))
                return results
            if item is None:
                break
            results.append(item)
            if item is FALLBACK:
                return results
    return results


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_parses_a_call(implementation: ModuleType) -> None:
    assert parse_all(implementation, HELLO) == [ParsedRequest(
        b"POST", b"/run/hello",
        [(b"host", b"x"), (b"content-type", b"application/json"), (b"content-length", b"17")],
        b'{"name": "alice"}', True)]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("chunk", [1, 2, 7, 64])
def test_pipelined_requests_in_any_chunking(implementation: ModuleType, chunk: int) -> None:
    second = b"GET /status HTTP/1.1\r\nhost: y\r\nConnection: keep-alive, close\r\n\r\n"
    results = parse_all(implementation, HELLO + second + HELLO, chunk)
    assert [(r.method, r.target, r.keep_alive) for r in results] == [
        (b"POST", b"/run/hello", True), (b"GET", b"/status", False), (b"POST", b"/run/hello", True)]
    assert results[1].body == b"" and results[2].body == b'{"name": "alice"}'


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "data",
    [
        b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
        b"GET /x HTTP/1.0\r\n\r\n",
        b"GET /x HTTP/1.1\r\n\r\n",  # no Host: h11 rejects it
        b"GET /x HTTP/1.1\nHost: x\n\n\r\n\r\n",  # bare LF
        b"GET /x HTTP/1.1\nHost: x\n\n",  # bare LF only: must not wait for a CRLF CRLF that never comes
        b"GET /x HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
        b"GET  /x HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        b"GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
        b"\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
def test_anything_unusual_falls_back_to_h11(implementation: ModuleType, data: bytes) -> None:
    assert parse_all(implementation, data) == [FALLBACK]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_limits(implementation: ModuleType) -> None:
    too_big = b"POST /run/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n"
    assert parse_all(implementation, too_big) == [("error", 413)]
    endless_head = b"GET /x HTTP/1.1\r\nHost: x\r\n" + b"X-Filler: yes\r\n" * (MAX_HEAD // 10)
    assert parse_all(implementation, endless_head) == [("error", 431)]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_serialize_response(implementation: ModuleType) -> None:
    data = implementation.serialize_response(404, [(b"content-type", b"application/json")], b"{}", False)
    assert data == (b"HTTP/1.1 404 Not Found\r\nserver: wasmlambda\r\ncontent-length: 2\r\n"
                    b"content-type: application/json\r\nconnection: close\r\n\r\n{}")
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(implementation.serialize_response(200, [], b"hi", True))
    response = client.next_event()
    assert isinstance(response, h11.Response) and response.status_code == 200
    assert client.next_event() == h11.Data(data=b"hi")


# -- differential: whatever the fast parser accepts, h11 accepts identically ---------------------

def h11_parse(data: bytes) -> Any:
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(data)
    try:
        head = connection.next_event()
        if not isinstance(head, h11.Request):
            return None
        body = b""
        while True:
            event = connection.next_event()
            if isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return (head.method, head.target, list(head.headers), body)
            else:
                return None
    except h11.RemoteProtocolError:
        return "rejected"


TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
ODD_CHARS = " \t\r\n\x00\x7f\x80\xff:;,\"()/@"
text = st.text(alphabet=st.sampled_from(TOKEN_CHARS + ODD_CHARS + "?=/"), max_size=12)
names = st.one_of(st.sampled_from(["Host", "Content-Length", "Connection", "Content-Type", "Transfer-Encoding",
                                   "Expect", "X-Custom"]), text)
values = st.one_of(st.sampled_from(["close", "keep-alive", "chunked", "5", " 3 ", "", "a b", "\tx\t"]), text)


clean_text = st.text(alphabet=st.sampled_from(TOKEN_CHARS), min_size=1, max_size=10)
clean_values = st.one_of(clean_text, st.sampled_from(["a b", " padded\t", "", "ü", "close", "1"]))


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """Half the time a well-formed request, half the time one with odd parts."""
    clean = draw(st.booleans())
    method = draw(st.sampled_from(["GET", "POST", "DELETE"]) if clean else st.one_of(clean_text, text))
    target = draw(st.sampled_from(["/run/hello", "/registry/?a=b", "*", "/a%20b"]) if clean else text)
    version = draw(st.sampled_from(["HTTP/1.1"] if clean else ["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "http/1.1"]))
    newline = draw(st.sampled_from(["\r\n"] if clean else ["\r\n", "\n"]))
    pair = st.tuples(clean_text, clean_values) if clean else st.tuples(names, values)
    headers = draw(st.lists(pair, max_size=5))
    body = draw(st.binary(max_size=12))
    if clean or draw(st.booleans()):
        headers.append(("Host", "example"))
    if draw(st.booleans()):
        headers.append(("Content-Length", str(len(body))))
    elif clean:
        body = b""
    draw(st.randoms()).shuffle(headers)
    head = f"{method} {target} {version}{newline}" + "".join(f"{n}: {v}{newline}" for n, v in headers) + newline
    return head.encode("utf-8" if clean else "latin-1") + body


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=requests(), chunk=st.integers(min_value=1, max_value=64))
def test_agrees_with_h11(implementation: ModuleType, data: bytes, chunk: int) -> None:
    ours = parse_all(implementation, data)
    assert parse_all(_parser_py, data) == ours  # the twins agree with each other
    assert parse_all(implementation, data, chunk) == ours  # and chunking changes nothing
    theirs = h11_parse(data)
    if ours and isinstance(ours[0], ParsedRequest):
        request = ours[0]
        assert theirs == (request.method, request.target, request.headers, request.body)
    elif isinstance(theirs, tuple):
        assert ours == [FALLBACK]  # h11 takes a request we do not: handed over, never dropped or stalled
