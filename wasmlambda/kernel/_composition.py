"""Functions calling functions: ``wasmlambda_guest.invoke`` and ``map``.

Theory of operation: a nested call runs on the sandbox thread of the call
that made it (that guest is paused inside its host call), straight into
the callee's warm or restored instance: no HTTP, no queue.  ``map`` runs
its callees on a small pool of fan-out threads and returns their results
in order; a map inside a fan-out thread runs its callees one by one, so
the pool can never wait on itself.  Limits: call depth, fan-out width,
cycles (a function already on the call stack), and the outermost
request's deadline, which every nested call inherits.

``invoke_async`` (for async handlers) starts a callee on a fan-out thread
and answers a ticket at once; the guest's event loop then asks to ``wait``
for its tickets (for at most the time until its next timer) and resolves
the futures its coroutines await.  When the guest call returns, whatever it
started and did not await is waited for (``settle``), so its cost is on
the bill too.

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
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from ..errors import FunctionNotFound
from ..services import CallContext, Service, ServiceFailure

if TYPE_CHECKING:
    from ._worker import Worker

class InvokeService(Service):
    name = "invoke"

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._fan_out = ThreadPoolExecutor(max_workers=worker.settings.sandbox_threads,
                                           thread_name_prefix="wasmlambda-fan-out")
        self._local = threading.local()
        # request id -> ticket -> the invoke_async call running for it
        self._started: dict[str, dict[int, Future[Any]]] = {}
        self._tickets = itertools.count(1)
        self._lock = threading.Lock()

    def handle(self, context: CallContext, request: dict[str, Any]) -> Any:
        op = request.get("op")
        if op == "wait":
            return self._wait(request.get("tickets"), request.get("timeout_ms"), context)
        name = request.get("function")
        if not isinstance(name, str):
            raise ServiceFailure("function must be a function name")
        try:
            if op == "start":
                return self._start(name, request.get("event"), context)
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

    def _start(self, name: str, event: Any, context: CallContext) -> int:
        limit = self.worker.settings.max_fan_out
        with self._lock:
            started = self._started.setdefault(context.request_id, {})
            if len(started) >= limit:
                raise ServiceFailure(f"more than {limit} invoke_async calls pending; await some first")
            ticket = next(self._tickets)
            if getattr(self._local, "fanning_out", False):  # on a fan-out thread: run it here, never wait on the pool
                future: Future[Any] = Future()
                started[ticket] = future
            else:
                started[ticket] = future = self._fan_out.submit(self._fan_out_call, name, event, context)
                return ticket
        try:
            future.set_result(self._call(name, event, context))
        except Exception as exc:  # (the answer to its wait)
            future.set_exception(exc)
        return ticket

    def _wait(self, tickets: Any, timeout_ms: Any, context: CallContext) -> list[list[Any]]:
        """[[ticket, {"ok": result} | {"error": message}], ...] for the tickets that finished
        within ``timeout_ms`` (and before the call's deadline)."""
        if not isinstance(tickets, list) or not isinstance(timeout_ms, int):
            raise ServiceFailure("wait takes tickets (a list) and timeout_ms (an int)")
        with self._lock:
            started = self._started.get(context.request_id, {})
            futures = {ticket: started[ticket] for ticket in tickets if ticket in started}
        unknown = [[ticket, {"error": "invoke: wait: no such call pending"}] for ticket in tickets
                   if ticket not in futures]
        if unknown or not futures:
            return unknown
        left_s = (context.deadline_ns - time.perf_counter_ns()) / 1e9 if context.deadline_ns else timeout_ms / 1000
        wait(futures.values(), timeout=max(0.0, min(timeout_ms / 1000, left_s)), return_when=FIRST_COMPLETED)
        finished = []
        with self._lock:
            for ticket, future in futures.items():
                if future.done():
                    started.pop(ticket, None)
                    error = future.exception()
                    finished.append([ticket, {"ok": future.result()} if error is None
                                     else {"error": f"invoke: {error}"}])
        return finished

    def settle(self, request_id: str) -> None:
        """Wait for the invoke_async calls a finished guest call left running (their cost is on its bill)."""
        if not self._started:
            return
        with self._lock:
            left = self._started.pop(request_id, None)
        if left:
            wait(left.values())

    def _fan_out_call(self, name: str, event: Any, context: CallContext) -> Any:
        self._local.fanning_out = True
        return self._call(name, event, context)

    def close(self) -> None:
        self._fan_out.shutdown(wait=False, cancel_futures=True)
