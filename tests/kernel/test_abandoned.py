"""A request abandoned at its deadline (504) whose nested calls end later:
their cost still reaches its ledger row."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import trio

from guest_sdk import build_bytes
from wasmlambda.config import Settings
from wasmlambda.errors import DeadlineExceeded
from wasmlambda.kernel import Worker
from wasmlambda.sandbox import Runtime, RuntimeImage
from wasmlambda.services import CallContext, Service, Services

from ..conftest import CACHE_DIR, FunctionFactory


class Stall(Service):
    """Blocks the sandbox thread in the host, where no epoch can interrupt it."""

    name = "stall"

    def handle(self, context: CallContext, request: dict[str, Any]) -> Any:
        time.sleep(0.4)
        return None

    def close(self) -> None:
        pass


def test_nested_calls_ending_after_a_504_are_billed(runtime_image: RuntimeImage, make_function: FunctionFactory,
                                                    tmp_path: Path) -> None:
    services = Services({"stall": Stall()})
    runtime = Runtime(runtime_image, CACHE_DIR, max_instances=4, max_memory_mb=128, host_dispatch=services.dispatch)
    caller = make_function("caller", """
        from wasmlambda_guest import ServiceError, invoke

        def f(event):
            try:
                invoke("stalls", None)
            except ServiceError:
                pass  # the callee hit the shared deadline once the host let go of it
            return "done"
    """, toml="[limits]\ntimeout_ms = 100\n")
    stalls = make_function("stalls", """
        import wasmlambda_guest

        def f(event):
            return wasmlambda_guest._service({"service": "stall", "op": "wait"})
    """)

    async def scenario() -> None:
        worker = Worker(Settings(data_dir=tmp_path / "data"), runtime, services, lambda _: None)
        try:
            for folder in (caller, stalls):
                await worker.deploy(folder.name, build_bytes(folder, progress=lambda _: None, check=False))
            answered = await worker.invoke("caller", b"null")
            assert isinstance(answered.error, DeadlineExceeded)
            assert answered.nested_calls == 0  # the callee was still stalled when the 504 went out
            assert worker.ledger is not None
            row = await worker.ledger.find(answered.request_id)
            assert row is not None and row["cost_pusd"] == answered.cost_pusd and row["nested_calls"] == 0
            # The stall ends, the callee and then the caller trap at the deadline: the row is rewritten.
            with trio.fail_after(10):
                while (row := await worker.ledger.find(answered.request_id)) is None or not row["nested_calls"]:
                    await trio.sleep(0.01)
            assert row["nested_calls"] == 1 and row["nested_cost_pusd"] > 0
            assert row["cost_pusd"] == answered.cost_pusd + row["nested_cost_pusd"]
        finally:
            worker.close()

    try:
        trio.run(scenario)
    finally:
        runtime.close()
