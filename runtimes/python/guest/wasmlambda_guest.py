"""What a handler can use from inside the sandbox.

    from wasmlambda_guest import context, log

    def f(event):
        log("called as", context.function_name, "request", context.request_id)
        if context.remaining_time_ms() < 100:
            ...

``print`` output, ``log`` lines and the traceback of an exception become the
invocation's logs (``GET /logs/<fn>``, ``wasmlambda logs <fn>``).
"""

import sys
import time

__all__ = ["Context", "context", "log"]


class Context:
    """The current invocation.  The worker fills it in before each call."""

    __slots__ = ("_deadline", "function_name", "memory_limit_mb", "request_id")

    def __init__(self):
        self.function_name = ""
        self.request_id = ""
        self.memory_limit_mb = 0
        self._deadline = 0.0

    def remaining_time_ms(self):
        """Milliseconds left before the worker stops this call."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def __repr__(self):
        return "Context(function_name=%r, request_id=%r, memory_limit_mb=%r, remaining_time_ms=%r)" % (
            self.function_name, self.request_id, self.memory_limit_mb, self.remaining_time_ms())


context = Context()


def log(*values, sep=" "):
    """Add one line to this invocation's logs."""
    print(*values, sep=sep, file=sys.stdout)
