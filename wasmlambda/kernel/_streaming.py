"""Streamed responses: a guest's chunks, written to the client as it yields them.

Theory of operation: a handler that returns a generator (or an async
generator, or a WSGI app whose body has no declared length) does not
answer with one value.  The guest takes its first chunk, then asks the
``stream`` service to ``start`` the response (status and headers) and
sends every chunk with ``write``, one host call each, from its sandbox
thread.  The service hands them to the call's :class:`ResponseStream`,
which the HTTP layer made for this request: it writes them as HTTP chunks
on the connection, blocking the guest while the client is slow (the
backpressure: nothing piles up in memory).  ``write`` answers false once the
client has gone or the call has run out of time; the guest then closes its
generator (its ``finally`` blocks run) and reports ``client-disconnected``.

A nested call (``invoke``) has no stream: a generator there is an error.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..services import CallContext, Service, ServiceFailure

__all__ = ["ResponseStream", "StreamService"]


class ResponseStream(Protocol):
    """Where one request's streamed response goes; called on the sandbox thread."""

    @property
    def started(self) -> bool: ...

    def start(self, status: int, headers: list[list[str]], request_id: str) -> str | None:
        """Send the status, the handler's headers and the request id; None, or why the response cannot start."""
        ...

    def write(self, chunk: bytes) -> bool:
        """Send one chunk (blocking while the client is slow); False if nobody will read it."""
        ...


class StreamService(Service):
    name = "stream"

    def handle(self, context: CallContext, request: dict[str, Any]) -> Any:
        stream = _stream_of(context)
        if request.get("op") != "start":
            raise ServiceFailure(f"unknown operation {request.get('op')!r}")
        status, headers = request.get("status"), request.get("headers")
        if not isinstance(status, int) or not isinstance(headers, list) or not all(
                isinstance(pair, list) and len(pair) == 2 and all(isinstance(part, str) for part in pair)
                for pair in headers):
            raise ServiceFailure("start takes a status (int) and headers ([[name, value], ...] of str)")
        problem = stream.start(status, headers, context.request_id)
        if problem is not None:
            raise ServiceFailure(problem)
        return True

    def handle_bytes(self, context: CallContext, op: str, payload: bytes) -> bytes:
        if op != "write":
            raise ServiceFailure(f"unknown operation {op!r}")
        stream = _stream_of(context)
        if not stream.started:
            raise ServiceFailure("write before start")
        return b"true" if stream.write(payload) else b"false"

    def close(self) -> None:
        pass


def _stream_of(context: CallContext) -> ResponseStream:
    if context.stream is None:
        raise ServiceFailure("only a call over HTTP can stream its response; a nested call returns a value")
    stream: ResponseStream = context.stream
    return stream
