"""Recent log lines per function, bounded, in memory.

Each invocation's captured output (print, ``wasmlambda_guest.log``, the
traceback of an exception) is split into lines stamped with a sequence
number, the time and the request id.  Readers page with ``since`` (the last
sequence number they saw), which is how ``wasmlambda logs --follow`` tails.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from typing import Any

DEFAULT_LINES_PER_FUNCTION = 1000


class LogStore:
    def __init__(self, lines_per_function: int = DEFAULT_LINES_PER_FUNCTION) -> None:
        self.lines_per_function = lines_per_function
        self._lines: dict[str, deque[tuple[int, float, str, str]]] = {}
        self._sequence = itertools.count(1)

    def append(self, name: str, request_id: str, text: str) -> None:
        if not text:
            return
        lines = self._lines.get(name)
        if lines is None:
            lines = self._lines[name] = deque(maxlen=self.lines_per_function)
        now = time.time()
        for line in text.splitlines():
            lines.append((next(self._sequence), now, request_id, line))

    def read(self, name: str, since: int = 0, request_id: str | None = None) -> list[dict[str, Any]]:
        return [
            {"seq": seq, "time": stamp, "request_id": rid, "line": line}
            for seq, stamp, rid, line in self._lines.get(name, ())
            if seq > since and (request_id is None or rid == request_id)
        ]

    def forget(self, name: str) -> None:
        self._lines.pop(name, None)
