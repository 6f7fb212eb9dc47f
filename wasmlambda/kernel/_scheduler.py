"""Admission and threads: sandbox calls run off the event loop.

Calls block (they run the guest), so they go to a fixed set of sandbox
threads, at most ``threads`` at once; past ``max_queue`` waiting calls, new
ones are refused with 503 instead of piling up.  A call that outlives its
deadline by ``grace_s`` (a guest blocked in a host call, where epoch
interruption cannot reach) is abandoned: the caller gets 504 now, and the
thread finishes and frees its instance on its own.

Theory of operation: ``trio.to_thread`` costs ~100 µs per hop on this
hardware, as much as the guest call it carries, so the hop is hand-made.  A
call is a job on a ``queue.SimpleQueue``; a sandbox thread runs it, appends
it to a done deque and writes one byte to a pipe; a single Trio system task
waits on that pipe and reschedules each finished job's task.  The waiting
task parks with ``wait_task_rescheduled``: no thread cache, context copy or
limiter round trip on the way.
"""

from __future__ import annotations

import collections
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import outcome
import trio

from ..errors import CapacityExceeded, DeadlineExceeded

T = TypeVar("T")


class _Job(Generic[T]):
    __slots__ = ("function", "result", "task")

    def __init__(self, function: Callable[[], T], task: trio.lowlevel.Task) -> None:
        self.function = function
        self.task: trio.lowlevel.Task | None = task  # None once abandoned
        self.result: outcome.Outcome[T] | None = None


class Scheduler:
    def __init__(self, threads: int, max_queue: int, grace_s: float = 0.05) -> None:
        self.threads = threads
        self.max_queue = max_queue
        self.grace_s = grace_s
        self.running = 0  # submitted and not yet answered (queued + executing)
        self._jobs: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._done: collections.deque[_Job[Any]] = collections.deque()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        self._workers: list[threading.Thread] = []
        # Set by the thread that wrote the wake byte, cleared by the reaper
        # before it drains: under load, one wake-up collects many results.
        self._wake_pending = False
        self._reaper_token: trio.lowlevel.TrioToken | None = None

    @property
    def waiting(self) -> int:
        return self._jobs.qsize()

    async def run(self, function: Callable[[], T], timeout_ms: int) -> T:
        if self.waiting >= self.max_queue:
            raise CapacityExceeded(f"{self.waiting} calls are already queued", retry_after=1)
        self._start()
        job = _Job(function, trio.lowlevel.current_task())
        self.running += 1
        try:
            with trio.move_on_after(timeout_ms / 1000 + self.grace_s):
                self._jobs.put(job)

                def abandon(_: Any) -> trio.lowlevel.Abort:
                    job.task = None
                    return trio.lowlevel.Abort.SUCCEEDED

                result: outcome.Outcome[T] = await trio.lowlevel.wait_task_rescheduled(abandon)
                return result.unwrap()
        finally:
            self.running -= 1
        raise DeadlineExceeded(f"the function exceeded its timeout of {timeout_ms} ms")

    def _start(self) -> None:
        token = trio.lowlevel.current_trio_token()
        if self._reaper_token is not token:  # once per trio.run
            trio.lowlevel.spawn_system_task(self._reap, name="wasmlambda-sandbox-completions")
            self._reaper_token = token
        while len(self._workers) < min(self.threads, self.running + 1):
            thread = threading.Thread(target=self._work, name=f"wasmlambda-sandbox-{len(self._workers)}",
                                      daemon=True)
            thread.start()
            self._workers.append(thread)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            job.result = outcome.capture(job.function)
            self._done.append(job)
            if not self._wake_pending:
                self._wake_pending = True
                os.write(self._wake_write, b"\0")

    async def _reap(self) -> None:
        while True:
            await trio.lowlevel.wait_readable(self._wake_read)
            try:
                os.read(self._wake_read, 65536)
            except BlockingIOError:
                continue
            self._wake_pending = False
            while self._done:
                job = self._done.popleft()
                if job.task is not None:  # an abandoned job's result is dropped here
                    assert job.result is not None
                    trio.lowlevel.reschedule(job.task, outcome.Value(job.result))

    def close(self) -> None:
        """Stop the threads once their current jobs end (abandoned ones may still be running)."""
        for _ in self._workers:
            self._jobs.put(None)
        self._workers.clear()
