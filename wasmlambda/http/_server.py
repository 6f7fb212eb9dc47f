"""The Trio server loop: sockets in, HTTP/1.1 parsing, the API in between.

Theory of operation: one task per connection.  With ``protocol="fast"`` it
drives the hot-path parser (``_parser``: Cython, or its pure-Python twin):
feed bytes until a whole request is buffered, let the API answer, serialise
the response, repeat while the client keeps the connection alive (requests
may be pipelined).  When the fast parser meets anything outside its narrow
grammar it answers FALLBACK, and the connection's buffered bytes go to an
``h11.Connection``, which serves the rest of that connection; with
``protocol="h11"`` every connection starts there.  A protocol error gets a
400 and the connection closes; an oversized body gets a 413 before it is
read; an idle keep-alive connection is closed after ``KEEPALIVE_TIMEOUT_S``.
"""

from __future__ import annotations

import contextlib
import socket
import traceback
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from http import HTTPStatus

import h11
import trio

from ..errors import ConfigError
from ._api import Api
from ._messages import Request, Response
from ._parser import FALLBACK, ParsedRequest, ParseError, RequestParser, serialize_response

KEEPALIVE_TIMEOUT_S = 60
READ_SIZE = 65536
SERVER_HEADER = (b"server", b"wasmlambda")
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


class _Reject(Exception):
    """The request cannot be served; answer with this status and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def open_listeners(host: str, port: int) -> list[trio.SocketListener]:
    """Bind before serving, so a busy port is one clear error at startup."""
    try:
        return await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def bound_address(listeners: list[trio.SocketListener]) -> tuple[str, int]:
    host, port = listeners[0].socket.getsockname()[:2]
    return host, port


async def serve(api: Api, listeners: list[trio.SocketListener], protocol: str = "fast") -> None:
    loop = _fast_loop if protocol == "fast" else _h11_loop
    await trio.serve_listeners(partial(_serve_connection, api, loop), listeners)


async def _serve_connection(api: Api, loop: Callable[[Api, trio.SocketStream], Awaitable[None]],
                            stream: trio.SocketStream) -> None:
    # One connection's bug must never take the listener (and the worker) down.
    try:
        async with stream:
            await loop(api, stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    except Exception:
        api.worker.log("connection handler failed:\n" + traceback.format_exc())


async def _peer_gone(sock: trio.socket.SocketType) -> None:
    """Returns once the client has closed the connection (or reset it).

    Only waited on while the connection's request sits in the queue (the
    connection task is then not reading): bytes the client pipelines
    meanwhile are peeked at, not consumed, and mean it is still there."""
    try:
        if await sock.recv(1, socket.MSG_PEEK):
            await trio.sleep_forever()
    except OSError:
        pass


async def _fast_loop(api: Api, stream: trio.SocketStream) -> None:
    parser = RequestParser(api.body_limit)
    caller_gone = partial(_peer_gone, stream.socket)
    while True:
        try:
            parsed = parser.next()
        except ParseError as exc:
            error = _protocol_error(exc.status, str(exc))
            await stream.send_all(serialize_response(error.status, error.headers, error.body, False))
            return
        if parsed is None:
            with trio.move_on_after(KEEPALIVE_TIMEOUT_S):
                data = await stream.receive_some(READ_SIZE)
                if data:
                    parser.feed(data)
                    continue
            return  # idle too long, or the client closed
        if parsed is FALLBACK:
            await _h11_loop(api, stream, parser.buffered)
            return
        assert isinstance(parsed, ParsedRequest)
        path, _, query = parsed.target.decode("ascii").partition("?")
        response = await api.handle(Request(parsed.method.decode("ascii"), path, query, parsed.headers, parsed.body,
                                            caller_gone))
        await stream.send_all(serialize_response(response.status, response.headers, response.body, parsed.keep_alive))
        if not parsed.keep_alive:
            return


def _protocol_error(status: int, message: str) -> Response:
    return Response.error(status, "PayloadTooLarge" if status == 413 else "BadRequest", message)


async def _h11_loop(api: Api, stream: trio.SocketStream, received: bytes = b"") -> None:
    connection = h11.Connection(h11.SERVER)
    if received:  # (an empty receive_data would tell h11 the client hung up)
        connection.receive_data(received)
    while True:
        try:
            with trio.move_on_after(KEEPALIVE_TIMEOUT_S) as idle:
                request = await _receive_request(api, stream, connection)
            if idle.cancelled_caught or request is None:
                return
        except (h11.RemoteProtocolError, _Reject) as exc:
            status = exc.status if isinstance(exc, _Reject) else (exc.error_status_hint or 400)
            await _send_error_and_close(stream, connection, status, str(exc))
            return
        except trio.BrokenResourceError:
            return
        response = await api.handle(request)
        try:
            await _send(stream, connection, response)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
            return
        connection.start_next_cycle()


async def _receive_request(api: Api, stream: trio.SocketStream, connection: h11.Connection) -> Request | None:
    head: h11.Request | None = None
    body = bytearray()
    limit = 0
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            if connection.client_is_waiting_for_100_continue:
                await stream.send_all(connection.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
            data = await stream.receive_some(READ_SIZE)
            connection.receive_data(data)
            if not data and connection.their_state is h11.IDLE:
                return None
        elif isinstance(event, h11.Request):
            head = event
            path = event.target.decode("ascii", "replace").partition("?")[0]
            limit = api.body_limit(path)
            declared = _content_length(event.headers)
            if declared is not None and declared > limit:
                raise _Reject(413, f"the request body is larger than {limit} bytes")
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > limit:
                raise _Reject(413, f"the request body is larger than {limit} bytes")
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            path, _, query = head.target.decode("ascii", "replace").partition("?")
            return Request(head.method.decode("ascii"), path, query, list(head.headers), bytes(body),
                           partial(_peer_gone, stream.socket))
        elif isinstance(event, h11.ConnectionClosed):
            return None


def _content_length(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value)
    return None


async def _send(stream: trio.SocketStream, connection: h11.Connection, response: Response) -> None:
    headers = [SERVER_HEADER, (b"content-length", str(len(response.body)).encode()), *response.headers]
    head = h11.Response(status_code=response.status, headers=headers, reason=_REASONS.get(response.status, b""))
    data = connection.send(head) or b""
    if response.body:
        data += connection.send(h11.Data(data=response.body)) or b""
    data += connection.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)


async def _send_error_and_close(stream: trio.SocketStream, connection: h11.Connection, status: int,
                                message: str) -> None:
    if connection.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    response = _protocol_error(status, message)
    response.headers.append((b"connection", b"close"))
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
        await _send(stream, connection, response)

