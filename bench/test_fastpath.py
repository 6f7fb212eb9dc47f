"""Hot-path pieces, each fast (Cython) beside its pure-Python twin and the
reference library: HTTP parse and serialise (h11), the meter, snapshot
restore's delta apply."""

from __future__ import annotations

import ctypes
from types import ModuleType

import h11
import pytest

from wasmlambda import _fastpath
from wasmlambda.http import _parser_py
from wasmlambda.kernel import _meter_py
from wasmlambda.sandbox import Runtime, Snapshot, _delta_py

REQUEST = (b"POST /run/hello HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n"
           b"Content-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"name\": \"alice\"}")
HEADERS = [(b"content-type", b"application/json"), (b"x-request-id", b"0123456789abcdef"),
           (b"x-wasmlambda-start", b"warm"), (b"x-wasmlambda-duration-us", b"291")]
BODY = b'{"hello": "alice"}'


def twins(name: str, pure: ModuleType) -> list[object]:
    return [pytest.param(pure, id="python"), pytest.param(_fastpath.pick(name, pure), id="cython")]


@pytest.mark.parametrize("parser", twins("_parser", _parser_py))
def test_parse(benchmark, parser: ModuleType) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = "http-parse"
    instance = parser.RequestParser(lambda path: 1 << 20)

    def parse() -> object:
        instance.feed(REQUEST)
        return instance.next()

    assert benchmark(parse).body == b'{"name": "alice"}'


def test_parse_h11(benchmark) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = "http-parse"

    def parse() -> object:
        connection = h11.Connection(h11.SERVER)
        connection.receive_data(REQUEST)
        connection.next_event()
        data = connection.next_event()
        connection.next_event()
        return data

    assert benchmark(parse).data == b'{"name": "alice"}'


@pytest.mark.parametrize("parser", twins("_parser", _parser_py))
def test_serialise(benchmark, parser: ModuleType) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = "http-serialise"
    assert benchmark(parser.serialize_response, 200, HEADERS, BODY, True).endswith(BODY)


def test_serialise_h11(benchmark) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = "http-serialise"

    def connection_awaiting_response() -> tuple[tuple[h11.Connection], dict[str, object]]:
        connection = h11.Connection(h11.SERVER)
        connection.receive_data(REQUEST)
        while connection.next_event() is not h11.NEED_DATA:
            pass
        return (connection,), {}

    def serialise(connection: h11.Connection) -> bytes:
        parts = [connection.send(h11.Response(status_code=200, headers=[*HEADERS, (b"content-length", b"18")])),
                 connection.send(h11.Data(data=BODY)), connection.send(h11.EndOfMessage())]
        return b"".join(part or b"" for part in parts)

    result = benchmark.pedantic(serialise, setup=connection_awaiting_response, rounds=5000)
    assert result.endswith(BODY)


@pytest.mark.parametrize("meter", twins("_meter", _meter_py))
def test_meter(benchmark, meter: ModuleType) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = "meter"
    counters = meter.Counters()

    def record() -> object:
        prices = meter.price_call(128, 291, 0, 16_666_667, 200_000, 0)
        counters.record(False, False, 330, 291, prices[0])
        return prices

    assert benchmark(record)[0] == 200_606


@pytest.fixture(scope="module")
def hello_snapshot(runtime: Runtime) -> Snapshot:
    from pathlib import Path

    hello = Path(__file__).resolve().parent.parent / "examples" / "hello"
    return runtime.snapshot(hello, "hello", 128 << 20, 5000)


@pytest.mark.parametrize("delta", twins("_delta", _delta_py))
def test_apply_delta(benchmark, delta: ModuleType, hello_snapshot: Snapshot) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = "snapshot-apply"
    memory = ctypes.create_string_buffer(hello_snapshot.pages * 65536)
    address = ctypes.addressof(memory)
    benchmark(delta.apply, address, hello_snapshot.ranges, hello_snapshot.payload)
