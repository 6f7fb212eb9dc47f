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

import json
import threading
from concurrent.futures import ThreadPoolExecutor, wait
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
