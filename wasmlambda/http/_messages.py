"""Protocol-neutral request and response values passed between the server
loop and the API, so either HTTP implementation can sit underneath."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

JSON_TYPE = (b"content-type", b"application/json")
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


def reason_phrase(status: int) -> bytes:
    return _REASONS.get(status, b"")


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    # Returns once the client has closed its connection (the server's watch; None: not watched).
    caller_gone: Callable[[], Awaitable[None]] | None = None
    # Takes the response if the handler streams it (the server's StreamWriter; None: no streaming).
    stream: Any = None


@dataclasses.dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[bytes, bytes]] = dataclasses.field(default_factory=list)
    # Sent already, through the request's stream: the server only ends it (complete or cut).
    streamed: bool = False
    complete: bool = True

    @classmethod
    def json(cls, status: int, document: Any, headers: list[tuple[bytes, bytes]] | None = None) -> Response:
        body = json.dumps(document, separators=(",", ":")).encode() + b"\n"
        return cls(status, body, [JSON_TYPE, *(headers or [])])

    @classmethod
    def error(cls, status: int, kind: str, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> Response:
        """The one error shape of the API: ``{"error": {"type", "message"}}``."""
        return cls.json(status, {"error": {"type": kind, "message": message}}, headers)
