"""The guest's asyncio event loop: no sockets, no self-pipe, no threads.

Theory of operation: asyncio's own loops wait on a selector over sockets
(and wake themselves through a socket pair); the sandbox has neither.  This
loop is asyncio's ``BaseEventLoop`` with a stand-in selector: when the loop
has nothing ready, it either sleeps until its next timer (the patched,
interruptible ``time.sleep``, so the host's deadline still stops it) or,
while host operations are pending (``invoke_async``), asks the host to wait
until one of them finishes, or the next timer is due.  Those answers resolve
the futures the awaiting coroutines hold.

One loop per instance, made on first use (or at deploy, for an ASGI app's
lifespan) and kept: it lives in the snapshot like any module state.  Each
call runs its coroutine to completion; tasks it leaves behind are cancelled
when it returns (a call owns what it starts).  ``asyncio.run`` and
``asyncio.new_event_loop`` inside handlers make loops of this kind too.
"""

import asyncio
import asyncio.base_events
import json
import time

import _wl_host

__all__ = ["GuestLoop", "inline_thread_pools", "loop", "run"]

# How long one host wait may last before the loop looks at its timers again.
_MAX_HOST_WAIT_MS = 1000


class _Waiter:
    """What ``BaseEventLoop._run_once`` calls a selector: 'what is ready within ``timeout``?'"""

    def __init__(self, loop):
        self._loop = loop

    def select(self, timeout):
        loop = self._loop
        if loop._host_pending:
            loop._wait_for_host(timeout)
        elif timeout is None:
            raise RuntimeError(
                "the handler awaits something nothing can complete: no timer is set and no host call is pending "
                "(sockets, subprocesses and threads are not available in the sandbox)")
        elif timeout > 0:
            time.sleep(timeout)
        return []

    def close(self):
        pass


class GuestLoop(asyncio.BaseEventLoop):
    def __init__(self):
        super().__init__()
        self._selector = _Waiter(self)
        self._host_pending = {}  # host ticket -> the future its answer resolves

    def _process_events(self, event_list):
        pass

    def run_in_executor(self, executor, func, *args):
        """No threads in the sandbox: ``asyncio.to_thread`` and executors run the function here, now."""
        future = self.create_future()
        try:
            future.set_result(func(*args))
        except BaseException as exc:
            future.set_exception(exc)
        return future

    def _write_to_self(self):
        pass  # no other thread can schedule work here

    def host_future(self, ticket):
        """A future the host's answer to ``ticket`` (an ``invoke_async``) will resolve."""
        future = self.create_future()
        self._host_pending[ticket] = future
        return future

    def _wait_for_host(self, timeout):
        wait_ms = _MAX_HOST_WAIT_MS if timeout is None else min(int(timeout * 1000) + 1, _MAX_HOST_WAIT_MS)
        answer = json.loads(_wl_host.call(json.dumps(
            {"service": "invoke", "op": "wait", "tickets": list(self._host_pending), "timeout_ms": wait_ms}
        ).encode()))
        if "error" in answer:  # the host refused the wait itself: every pending call fails with it
            finished = [[ticket, {"error": answer["error"]}] for ticket in self._host_pending]
        else:
            finished = answer["ok"]
        for ticket, outcome in finished:
            future = self._host_pending.pop(ticket, None)
            if future is None or future.done():
                continue
            if "error" in outcome:
                from wasmlambda_guest import ServiceError

                future.set_exception(ServiceError(outcome["error"]))
            else:
                future.set_result(outcome["ok"])


class _Policy(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self):
        return GuestLoop()


asyncio.set_event_loop_policy(_Policy())
_loop = None
kept = set()  # tasks that outlive calls (an ASGI app's lifespan)


def loop():
    """This instance's loop (made on first use, then kept)."""
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = GuestLoop()
        asyncio.set_event_loop(_loop)
    return _loop


def run(awaitable, settle=True):
    """Run ``awaitable`` to completion on the instance's loop; with ``settle``, cancel
    the tasks it left running (but those in ``kept``, such as an ASGI app's lifespan)."""
    guest_loop = loop()
    try:
        return guest_loop.run_until_complete(awaitable)
    finally:
        leftovers = [task for task in asyncio.all_tasks(guest_loop) if task not in kept] if settle else ()
        for task in leftovers:
            task.cancel()
        if leftovers:
            guest_loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))


def inline_thread_pools():
    """Libraries that hand work to a thread pool (anyio's ``to_thread.run_sync``,
    which Starlette uses for plain ``def`` endpoints) run it inline instead:
    the sandbox has no threads.  Called after a function's import."""
    import sys

    to_thread = sys.modules.get("anyio.to_thread")
    if to_thread is not None and not getattr(to_thread.run_sync, "_wl_inline", False):
        async def run_sync(func, *args, **kwargs):
            return func(*args)

        run_sync._wl_inline = True
        to_thread.run_sync = run_sync
