"""Admission and threads: sandbox calls run off the event loop.

Calls block (they run the guest), so they go to a fixed set of sandbox
threads, at most ``threads`` at once; past ``max_queue`` waiting calls, new
ones are refused with 503 instead of piling up.  A call that outlives its
deadline by ``grace_s`` (a guest blocked in a host call, where epoch
interruption cannot reach) is abandoned: the caller gets 504 now, and the
thread finishes and frees its instance on its own.  A queued job whose
caller leaves is withdrawn; the caller is watched only while the job may
have to wait (no idle thread for it, or its function at its cap): a job an
idle thread is about to take is as good as started.

Fairness: jobs wait in one queue per function (``key``), and threads take
them in turn, one function after another, so a function with a thousand
calls queued delays a quiet one's call by at most one turn, not by the
thousand.  A function may hold at most ``max_running_per_key`` threads at
once (the others stay free for everyone else) and have at most
``max_queued_per_key`` calls waiting (past that, 503).

Theory of operation: ``trio.to_thread`` costs ~100 µs per hop on this
hardware, as much as the guest call it carries, so the hop is hand-made.  A
call is a job in its function's queue; a sandbox thread runs it, appends
it to a done deque and writes one byte to a pipe; a single Trio system task
waits on that pipe and reschedules each finished job's task.  The waiting
task parks with ``wait_task_rescheduled``: no thread cache, context copy or
limiter round trip on the way.

Even so, waking a sleeping thread costs ~50 µs on a virtual machine, twice
per call.  So either side may spin before it sleeps (see ``_handoff_py``):
an idle sandbox thread watches a doorbell the loop rings for every job, and
the loop, when this is the only call in flight, watches the job before it
parks.  Spinning burns CPU that a client or a neighbour could use, so each
side spins only while the waits it spins for have lately been shorter than
a wake-up (``SPIN_PAYS_NS``, a running average of what it saw), and for at
most twice that: measured with three clients (bench/RESULTS.md), the spin
no longer raises the CPU per request.  The loop's watch also ends as soon
as Trio's epoll descriptor has anything ready (a new connection, a request
on another one).
"""

from __future__ import annotations

import collections
import contextlib
import socket
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import outcome
import trio

from .. import _fastpath, _platform
from ..errors import CapacityExceeded, DeadlineExceeded
from . import _handoff_py

_implementation = _fastpath.pick("_handoff", _handoff_py)

T = TypeVar("T")

# The loop watches the one call in flight for up to this many times spin_us
# (an idle sandbox thread spins spin_us): its watch ends with the call, or
# once anything is ready on the loop.
LOOP_SPIN_FACTOR = 4
# Spinning must pay for itself: it burns the CPU a sleep would leave to a
# client or a neighbour, to save a wake-up (~50 µs of CPU and latency on a
# VM).  So each side spins only while the wait it spins for has lately been
# shorter than that (a running average of the waits it saw, spinning or
# not), and for at most twice that: an http.client caller, whose next
# request comes ~200 µs after the answer, gets no spinning at all.
SPIN_PAYS_NS = 50_000
_AVERAGE_SHIFT = 3  # running averages move an eighth of the way to each new sample


def _count_down(counts: collections.Counter[str], key: str) -> None:
    """One less for ``key``; at zero the key goes (a counter per function ever seen would only grow)."""
    if counts[key] > 1:
        counts[key] -= 1
    else:
        del counts[key]


def _loop_epoll_fd() -> int:
    """Trio's epoll descriptor (readable when the loop has I/O to serve), or -1.

    Trio has no public accessor; without it the loop spins only ``spin_us``.
    Linux only (_platform.EPOLL_WATCH): elsewhere Trio waits on kqueue or IOCP."""
    if not _platform.EPOLL_WATCH:
        return -1
    try:
        fd = trio._core._run.GLOBAL_RUN_CONTEXT.runner.io_manager._epoll.fileno()
    except AttributeError:
        return -1
    return fd if isinstance(fd, int) else -1


# The queue clean-ups handed over by inline calls wait in (no function can have this name).
CLEANUPS = "\0cleanups"
_NEVER = 1 << 62  # the deadline of a job nobody waits for


class CallerGone(Exception):
    """The caller left (its connection closed) while its call was still queued: it never ran."""


_QUEUED, _STARTED, _WITHDRAWN = range(3)


