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
read.

Nothing a client sends may wedge the server (``ServerLimits``): an idle
keep-alive connection is closed after ``keepalive_timeout_s``; a request
must arrive whole (head and body) within ``request_timeout_s`` of its first
byte, or it gets 408 and the connection closes (a client trickling a byte a
second holds nothing for long); past ``max_connections`` open connections a
new one gets 503 with Retry-After and is closed; the bytes of requests being
received, over all connections, are capped (``max_buffered_bytes``, 503).
The accept loop backs off when the process runs out of file descriptors
and says so once a minute, not once per attempt.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import traceback
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import NamedTuple

import h11
import trio

from ..errors import ConfigError
from ._api import Api
from ._messages import Request, Response, reason_phrase
from ._parser import FALLBACK, ParsedRequest, ParseError, RequestParser, serialize_response, set_worker_id
from ._streaming import ChunkedFraming, H11Framing, StreamWriter

READ_SIZE = 65536
SERVER_HEADER = (b"server", b"wasmlambda")
_worker_header = (b"x-wasmlambda-worker", b"")  # set by serve()
_identity = [SERVER_HEADER, _worker_header]  # the server's own headers on a streamed response (set by serve())


class _Reject(Exception):
    """The request cannot be served; answer with this status and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def open_listeners(host: str, port: int, *, reuse_port: bool = False,
                         inherited_fd: int | None = None) -> list[trio.SocketListener]:
    """Bind before serving, so a busy port is one clear error at startup.

    The processes of ``serve --processes N`` share one port: each binds it
    with SO_REUSEPORT (``reuse_port``; the kernel spreads connections over
    them) or, where the OS lacks that, serves the listening socket the
    supervisor opened (``inherited_fd``)."""
    if inherited_fd is not None:
        return [trio.SocketListener(trio.socket.from_stdlib_socket(socket.socket(fileno=inherited_fd)))]
    try:
        if reuse_port:
            return [trio.SocketListener(trio.socket.from_stdlib_socket(shared_port_socket(host, port, listen=True)))]
        return await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def shared_port_socket(host: str, port: int, listen: bool) -> socket.socket:
    """A socket bound to (host, port) with SO_REUSEPORT; the supervisor holds
    one that does not listen, to keep the port while it replaces processes."""
    family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                            flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, protocol)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    if listen:
        sock.listen(1024)
    return sock


def bound_address(listeners: list[trio.SocketListener]) -> tuple[str, int]:
    host, port = listeners[0].socket.getsockname()[:2]
    return host, port


class ServerLimits(NamedTuple):
    """What the server allows clients (the worker's settings of the same names)."""

    keepalive_timeout_s: float = 60
    request_timeout_s: float = 60
    max_connections: int = 4096
    max_buffered_bytes: int = 512 << 20


class _Gate:
    """What all connections hold together: their number and the request bytes they buffer."""

    __slots__ = ("buffered", "connections", "limits", "refusing")

    def __init__(self, limits: ServerLimits) -> None:
        self.limits = limits
        self.connections = 0
        self.refusing = 0  # connections being answered 503 (briefly)
        self.buffered = 0

    def take(self, count: int) -> None:
        """Account for ``count`` more received bytes; _Reject (503) past the cap."""
        self.buffered += count
        if self.buffered > self.limits.max_buffered_bytes:
            raise _Reject(503, "the worker is receiving too many request bytes at once; retry shortly")


class _Holding:
    """The bytes one connection has received for requests not yet answered, counted in the gate."""

    __slots__ = ("count", "gate")

    def __init__(self, gate: _Gate) -> None:
        self.gate = gate
        self.count = 0

    def add(self, count: int) -> None:
        self.count += count
        self.gate.take(count)

    def release(self, keep: int = 0) -> None:
        """Let go of all but ``keep`` bytes (pipelined ones, already received)."""
        self.gate.buffered -= self.count - keep
        self.count = keep


_ACCEPT_CAPACITY_ERRORS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))
_ACCEPT_REPORT_EVERY_S = 60
_MAX_REFUSING = 256
_OVERLOADED_RESPONSE = Response.error(503, "CapacityExceeded", "too many open connections", [(b"retry-after", b"1")])


