"""Streamed responses on the wire: the kernel's ``ResponseStream`` for one request.

Theory of operation: the server makes a :class:`StreamWriter` for every
request it hands the API; it stays unused unless the handler streams.  The
guest's sandbox thread calls :meth:`StreamWriter.start` and
:meth:`StreamWriter.write`, which run their sends on the Trio loop
(``trio.from_thread.run``) and wait for them: a slow client blocks the
guest, and at most one chunk is in flight.  The framing is HTTP/1.1
chunked on the fast path (:class:`ChunkedFraming`) or whatever h11 chooses
on the h11 path (:class:`H11Framing`: chunked, or close-delimited for an
HTTP/1.0 client).  After the call, the server calls :meth:`finish`: the
final chunk when the stream completed, nothing when it was cut (a timeout,
a failure after the headers), in which case the connection closes, so the
client can tell.  Once the call is over, a late ``start`` or ``write`` (from
a call the worker abandoned at its deadline) is refused.
"""

from __future__ import annotations

from typing import Protocol

import h11
import trio

from ._headers import app_head
from ._messages import reason_phrase

__all__ = ["ChunkedFraming", "H11Framing", "StreamWriter"]

_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, OSError, h11.LocalProtocolError)


class Framing(Protocol):
    def head(self, status: int, headers: list[tuple[bytes, bytes]]) -> bytes: ...

    def chunk(self, data: bytes) -> bytes: ...

    def end(self) -> bytes: ...


class StreamWriter:
    __slots__ = ("_framing", "_head_only", "_lock", "_stream", "_token", "closed", "started")

    def __init__(self, stream: trio.SocketStream, framing: Framing, head_only: bool = False) -> None:
        self._stream = stream
        self._framing = framing
        self._head_only = head_only  # a HEAD request: the head, no body
        self._token = trio.lowlevel.current_trio_token()
        self._lock: trio.Lock | None = None
        self.started = False
        self.closed = False

    # -- on the sandbox thread -------------------------------------------

    def start(self, status: int, headers: list[list[str]], request_id: str) -> str | None:
        try:
            status, checked = app_head({"status": status, "headers": headers})
        except (ValueError, TypeError) as exc:
            return f"the response head is invalid: {exc}"
        # (X-Accel-Buffering: an nginx in front passes the chunks on at once; HAProxy does by default.)
        checked += [(b"x-request-id", request_id.encode()), (b"x-wasmlambda-streamed", b"true"),
                    (b"x-accel-buffering", b"no")]
        try:
            problem: str | None = trio.from_thread.run(self._start, status, checked, trio_token=self._token)
        except trio.RunFinishedError:
            return "the worker is stopping"
        return problem

    def write(self, chunk: bytes) -> bool:
        if self.closed or self._head_only:
            return False
        try:
            written: bool = trio.from_thread.run(self._send_chunk, chunk, trio_token=self._token)
        except trio.RunFinishedError:
            return False
        return written

    # -- on the Trio loop --------------------------------------------------

    async def _start(self, status: int, headers: list[tuple[bytes, bytes]]) -> str | None:
        if self.closed:
            return "the call is over (its deadline passed or the client left)"
        self.started = True
        self._lock = trio.Lock()
        if not await self._send(self._framing.head(status, headers)):
            return "the client has gone"
        return None

    async def _send_chunk(self, chunk: bytes) -> bool:
        return await self._send(self._framing.chunk(chunk))  # (framed here: h11's state is the loop's)

    async def _send(self, data: bytes) -> bool:
        assert self._lock is not None
        async with self._lock:
            if self.closed:
                return False
            try:
                await self._stream.send_all(data)
            except _GONE:
                self.closed = True
                return False
        return True

    async def finish(self, complete: bool) -> bool:
        """End the body after the call: True if the connection may serve another request."""
        assert self._lock is not None
        async with self._lock:
            if self.closed:
                return False
            self.closed = True
            if not complete and not self._head_only:
                return False  # cut: no final chunk; the connection closes
            try:
                await self._stream.send_all(self._framing.end())
            except _GONE:
                return False
        return True

    def refuse(self) -> None:
        """The call answered without streaming (or was abandoned): a late start is refused."""
        self.closed = True


class ChunkedFraming:
    """HTTP/1.1 chunked transfer coding, for the fast path."""

    __slots__ = ("_identity", "_keep_alive")

    def __init__(self, identity: list[tuple[bytes, bytes]], keep_alive: bool) -> None:
        self._identity = identity  # the server's own headers (server, x-wasmlambda-worker)
        self._keep_alive = keep_alive

    def head(self, status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason_phrase(status))]
        lines += [b"%s: %s\r\n" % pair for pair in (*self._identity, *headers)]
        lines.append(b"transfer-encoding: chunked\r\n")
        if not self._keep_alive:
            lines.append(b"connection: close\r\n")
        return b"".join(lines) + b"\r\n"

    def chunk(self, data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data)

    def end(self) -> bytes:
        return b"0\r\n\r\n"


class H11Framing:
    """Whatever h11 chooses for this client (chunked for HTTP/1.1, close-delimited for 1.0)."""

    __slots__ = ("_connection", "_identity")

    def __init__(self, connection: h11.Connection, identity: list[tuple[bytes, bytes]]) -> None:
        self._connection = connection
        self._identity = identity

    def head(self, status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
        response = h11.Response(status_code=status, headers=[*self._identity, *headers],
                                reason=reason_phrase(status))
        return self._connection.send(response) or b""

    def chunk(self, data: bytes) -> bytes:
        return self._connection.send(h11.Data(data=data)) or b""

    def end(self) -> bytes:
        return self._connection.send(h11.EndOfMessage()) or b""
