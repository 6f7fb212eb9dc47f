"""The hot-path HTTP/1.1 request parser and response serialiser: pure-Python spec.

Theory of operation: sans-IO, like h11, but narrow.  It handles exactly the
requests a function call is made of: ``METHOD target HTTP/1.1``, CRLF line
endings, token header names with visible-character values, one ``Host``, at
most one ``Content-Length`` and no other framing, several such requests
pipelined in one buffer.  Anything else (chunked bodies, ``Expect``,
``Upgrade``, HTTP/1.0, HEAD, bare LF, odd headers) is not rejected here: the
parser answers :data:`FALLBACK` and the server hands the connection's
buffered bytes to h11, which decides.  So on every input this parser
accepts, h11 accepts the same request (a hypothesis test checks that), and
everything this parser does not accept is h11's call.

The only errors raised here are policy limits: a head longer than
``MAX_HEAD`` (431) and a declared body over the route's limit (413).

``wasmlambda/_fastpath/_parser.pyx`` is the Cython twin, with the same
interface and the same decisions.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from http import HTTPStatus
from typing import NamedTuple

MAX_HEAD = 16 * 1024  # h11's default limit for an incomplete event
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"[\x21-\x7e]+")
_VALUE = re.compile(rb"(?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?")
# Headers whose semantics the fast path leaves to h11.
_FALLBACK_HEADERS = frozenset((b"transfer-encoding", b"expect", b"upgrade"))
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


class ParsedRequest(NamedTuple):
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]  # names lowercased, values stripped
    body: bytes
    keep_alive: bool


class ParseError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Fallback:
    def __repr__(self) -> str:
        return "FALLBACK"


FALLBACK = _Fallback()


class RequestParser:
    __slots__ = ("_body_limit", "_buffer", "_head")

    def __init__(self, body_limit: Callable[[str], int]) -> None:
        self._body_limit = body_limit
        self._buffer = bytearray()
        # A parsed head waiting for the rest of its body: (request, head length, body length).
        self._head: tuple[ParsedRequest, int, int] | None = None

    def feed(self, data: bytes) -> None:
        self._buffer += data

    @property
    def buffered(self) -> bytes:
        """Everything received and not yet returned (for a hand-off to h11)."""
        return bytes(self._buffer)

    def next(self) -> ParsedRequest | _Fallback | None:
        """The next complete request, None if more bytes are needed, or FALLBACK."""
        if self._head is None:
            parsed = self._parse_head()
            if parsed is None or parsed is FALLBACK:
                return parsed
            self._head = parsed  # type: ignore[assignment]
        assert self._head is not None
        request, head_length, body_length = self._head
        total = head_length + body_length
        if len(self._buffer) < total:
            return None
        body = bytes(self._buffer[head_length:total])
        del self._buffer[:total]
        self._head = None
        return request._replace(body=body)

    def _parse_head(self) -> tuple[ParsedRequest, int, int] | _Fallback | None:
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD:
                raise ParseError(431, f"the request head is longer than {MAX_HEAD} bytes")
            if buffer.count(b"\n") != buffer.count(b"\r\n"):
                return FALLBACK  # bare LF line endings: h11 accepts them, we would wait forever
            return None
        if end + 4 > MAX_HEAD:
            raise ParseError(431, f"the request head is longer than {MAX_HEAD} bytes")
        lines = bytes(buffer[:end]).split(b"\r\n")
        request_line = lines[0].split(b" ")
        if len(request_line) != 3:
            return FALLBACK
        method, target, version = request_line
        if version != b"HTTP/1.1" or not _TOKEN.fullmatch(method) or not _TARGET.fullmatch(target):
            return FALLBACK
        if method == b"HEAD":
            return FALLBACK  # an answer without its body: h11 frames it
        headers: list[tuple[bytes, bytes]] = []
        content_length = -1
        hosts = 0
        keep_alive = True
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN.fullmatch(name):
                return FALLBACK
            value = value.strip(b" \t")
            if not _VALUE.fullmatch(value):
                return FALLBACK
            name = name.lower()
            if name == b"content-length":
                if content_length >= 0 or not value.isdigit():
                    return FALLBACK
                content_length = int(value)
            elif name == b"host":
                hosts += 1
            elif name == b"connection":
                if b"close" in [token.strip() for token in value.lower().split(b",")]:
                    keep_alive = False
            elif name in _FALLBACK_HEADERS:
                return FALLBACK
            headers.append((name, value))
        if hosts != 1:
            return FALLBACK
        body_length = max(content_length, 0)
        limit = self._body_limit(target.partition(b"?")[0].decode("ascii"))
        if body_length > limit:
            raise ParseError(413, f"the request body is larger than {limit} bytes")
        return ParsedRequest(method, target, headers, b"", keep_alive), end + 4, body_length


_identity = b"server: wasmlambda\r\n"


def set_worker_id(worker_id: bytes) -> None:
    """Name the answering process in every response (``X-WasmLambda-Worker``)."""
    global _identity
    _identity = b"server: wasmlambda\r\nx-wasmlambda-worker: %s\r\n" % worker_id


def serialize_response(status: int, headers: list[tuple[bytes, bytes]], body: bytes, keep_alive: bool) -> bytes:
    """Status line, our headers, Content-Length, optional close, blank line, body
    (neither Content-Length nor body for 204 and 304)."""
    if status == 204 or status == 304:  # bodiless by definition (RFC 9110 6.4.1)
        parts = [b"HTTP/1.1 %d %s\r\n%s" % (status, _REASONS.get(status, b""), _identity)]
        body = b""
    else:
        parts = [b"HTTP/1.1 %d %s\r\n%scontent-length: %d\r\n"
                 % (status, _REASONS.get(status, b""), _identity, len(body))]
    for name, value in headers:
        parts.append(b"%s: %s\r\n" % (name, value))
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    parts.append(body)
    return b"".join(parts)
