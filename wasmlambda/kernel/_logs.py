"""Recent log lines per function, bounded, in memory.

Each invocation's captured output (print, ``wasmlambda_guest.log``, the
traceback of an exception) is split into lines stamped with a sequence
number, the time and the request id.  Readers page with ``since`` (the last
sequence number they saw) and ``limit``, which is how ``wasmlambda logs
--follow`` tails.

Bounded three ways, so no tenant's output can grow the worker: a call's
output beyond ``bytes_per_call`` is cut (a line says where and how much), a
function keeps at most ``lines_per_function`` lines and ``bytes_per_function``
bytes (the oldest go first), and a read returns at most ``MAX_PAGE_LINES``.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from typing import Any

DEFAULT_LINES_PER_FUNCTION = 1000
MAX_PAGE_LINES = 1000

Line = tuple[int, float, str, str]  # seq, time, request id, text


class LogStore:
    def __init__(self, lines_per_function: int = DEFAULT_LINES_PER_FUNCTION, bytes_per_call: int = 64 << 10,
                 bytes_per_function: int = 1 << 20) -> None:
        self.lines_per_function = lines_per_function
        self.bytes_per_call = bytes_per_call
        self.bytes_per_function = bytes_per_function
        self._lines: dict[str, deque[Line]] = {}
        self._bytes: dict[str, int] = {}
        self._sequence = itertools.count(1)

    def clip(self, text: str) -> str:
        """A call's output as kept: at most ``bytes_per_call`` (roughly: characters), then a line saying so."""
        if len(text) <= self.bytes_per_call:
            return text
        cut = len(text) - self.bytes_per_call
        return (text[:self.bytes_per_call] + f"\n[wasmlambda: {cut} more characters of this call's output were "
                f"cut: the worker keeps {self.bytes_per_call} per call]\n")

    def append(self, name: str, request_id: str, text: str) -> None:
        """Store a call's (clipped) output."""
        if not text:
            return
        lines = self._lines.get(name)
        if lines is None:
            lines = self._lines[name] = deque()
        size = self._bytes.get(name, 0)
        now = time.time()
        for line in text.splitlines():
            lines.append((next(self._sequence), now, request_id, line))
            size += len(line)
        while lines and (len(lines) > self.lines_per_function or size > self.bytes_per_function):
            size -= len(lines.popleft()[3])
        self._bytes[name] = size

    def read(self, name: str, since: int = 0, request_id: str | None = None,
             limit: int = MAX_PAGE_LINES) -> list[dict[str, Any]]:
        """Up to ``limit`` lines after ``since`` (oldest first)."""
        page: list[dict[str, Any]] = []
        limit = min(limit, MAX_PAGE_LINES)
        for seq, stamp, rid, line in self._lines.get(name, ()):
            if seq > since and (request_id is None or rid == request_id):
                page.append({"seq": seq, "time": stamp, "request_id": rid, "line": line})
                if len(page) >= limit:
                    break
        return page

    def forget(self, name: str) -> None:
        self._lines.pop(name, None)
        self._bytes.pop(name, None)
