"""What a function may put in a response head, checked in one place.

A handler sets status, headers and cookies on ``context.response``; a WSGI
or streaming app gives a status and a list of headers.  Either way: no line
breaks (no header injection), none of the worker's own framing
(``Content-Length``, ``Transfer-Encoding``, ``Connection``) or metering
(``X-Request-Id``, ``X-WasmLambda-*``) headers.  An app's framing headers
are dropped rather than refused: WSGI apps set Content-Length as a matter
of course, and the server frames the body itself.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["app_head", "handler_head"]

_TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_RESERVED = ("content-length", "transfer-encoding", "connection", "server", "x-request-id", "x-wasmlambda-")


def handler_head(settings: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]]]:
    """Check what a handler set on context.response: no header injection,
    no overriding of the worker's own framing and metering headers."""
    status = settings.get("status") or 200
    if not isinstance(status, int) or not 200 <= status <= 599:
        raise ValueError(f"status must be an integer from 200 to 599, got {status!r}")
    headers: list[tuple[bytes, bytes]] = []
    for name, value in (settings.get("headers") or {}).items():
        lowered = str(name).lower()
        if not _TOKEN.fullmatch(lowered) or lowered.startswith(_RESERVED):
            raise ValueError(f"header {name!r} cannot be set by a handler")
        headers.append((lowered.encode(), _header_value(value)))
    headers += [(b"set-cookie", _header_value(cookie)) for cookie in settings.get("cookies") or []]
    return status, headers


# Framing is the server's: an app's own Content-Length (or chunking) is dropped, not trusted.
_HOP_BY_HOP = frozenset(("content-length", "transfer-encoding", "connection", "keep-alive", "server"))


def app_head(settings: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]]]:
    """A WSGI app's status and header list, checked as a handler's are."""
    status = settings.get("status")
    if not isinstance(status, int) or not 200 <= status <= 599:
        raise ValueError(f"status must be from 200 to 599, got {status!r}")
    headers = []
    for pair in settings.get("headers") or []:
        name, value = pair
        lowered = str(name).lower()
        if lowered in _HOP_BY_HOP:
            continue
        if not _TOKEN.fullmatch(lowered) or lowered.startswith(_RESERVED):
            raise ValueError(f"header {name!r} cannot be set by an app")
        headers.append((lowered.encode(), _header_value(value)))
    return status, headers


def _header_value(value: object) -> bytes:
    text = str(value)
    if any(character in text for character in "\r\n\x00"):
        raise ValueError(f"header value {text[:40]!r} contains a line break")
    return text.encode("latin-1", "replace")
