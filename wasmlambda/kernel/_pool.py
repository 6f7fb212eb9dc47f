"""Warm instances, kept per function version and evicted globally.

Theory of operation: after a call, a healthy instance of a ``warm`` function
goes back here; the next call of the same version takes the most recently
used one (its pages are the likeliest to be resident).  Three things evict,
oldest first: idleness past ``idle_timeout_s``, the linear memory of idle
instances exceeding the budget, and the pooling allocator's slot count
(``max_instances``, shared with running calls).  The Trio thread and,
for nested calls (``wasmlambda_guest.invoke``), sandbox threads use the
pool, so every operation holds a lock; none of them blocks for long.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from ..sandbox import Instance

FunctionKey = tuple[str, str]  # (name, version of its code and secrets)


class Pool:
    def __init__(self, memory_budget: int, idle_timeout_s: float, max_instances: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.memory_budget = memory_budget
        self.idle_timeout_s = idle_timeout_s
        self.max_instances = max_instances
        self._clock = clock
        # Idle instances, least recently used first: instance -> (key, bytes, since).
        self._idle: OrderedDict[Instance, tuple[FunctionKey, int, float]] = OrderedDict()
        self._by_function: dict[FunctionKey, list[Instance]] = {}
        self.idle_bytes = 0
        self.busy = 0
        # Most instances ever live at once: each one past the previous mark
        # made one more pooling slot resident (a freed slot stays mapped).
        self.high_water = 0
        self.evictions = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._idle)

    def acquire(self, key: FunctionKey, cold: bool = True) -> Instance | None:
        """A warm instance for ``key``, or None: the caller starts one cold
        (room for it is made here); with ``cold`` false, None leaves the pool
        as it was (the caller will not start one)."""
        with self._lock:
            stack = self._by_function.get(key)
            if stack:
                self.busy += 1
                instance = stack.pop()
                self.idle_bytes -= self._idle.pop(instance)[1]
                return instance
            if not cold:
                return None
            self.busy += 1
            while self._idle and len(self._idle) + self.busy > self.max_instances:
                self._evict_oldest()
            self.high_water = max(self.high_water, len(self._idle) + self.busy)
            return None

    def release(self, key: FunctionKey, instance: Instance | None, keep: bool,
                defer: Callable[[Callable[[], None]], bool] | None = None) -> None:
        """End a lease; ``keep`` puts a healthy instance back for reuse.  An instance
        not kept is closed (its slot reset, ~0.5 ms), through ``defer`` if given
        (it returns False when it cannot take the job): after the call's answer is
        on its way.  It counts as busy until it is closed."""
        if instance is not None and (not keep or instance.dead) and defer is not None \
                and defer(lambda: self._discard(instance)):
            return
        with self._lock:
            self.busy -= 1
            if instance is None:
                return
            if not keep or instance.dead:
                instance.close()
                return
            size = instance.memory_size()
            self._idle[instance] = (key, size, self._clock())
            stack = self._by_function.get(key)
            if stack is None:
                stack = self._by_function[key] = []
            stack.append(instance)  # (setdefault would build a list on every release)
            self.idle_bytes += size
            while self.idle_bytes > self.memory_budget:
                self._evict_oldest()

    def _discard(self, instance: Instance) -> None:
        try:
            instance.close()
        finally:
            with self._lock:
                self.busy -= 1

    def drop(self, name: str) -> None:
        """Forget every idle instance of a function (redeployed or removed)."""
        with self._lock:
            for key in [key for key in self._by_function if key[0] == name]:
                for instance in self._by_function.pop(key):
                    self.idle_bytes -= self._idle.pop(instance)[1]
                    instance.close()

    def evict_idle(self) -> int:
        with self._lock:
            deadline = self._clock() - self.idle_timeout_s
            evicted = 0
            while self._idle and next(iter(self._idle.values()))[2] <= deadline:
                self._evict_oldest()
                evicted += 1
            return evicted

    def _evict_oldest(self) -> None:
        instance, (key, size, _) = self._idle.popitem(last=False)
        self._by_function[key].remove(instance)
        if not self._by_function[key]:
            del self._by_function[key]
        self.idle_bytes -= size
        self.evictions += 1
        instance.close()

    def close(self) -> None:
        with self._lock:
            while self._idle:
                self._evict_oldest()