async def serve(api: Api, listeners: list[trio.SocketListener], protocol: str = "fast",
                limits: ServerLimits | None = None) -> None:
    loop = _fast_loop if protocol == "fast" else _h11_loop
    worker_id = api.worker.id.encode()
    set_worker_id(worker_id)  # the fast path's responses name this process...
    global _worker_header, _identity
    _worker_header = (b"x-wasmlambda-worker", worker_id)  # ...and so do h11's
    _identity = [SERVER_HEADER, _worker_header]
    gate = _Gate(limits or ServerLimits())
    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(_accept, listener, nursery, partial(_serve_connection, api, loop, gate), gate,
                               api.worker.log)


async def _accept(listener: trio.SocketListener, nursery: trio.Nursery,
                  handler: Callable[[trio.SocketStream], Awaitable[None]], gate: _Gate,
                  log: Callable[[str], None]) -> None:
    backoff = 0.0
    reported = -float("inf")
    while True:
        try:
            stream = await listener.accept()
        except OSError as exc:
            if exc.errno not in _ACCEPT_CAPACITY_ERRORS:
                raise
            # Out of descriptors (or memory): wait for connections to close
            # instead of spinning, and say so once a minute, not every time.
            if trio.current_time() - reported >= _ACCEPT_REPORT_EVERY_S:
                reported = trio.current_time()
                log(f"cannot accept connections: {exc.strerror}; {gate.connections} open, backing off")
            backoff = min(1.0, backoff * 2 or 0.005)
            await trio.sleep(backoff)
            continue
        backoff = 0.0
        if gate.connections < gate.limits.max_connections:
            gate.connections += 1  # counted from the accept: a burst cannot overshoot the cap
            nursery.start_soon(handler, stream)
        elif gate.refusing < _MAX_REFUSING:
            gate.refusing += 1
            nursery.start_soon(_refuse, stream, gate)
        else:  # a flood: not even an answer
            with contextlib.suppress(OSError):
                stream.socket.close()


async def _refuse(stream: trio.SocketStream, gate: _Gate) -> None:
    try:
        with trio.move_on_after(1), contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            async with stream:
                await stream.send_all(serialize_response(503, _OVERLOADED_RESPONSE.headers,
                                                         _OVERLOADED_RESPONSE.body, False))
                await _linger(stream)
    finally:
        gate.refusing -= 1


async def _serve_connection(api: Api, loop: Callable[[Api, trio.SocketStream, _Gate], Awaitable[None]],
                            gate: _Gate, stream: trio.SocketStream) -> None:
    # One connection's bug must never take the listener (and the worker) down.
    try:
        async with stream:
            await loop(api, stream, gate)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    except Exception:
        api.worker.log("connection handler failed:\n" + traceback.format_exc())
    finally:
        gate.connections -= 1


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


async def _fast_loop(api: Api, stream: trio.SocketStream, gate: _Gate) -> None:
    # The hot path reads and writes the socket itself (a second socket object
    # on the same descriptor, detached before Trio closes it): SocketStream's
    # receive_some and send_all each pass through Trio's scheduler even when
    # the socket is ready, which cost more than the rest of a warm request.
    raw = socket.socket(fileno=stream.socket.fileno())
    try:
        await _fast_requests(api, stream, raw, gate)
    except (ConnectionError, TimeoutError):
        pass  # reset or broken by the client (or the network): only this connection ends
    finally:
        raw.detach()


