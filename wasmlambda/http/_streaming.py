"""Streamed responses on the wire: the kernel's ``ResponseStream`` for one request.

Theory of operation: the server makes a :class:`StreamWriter` for every
request it hands the API; it stays unused unless the handler streams.  The
guest's sandbox thread calls :meth:`StreamWriter.start` and
:meth:`StreamWriter.write`, which queue the head and the chunks and, when no
drain is running, ask the Trio loop to start one; the drain sends whatever
has queued in one write, until the queue is empty.  So a fast producer costs
the loop one wake-up per batch, not per chunk, and a chunk still leaves as
soon as the loop gets to it.  Past ``MAX_UNSENT_BYTES`` queued, the guest
waits: a slow client pauses it, and memory stays bounded.  The framing is HTTP/1.1
chunked on the fast path (:class:`ChunkedFraming`) or whatever h11 chooses
on the h11 path (:class:`H11Framing`: chunked, or close-delimited for an
HTTP/1.0 client).  After the call, the server calls :meth:`finish`: the
final chunk when the stream completed, nothing when it was cut (a timeout,
a failure after the headers), in which case the connection closes, so the
client can tell.  Once the call is over, a late ``start`` or ``write`` (from
a call the worker abandoned at its deadline) is refused.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Protocol

import h11
import trio

from ._headers import app_head
from ._messages import reason_phrase

__all__ = ["ChunkedFraming", "H11Framing", "StreamWriter"]

_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, OSError, h11.LocalProtocolError)
# Chunks queued and not yet sent, at most: past this the guest waits for the client.
MAX_UNSENT_BYTES = 256 * 1024
# Start (sandbox thread) and end_unstarted (loop) decide, once, whether a response streams.
_HANDSHAKE = threading.Lock()


class Framing(Protocol):
    def head(self, status: int, headers: list[tuple[bytes, bytes]]) -> bytes: ...

    def chunk(self, data: bytes) -> bytes: ...

    def end(self) -> bytes: ...


class StreamWriter:
    __slots__ = ("_done", "_ending", "_framing", "_head_only", "_idle", "_pending", "_pending_bytes", "_room",
                 "_stream", "_token", "_wake", "closed", "started")

    def __init__(self, stream: trio.SocketStream, framing: Framing, head_only: bool = False) -> None:
        self._stream = stream
        self._framing = framing
        self._head_only = head_only  # a HEAD request: the head, no body
        self._token = trio.lowlevel.current_trio_token()
        # Made by start (most requests never stream): the queue's lock, the
        # drain task's wake-up and its end.
        self._room: threading.Condition | None = None
        self._wake: trio.Event | None = None
        self._done: trio.Event | None = None
        self._pending: deque[tuple[int, list[tuple[bytes, bytes]]] | bytes] = deque()
        self._pending_bytes = 0
        self._idle = False  # the drain task waits for a wake-up
        self._ending = False  # the call is over: the drain sends what is queued and stops
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
        with _HANDSHAKE:
            if self.closed:
                return "the call is over (its deadline passed or the client left)"
            self._room = threading.Condition()
            self._wake, self._done = trio.Event(), trio.Event()
            self._pending.append((status, checked))
            self.started = True
        try:
            self._token.run_sync_soon(trio.lowlevel.spawn_system_task, self._drain)
        except trio.RunFinishedError:
            return "the worker is stopping"
        return None

    def write(self, chunk: bytes) -> bool:
        """Queue a chunk; wait while too much is unsent (a slow client pauses the guest).
        False once nobody will read it."""
        room = self._room
        if room is None or self._head_only:
            return False
        with room:
            while not self.closed and self._pending_bytes >= MAX_UNSENT_BYTES:
                room.wait()
            if self.closed:
                return False
            self._pending.append(chunk)
            self._pending_bytes += len(chunk)
            wake, self._idle = self._idle, False
        if wake:
            try:
                self._token.run_sync_soon(self._wake_drain)
            except trio.RunFinishedError:
                return False
        return True

    # -- on the Trio loop --------------------------------------------------

    def _wake_drain(self) -> None:
        assert self._wake is not None
        self._wake.set()

    async def _drain(self) -> None:
        """Send what is queued, in as few writes as it arrives in, until the call is over."""
        room, done = self._room, self._done
        assert room is not None and done is not None
        try:
            while True:
                with room:
                    if self.closed or (self._ending and not self._pending):
                        return
                    items, self._pending = self._pending, deque()
                    self._pending_bytes = 0
                    room.notify_all()
                    if not items:
                        self._idle = True
                        self._wake = wake = trio.Event()
                if not items:
                    await wake.wait()
                    continue
                data = b"".join(self._framing.chunk(item) if isinstance(item, bytes) else self._framing.head(*item)
                                for item in items)
                try:
                    await self._stream.send_all(data)
                except _GONE:
                    self._close()
        except Exception:  # a system task must never raise: it would stop the worker
            self._close()
        finally:
            done.set()

    def _close(self) -> None:
        room = self._room
        if room is None:
            self.closed = True
            return
        with room:
            self.closed = True
            room.notify_all()

    async def finish(self, complete: bool) -> bool:
        """End the body after the call: True if the connection may serve another request."""
        if not (complete or self._head_only) or self._done is None:
            self._close()
            return False  # cut: no final chunk; the connection closes
        assert self._room is not None
        with self._room:
            self._ending = True
            idle, self._idle = self._idle, False
        if idle:
            self._wake_drain()
        await self._done.wait()  # everything queued is sent
        if self.closed:
            return False
        self._close()  # (a write from a call abandoned at its deadline is refused from now on)
        try:
            await self._stream.send_all(self._framing.end())
        except _GONE:
            return False
        return True

    def end_unstarted(self) -> bool:
        """The call answered without streaming (or was abandoned): refuse a late start.
        False if the stream had started after all (then the caller must finish it)."""
        with _HANDSHAKE:
            if self.started:
                return False
            self.closed = True
            return True


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
