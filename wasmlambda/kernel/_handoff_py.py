"""Handing a call between the event loop and a sandbox thread.

A thread that blocks and is woken later costs ~50 µs on a virtual machine
(the idle core has to be brought back), and a call makes two such hops: the
loop hands it to a sandbox thread, the thread hands the result back.  The
Cython twin (wasmlambda/_fastpath/_handoff.pyx) lets each side spin for a
short while, without the GIL, before it blocks.  This pure-Python twin keeps
the same interface and never spins: spinning while holding the GIL would
starve the very thread it waits for.
"""

from __future__ import annotations

import threading

_RUNNING, _FINISHED, _PARKED = range(3)


class Completion:
    """The state of one call: finished by the sandbox thread, awaited by the loop."""

    __slots__ = ("_lock", "_state")

    def __init__(self) -> None:
        self._state = _RUNNING
        self._lock = threading.Lock()

    def spin(self, max_ns: int, watch: int = -1) -> bool:
        """Waiter: True once the call has finished; the Cython twin waits up to
        ``max_ns``, and stops early once the epoll descriptor ``watch`` has
        anything ready (this twin does not wait)."""
        return self._state == _FINISHED

    def park(self) -> bool:
        """Waiter: True if it must now sleep until woken, False if the call already finished."""
        with self._lock:
            if self._state == _FINISHED:
                return False
            self._state = _PARKED
            return True

    def finish(self) -> bool:
        """Sandbox thread: True if the waiter parked and must be woken."""
        with self._lock:
            if self._state == _PARKED:
                return True
            self._state = _FINISHED
            return False


class Doorbell:
    """Rung by the loop for every call it queues; an idle sandbox thread watches it."""

    __slots__ = ("rings",)

    def __init__(self) -> None:
        self.rings = 0

    def ring(self) -> None:
        self.rings += 1

    def wait(self, seen: int, max_ns: int) -> bool:
        """True once rung since ``seen`` (this twin does not wait)."""
        return self.rings != seen