async def _fast_requests(api: Api, stream: trio.SocketStream, raw: socket.socket, gate: _Gate) -> None:
    parser = RequestParser(api.body_limit)
    caller_gone = partial(_peer_gone, stream.socket)
    limits = gate.limits
    holding = _Holding(gate)
    deadline = 0.0  # by when the request being received must be complete (0: none begun)
    waited = True  # since the last request: a client that never lets us wait must still let others run
    try:
        while True:
            try:
                parsed = parser.next()
            except ParseError as exc:
                await _send_error(stream, exc.status, str(exc))
                return
            if parsed is None:
                try:
                    data = raw.recv(READ_SIZE)
                except BlockingIOError:
                    if parser.buffered:  # part of a request is in: it has to arrive whole in time
                        wait_until = deadline = deadline or trio.current_time() + limits.request_timeout_s
                    else:
                        wait_until = trio.current_time() + limits.keepalive_timeout_s
                    with trio.CancelScope(deadline=wait_until) as waiting:
                        await trio.lowlevel.wait_readable(raw)
                    if waiting.cancelled_caught:
                        if deadline:
                            await _send_error(stream, 408, "the request did not arrive in time")
                        return  # (else idle too long)
                    waited = True
                    continue
                if not data:
                    return  # the client closed
                if not deadline:
                    deadline = trio.current_time() + limits.request_timeout_s
                try:
                    holding.add(len(data))
                except _Reject as exc:
                    holding.release()  # now, not after the lingering close
                    await _send_error(stream, exc.status, str(exc), retry_after=True)
                    return
                parser.feed(data)
                continue
            if parsed is FALLBACK:
                holding.release()
                await _h11_loop(api, stream, gate, parser.buffered, deadline)
                return
            assert isinstance(parsed, ParsedRequest)
            if not waited:
                await trio.lowlevel.checkpoint()
            waited = False
            path, _, query = parsed.target.decode("ascii").partition("?")
            writer = StreamWriter(stream, ChunkedFraming(_identity, parsed.keep_alive))
            response = await api.handle(Request(parsed.method.decode("ascii"), path, query, parsed.headers,
                                                parsed.body, caller_gone, writer))
            holding.release(keep=len(parser.buffered))
            deadline = 0.0
            if response.streamed:
                if not await writer.finish(response.complete) or not parsed.keep_alive:
                    return
                continue
            await _send_raw(raw, serialize_response(response.status, response.headers, response.body,
                                                parsed.keep_alive))
            if not parsed.keep_alive:
                return
    finally:
        holding.release()


async def _send_raw(raw: socket.socket, data: bytes) -> None:
    """All of ``data``, at once when the socket takes it (the usual case), else as it drains."""
    try:
        sent = raw.send(data)
    except BlockingIOError:
        sent = 0
    view = memoryview(data)[sent:]
    while view:
        await trio.lowlevel.wait_writable(raw)
        with contextlib.suppress(BlockingIOError):
            view = view[raw.send(view):]


async def _send_error(stream: trio.SocketStream, status: int, message: str, retry_after: bool = False) -> None:
    """A protocol-level error, after which the connection closes."""
    error = _protocol_error(status, message)
    if retry_after:
        error.headers.append((b"retry-after", b"1"))
    await stream.send_all(serialize_response(error.status, error.headers, error.body, False))
    await _linger(stream)


_LINGER_S = 1
_LINGER_BYTES = 1 << 20


async def _linger(stream: trio.SocketStream) -> None:
    """Before closing on a client still sending: stop writing, and read (and drop) a
    little of what it sends, briefly.  Closing with unread bytes makes the kernel
    reset the connection, and the client may lose the answer just sent."""
    with trio.move_on_after(_LINGER_S), contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError,
                                                            OSError):
        await stream.send_eof()
        drained = 0
        while drained < _LINGER_BYTES and (data := await stream.receive_some(READ_SIZE)):
            drained += len(data)


_PROTOCOL_ERRORS = {408: "RequestTimeout", 413: "PayloadTooLarge", 503: "CapacityExceeded",
                    505: "HTTPVersionNotSupported"}


def _protocol_error(status: int, message: str) -> Response:
    return Response.error(status, _PROTOCOL_ERRORS.get(status, "BadRequest"), message)