class _Job(Generic[T]):
    __slots__ = ("completion", "deadline_ns", "function", "key", "on_abandoned", "result", "state", "task",
                 "watch")

    def __init__(self, function: Callable[[], T], task: trio.lowlevel.Task | None,
                 on_abandoned: Callable[[], None] | None, deadline_ns: int, key: str) -> None:
        self.function = function
        self.key = key  # whose queue it waits in: the function's name
        self.task: trio.lowlevel.Task | None = task  # None once abandoned
        self.result: outcome.Outcome[T] | None = None
        self.completion = _implementation.Completion()
        self.on_abandoned = on_abandoned
        self.deadline_ns = deadline_ns  # past it, a job that has not started never will
        # _QUEUED -> _STARTED (a thread took it) or _WITHDRAWN (never to run), under Scheduler._claim.
        self.state = _QUEUED
        self.watch: trio.CancelScope | None = None  # the watch on a parked caller's connection


class Scheduler:
    def __init__(self, threads: int, max_queue: int, grace_s: float = 0.05, spin_us: int = 0,
                 max_running_per_key: int = 0, max_queued_per_key: int = 0) -> None:
        self.threads = threads
        self.max_queue = max_queue
        self.max_running_per_key = max_running_per_key or threads
        self.max_queued_per_key = max_queued_per_key or max_queue
        self.grace_s = grace_s
        self.running = 0  # submitted and not yet answered (queued + executing)
        self.busy_threads = 0  # threads running a job, abandoned ones included
        # All below is guarded by _claim (a job's state moves out of _QUEUED once).
        self._claim = threading.Lock()
        self._job_ready = threading.Condition(self._claim)  # a sleeping thread waits here
        self._queued = 0  # jobs waiting for a thread (withdrawn ones leave at once)
        self._queues: dict[str, collections.deque[_Job[Any]]] = {}  # per key, oldest first
        self._queued_by_key: collections.Counter[str] = collections.Counter()
        self._running_by_key: collections.Counter[str] = collections.Counter()
        self._turns: collections.deque[str] = collections.deque()  # keys that may start a job, in turn
        self._closing = False
        self._done: collections.deque[_Job[Any]] = collections.deque()
        # A socket pair, not a pipe: Trio can wait on a socket on every OS.
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._workers: list[threading.Thread] = []
        # Set by the thread that wrote the wake byte, cleared by the reaper
        # before it drains: under load, one wake-up collects many results.
        self._wake_pending = False
        self._reaper_token: trio.lowlevel.TrioToken | None = None
        self._loop_thread = 0
        self._doorbell = _implementation.Doorbell()
        self._after = threading.local()  # a sandbox thread's clean-ups for after the current answer
        self._spinner_idle = True  # one idle thread spins, the others sleep
        self._sleeping = 0  # threads waiting on _job_ready
        self._spin_ns = spin_us * 1000
        # The loop's watch: Trio's epoll descriptor and how long it may last, set by _start.
        self._loop_fd = -1
        self._loop_spin_ns = self._spin_ns
        # Running averages, for whether spinning pays: how long an idle thread
        # waited for its next job, and how long a job ran.
        self._idle_wait_ns = 0
        self._call_ns = 0

    @property
    def waiting(self) -> int:
        return self._queued

    async def run(self, function: Callable[[], T], timeout_ms: int,
                  on_abandoned: Callable[[], None] | None = None,
                  caller_gone: Callable[[], Awaitable[None]] | None = None, key: str = "") -> T:
        """``function()`` on a sandbox thread.  If it is abandoned (DeadlineExceeded
        here), ``on_abandoned`` runs on the event loop once it has ended after all.

        A job that has not started by its deadline, or whose caller is gone
        (``caller_gone()`` returned) or cancelled, is withdrawn: it never runs.
        ``key`` names the queue it waits in (its function): see Fairness above.
        """
        self._start()
        timeout_s = timeout_ms / 1000 + self.grace_s
        job = _Job(function, trio.lowlevel.current_task(), on_abandoned,
                   time.perf_counter_ns() + int(timeout_s * 1e9), key)
        self._enqueue(job)
        self.running += 1
        try:
            self._doorbell.ring()
            # Spin only while this is the one call in flight: under load the
            # loop has other connections to serve, and one wake-up collects
            # many results anyway.
            finished = job.completion.spin(
                self._loop_spin_ns if self.running == 1 and self._call_ns < SPIN_PAYS_NS else 0, self._loop_fd)
            if finished or not job.completion.park():
                assert job.result is not None  # finished while we spun: no wake-up to wait for
                return job.result.unwrap()
            if caller_gone is not None and job.state == _QUEUED and self._must_wait(job):
                job.watch = trio.CancelScope()
                trio.lowlevel.spawn_system_task(self._withdraw_when_gone, job, caller_gone)
            try:
                with trio.move_on_after(timeout_s):

                    def abandon(_: Any) -> trio.lowlevel.Abort:
                        if not self._withdraw(job):
                            job.task = None  # running: it ends on its own, its result is dropped
                        return trio.lowlevel.Abort.SUCCEEDED

                    result: outcome.Outcome[T] = await trio.lowlevel.wait_task_rescheduled(abandon)
                    return result.unwrap()
            finally:
                if job.watch is not None:
                    job.watch.cancel()
        finally:
            self.running -= 1
        raise DeadlineExceeded(f"the function exceeded its timeout of {timeout_ms} ms")

    def _enqueue(self, job: _Job[Any]) -> None:
        key = job.key
        with self._claim:
            if self._queued >= self.max_queue:
                raise CapacityExceeded(f"{self._queued} calls are already queued", retry_after=1)
            if self._queued_by_key[key] >= self.max_queued_per_key:
                raise CapacityExceeded(f"{self._queued_by_key[key]} calls of this function are already queued",
                                       retry_after=1)
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = collections.deque()
                if self._running_by_key[key] < self.max_running_per_key:
                    self._turns.append(key)
            queue.append(job)
            self._queued += 1
            self._queued_by_key[key] += 1
            self._job_ready.notify()

    def _take(self) -> _Job[Any] | None:
        """The next job to start, functions taking turns (holding _claim); None if none may start."""
        for _ in range(len(self._turns)):
            key = self._turns.popleft()
            queue = self._queues[key]
            job = queue.popleft()
            while job.state == _WITHDRAWN:  # its caller had its answer already
                if not queue:
                    del self._queues[key]
                    break
                job = queue.popleft()
            else:
                job.state = _STARTED
                self._queued -= 1
                _count_down(self._queued_by_key, key)
                self._running_by_key[key] += 1
                if not queue:
                    del self._queues[key]
                elif self._running_by_key[key] < self.max_running_per_key:
                    self._turns.append(key)  # to the back: the next job is another function's
                return job
        return None

    def _ended(self, key: str) -> None:
        """A job of ``key`` ended (holding _claim): the function may take its turn again."""
        _count_down(self._running_by_key, key)
        if key in self._queues and key not in self._turns and \
                self._running_by_key[key] < self.max_running_per_key:
            self._turns.append(key)
            self._job_ready.notify()

    def _withdraw(self, job: _Job[Any]) -> bool:
        """Take a job that has not started out of the queue for good; False if a thread has it."""
        with self._claim:
            if job.state != _QUEUED:
                return job.state == _WITHDRAWN
            job.state = _WITHDRAWN  # it stays in its deque until a thread skips it
            self._queued -= 1
            _count_down(self._queued_by_key, job.key)
            return True

    def _must_wait(self, job: _Job[Any]) -> bool:
        """Whether ``job`` may have to wait for a thread: more jobs are queued than
        threads idle, or its function is at its cap.  Only then is its caller
        watched (a watch per call costs ~10 % of the loop's time under load);
        a job an idle thread is about to take is as good as started."""
        with self._claim:
            idle = self._sleeping + (0 if self._spinner_idle else 1)  # (the spinner slot is taken: one spins)
            return self._queued > idle or self._running_by_key[job.key] >= self.max_running_per_key

    async def _withdraw_when_gone(self, job: _Job[Any], caller_gone: Callable[[], Awaitable[None]]) -> None:
        assert job.watch is not None
        with job.watch:
            try:
                await caller_gone()
            except Exception:  # a system task must not fail; a broken watch just stops watching
                return
            if job.task is not None and self._withdraw(job):
                task, job.task = job.task, None
                trio.lowlevel.reschedule(task, outcome.Error(CallerGone("the caller left before its call started")))

    def _start(self) -> None:
        token = trio.lowlevel.current_trio_token()
        if self._reaper_token is not token:  # once per trio.run
            trio.lowlevel.spawn_system_task(self._reap, name="wasmlambda-sandbox-completions")
            self._reaper_token = token
            self._loop_thread = threading.get_ident()
            self._loop_fd = _loop_epoll_fd()
            # Without the descriptor nothing would end a longer watch early.
            self._loop_spin_ns = min(self._spin_ns * (LOOP_SPIN_FACTOR if self._loop_fd >= 0 else 1),
                                     2 * SPIN_PAYS_NS)
        while len(self._workers) < min(self.threads, self.running + 1):
            thread = threading.Thread(target=self._work, name=f"wasmlambda-sandbox-{len(self._workers)}",
                                      daemon=True)
            thread.start()
            self._workers.append(thread)

    def _work(self) -> None:
        while (job := self._next_job()) is not None:
            if time.perf_counter_ns() > job.deadline_ns:  # its caller is about to get 504: not worth starting
                job.result = outcome.Error(DeadlineExceeded("the call waited in the queue past its deadline"))
                with self._claim:
                    self._ended(job.key)
            else:
                with self._claim:
                    self.busy_threads += 1
                started = time.perf_counter_ns()
                self._after.pending = []
                job.result = outcome.capture(job.function)
                took = time.perf_counter_ns() - started
                self._call_ns += (took - self._call_ns) >> _AVERAGE_SHIFT  # (a race between threads only blurs it)
                with self._claim:
                    self.busy_threads -= 1
                    self._ended(job.key)
            if job.completion.finish():  # the waiter stopped spinning and parked: wake it
                self._done.append(job)
                if not self._wake_pending:
                    self._wake_pending = True
                    with contextlib.suppress(OSError):  # (closed: the worker has stopped)
                        self._wake_write.send(b"\0")
            self._run_after()

    def after_answer(self, cleanup: Callable[[], None]) -> bool:
        """Run ``cleanup`` once the current call's answer is handed over (closing a
        used instance need not delay it): on a sandbox thread, after its job; on
        the loop (an inline call), as a job of its own on a sandbox thread.
        False if it cannot be taken (the queue is full): the caller cleans up."""
        pending: list[Callable[[], None]] | None = getattr(self._after, "pending", None)
        if pending is not None:
            pending.append(cleanup)
            return True
        if self._reaper_token is None or threading.get_ident() != self._loop_thread:
            return False
        try:
            self._enqueue(_Job(cleanup, None, None, _NEVER, CLEANUPS))
        except CapacityExceeded:
            return False
        self._start()
        self._doorbell.ring()
        return True

    def _run_after(self) -> None:
        pending: list[Callable[[], None]] | None = getattr(self._after, "pending", None)
        self._after.pending = None
        for cleanup in pending or ():
            try:
                cleanup()
            except Exception:  # a clean-up must not stop the thread
                traceback.print_exc()

    def _next_job(self) -> _Job[Any] | None:
        """The next job (None: close); one idle thread at a time spins for it a while
        before sleeping, if jobs have lately come that soon (SPIN_PAYS_NS)."""
        idle_from = time.perf_counter_ns()
        while True:
            with self._claim:
                job = self._take()
                if job is not None or self._closing:
                    self._waited(idle_from)
                    return job
                seen = self._doorbell.rings
            if self._spinner_idle and self._idle_wait_ns < SPIN_PAYS_NS:
                self._spinner_idle = False
                rung = self._doorbell.wait(seen, min(self._spin_ns, 2 * SPIN_PAYS_NS))
                self._spinner_idle = True
                if rung:
                    continue
            with self._claim:
                job = self._take()
                if job is not None or self._closing:
                    self._waited(idle_from)
                    return job
                self._sleeping += 1
                self._job_ready.wait()  # woken by _enqueue, _ended or close
                self._sleeping -= 1

    def _waited(self, idle_from: int) -> None:
        waited = time.perf_counter_ns() - idle_from
        self._idle_wait_ns += (waited - self._idle_wait_ns) >> _AVERAGE_SHIFT

    async def _reap(self) -> None:
        while True:
            await trio.lowlevel.wait_readable(self._wake_read)
            try:
                self._wake_read.recv(65536)
            except BlockingIOError:
                continue
            self._wake_pending = False
            while self._done:
                job = self._done.popleft()
                if job.task is not None:
                    assert job.result is not None
                    trio.lowlevel.reschedule(job.task, outcome.Value(job.result))
                elif job.on_abandoned is not None:  # an abandoned job's result is dropped here
                    try:
                        job.on_abandoned()
                    except Exception:  # the loop must outlive a faulty callback
                        traceback.print_exc()

    def close(self) -> None:
        """Stop the threads once their current jobs end (abandoned ones may still be running)."""
        with self._claim:
            self._closing = True
            self._job_ready.notify_all()
        self._workers.clear()
        self._wake_read.close()
        self._wake_write.close()
