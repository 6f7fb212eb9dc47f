"""Admission and threads: sandbox calls run off the event loop.

Calls block (they run the guest), so they go to Trio's worker threads,
at most ``threads`` at once.  Past ``max_queue`` waiting calls, new ones are
refused with 503 instead of piling up.  A call that outlives its deadline by
``grace_s`` (a guest blocked in a host call such as ``time.sleep``, where
epoch interruption cannot reach) is abandoned: the caller gets 504 now, and
the thread finishes and frees its instance on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import trio

from ..errors import CapacityExceeded, DeadlineExceeded

T = TypeVar("T")


class Scheduler:
    def __init__(self, threads: int, max_queue: int, grace_s: float = 0.05) -> None:
        self.limiter = trio.CapacityLimiter(threads)
        self.max_queue = max_queue
        self.grace_s = grace_s
        self.running = 0

    @property
    def waiting(self) -> int:
        return self.running - int(self.limiter.borrowed_tokens)

    async def run(self, function: Callable[[], T], timeout_ms: int) -> T:
        if self.waiting >= self.max_queue:
            raise CapacityExceeded(f"{self.waiting} calls are already queued", retry_after=1)
        self.running += 1
        try:
            with trio.move_on_after(timeout_ms / 1000 + self.grace_s):
                return await trio.to_thread.run_sync(function, limiter=self.limiter, abandon_on_cancel=True)
        finally:
            self.running -= 1
        raise DeadlineExceeded(f"the function exceeded its timeout of {timeout_ms} ms")