async def _h11_loop(api: Api, stream: trio.SocketStream, gate: _Gate, received: bytes = b"",
                    deadline: float = 0.0) -> None:
    """``received``: what the fast parser had buffered; ``deadline``: the request's, if it had begun."""
    connection = h11.Connection(h11.SERVER)
    if received:  # (an empty receive_data would tell h11 the client hung up)
        connection.receive_data(received)
    holding = _Holding(gate)
    try:
        while True:
            try:
                incoming = await _receive_request(api, stream, connection, holding, deadline)
                if incoming is None:
                    return
                request, must_close = incoming
            except (h11.RemoteProtocolError, _Reject) as exc:
                holding.release()  # now, not after the lingering close
                status = exc.status if isinstance(exc, _Reject) else (exc.error_status_hint or 400)
                await _send_error_and_close(stream, connection, status, str(exc))
                return
            except trio.BrokenResourceError:
                return
            deadline = 0.0
            response = await api.handle(request)
            holding.release()
            if response.streamed:
                if not await request.stream.finish(response.complete) or must_close:
                    return
            else:
                if must_close:
                    response.headers.append((b"connection", b"close"))
                try:
                    await _send(stream, connection, response, head_only=request.method == "HEAD")
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
            if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                return
            connection.start_next_cycle()
    finally:
        holding.release()


async def _receive_request(api: Api, stream: trio.SocketStream, connection: h11.Connection, holding: _Holding,
                           deadline: float) -> tuple[Request, bool] | None:
    """The next request, and whether the connection must close after its answer;
    None when the client closed or stayed idle past the keep-alive timeout."""
    limits = holding.gate.limits
    head: h11.Request | None = None
    body = bytearray()
    limit = 0
    if not deadline and connection.trailing_data[0]:  # a pipelined request has begun
        deadline = trio.current_time() + limits.request_timeout_s
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            if connection.client_is_waiting_for_100_continue:
                await stream.send_all(connection.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
            waiting_for = deadline - trio.current_time() if deadline else limits.keepalive_timeout_s
            with trio.move_on_after(waiting_for) as waiting:
                data = await stream.receive_some(READ_SIZE)
            if waiting.cancelled_caught:
                if deadline:
                    raise _Reject(408, "the request did not arrive in time")
                return None
            deadline = deadline or trio.current_time() + limits.request_timeout_s
            holding.add(len(data))
            connection.receive_data(data)
            if not data and connection.their_state is h11.IDLE:
                return None
        elif isinstance(event, h11.Request):
            head = event
            if event.http_version not in (b"1.0", b"1.1"):
                raise _Reject(505, f"HTTP/{event.http_version.decode('ascii', 'replace')} is not supported; "
                                   "use HTTP/1.1")
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
            names = {name for name, _ in head.headers}
            # Both framings (RFC 9112 §6.1): h11 read the body as chunked; the
            # connection is closed after the answer, so nothing after it is served.
            smuggled = b"transfer-encoding" in names and b"content-length" in names
            writer = StreamWriter(stream, H11Framing(connection, _identity),
                                  head_only=head.method == b"HEAD")
            return Request(head.method.decode("ascii"), path, query, list(head.headers), bytes(body),
                           partial(_peer_gone, stream.socket), writer), smuggled
        elif isinstance(event, h11.ConnectionClosed):
            return None


def _content_length(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value)
    return None


async def _send(stream: trio.SocketStream, connection: h11.Connection, response: Response,
                head_only: bool = False) -> None:
    """``head_only``: the answer to a HEAD request, its Content-Length without the body."""
    bodiless = response.status in (204, 304)
    length = [] if bodiless else [(b"content-length", str(len(response.body)).encode())]
    headers = [SERVER_HEADER, _worker_header, *length, *response.headers]
    head = h11.Response(status_code=response.status, headers=headers, reason=reason_phrase(response.status))
    data = connection.send(head) or b""
    if response.body and not bodiless and not head_only:
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
        await _linger(stream)

