"""Functions calling functions: ``wasmlambda_guest.invoke`` and ``map``.

Theory of operation: a nested call runs on the sandbox thread of the call
that made it (that guest is paused inside its host call), straight into
the callee's warm or restored instance: no HTTP, no queue.  ``map`` runs
its callees on a small pool of fan-out threads and returns their results
in order; a map inside a fan-out thread runs its callees one by one, so
the pool can never wait on itself.  Limits: call depth, fan-out width,
cycles (a function already on the call stack), and the outermost
request's deadline, which every nested call inherits.

Billing: each nested call is metered like any other, and its price (with
its own callees') is added to the :class:`Bill` of the request that made
it, which the ledger row and the cost headers of that request include.  So
no nested call may outlive its caller: a failed ``map`` returns only once
the items already running have finished.
"""

from __future__ import annotations

import itertools
import json
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from ..errors import FunctionNotFound
from ..services import CallContext, Service, ServiceFailure

if TYPE_CHECKING:
    from ._worker import Worker

Quote = tuple[int, int, int, int]  # cost, memory-time part, at 1 ms, at 100 ms (pico-dollars)


# Bills are added to from fan-out threads; one lock for all of them is
# cheaper than a lock per bill (one per call), and never held for long.
_BILLS_LOCK = threading.Lock()


class Bill:
    """What a call's nested calls cost; callees may add from several threads."""

    __slots__ = ("_ids", "calls", "inline_cpu_ns", "thread", "totals")

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.calls = 0
        self.totals: Quote = (0, 0, 0, 0)
        # Set by the call's own sandbox thread: nested calls that ran on that
        # thread (invoke, not map) add their CPU time here, and the call's own
        # CPU time leaves it out (it is on their bills).
        self.thread = 0
        self.inline_cpu_ns = 0

    def next_id(self) -> int:
        return next(self._ids)  # atomic: itertools.count is C code under the GIL

    def with_own(self, quote: Quote) -> Quote:
        """A call's own quote plus everything its callees cost."""
        if not self.calls:
            return quote  # the common case, on every request
        cost, memory, at_1ms, at_100ms = self.totals  # unrolled: this runs for every call that made calls
        return quote[0] + cost, quote[1] + memory, quote[2] + at_1ms, quote[3] + at_100ms

    def add(self, quote: Quote, callee: Bill) -> None:
        """A finished nested call: its own quote, plus what its callees (``callee``) cost."""
        cost, memory, at_1ms, at_100ms = callee.with_own(quote)
        with _BILLS_LOCK:
            self.calls += 1 + callee.calls
            totals = self.totals
            self.totals = (totals[0] + cost, totals[1] + memory, totals[2] + at_1ms, totals[3] + at_100ms)


class InvokeService(Service):
    name = "invoke"

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._fan_out = ThreadPoolExecutor(max_workers=worker.settings.sandbox_threads,
                                           thread_name_prefix="wasmlambda-fan-out")
        self._local = threading.local()

    def handle(self, context: CallContext, request: dict[str, Any]) -> Any:
        name = request.get("function")
        if not isinstance(name, str):
            raise ServiceFailure("function must be a function name")
        op = request.get("op")
        try:
            if op == "map":
                events = request.get("events")
                if not isinstance(events, list):
                    raise ServiceFailure("events must be a list")
                return self._map(name, events, context)
        except FunctionNotFound as exc:
            raise ServiceFailure(str(exc)) from None
        raise ServiceFailure(f"unknown operation {op!r}")

    def handle_bytes(self, context: CallContext, op: str, payload: bytes) -> bytes:
        """``invoke``: the payload is the callee's name, NUL, its JSON event;
        event and result pass through as bytes."""
        name, separator, event = payload.partition(b"\0")
        if op != "call" or not separator:
            raise ServiceFailure(f"unknown operation {op!r}")
        try:
            return self.worker.call_nested(name.decode(), event, context)
        except FunctionNotFound as exc:
            raise ServiceFailure(str(exc)) from None

    def _call(self, name: str, event: Any, context: CallContext) -> Any:
        result = self.worker.call_nested(name, json.dumps(event).encode(), context)
        return json.loads(result)

    def _map(self, name: str, events: list[Any], context: CallContext) -> list[Any]:
        limit = self.worker.settings.max_fan_out
        if len(events) > limit:
            raise ServiceFailure(f"map over {len(events)} events; at most {limit} are allowed")
        if getattr(self._local, "fanning_out", False):
            return [self._call(name, event, context) for event in events]
        futures = [self._fan_out.submit(self._fan_out_call, name, event, context) for event in events]
        results: list[Any] = []
        try:
            for index, future in enumerate(futures):
                try:
                    results.append(future.result())
                except ServiceFailure as exc:
                    raise ServiceFailure(f"map item {index}: {exc}") from None
        finally:
            if len(results) < len(futures):
                # Failed: drop the items not started yet, and wait for the running
                # ones, whose cost goes onto this call's bill (read when it ends).
                for pending in futures:
                    pending.cancel()
                wait(futures)
        return results

    def _fan_out_call(self, name: str, event: Any, context: CallContext) -> Any:
        self._local.fanning_out = True
        return self._call(name, event, context)

    def close(self) -> None:
        self._fan_out.shutdown(wait=False, cancel_futures=True)
