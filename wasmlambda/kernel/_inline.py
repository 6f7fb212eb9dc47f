"""Which calls run inline: on the event loop's own thread, with no hop.

Theory of operation: handing a call to a sandbox thread and back costs the
loop more than a short guest call itself (two thread wake-ups, one more
epoll round, the scheduler's bookkeeping: bench/RESULTS.md, issue 17).  So
a warm call of a function whose calls have lately been short runs right on
the loop's thread.  The loop must never block for long, and the sandbox
guarantees it cannot: an inline call gets ``BUDGET_MS`` instead of its
timeout, and its first host call (state, nested calls, streaming) or
blocking WASI call (a sleep) traps it before it happens
(``sandbox.MustRunOnThread``).  Having done nothing outside its own instance,
it is then run again, from the start, on a sandbox thread, and its function
(this version, in this process) never runs inline again: a function can
hold the loop past the budget once, not twice.

What counts as short is the running average of the function's recent run
times (``CallHistory``), against the worker's ``inline_us`` setting.
"""

from __future__ import annotations

__all__ = ["BUDGET_MS", "CallHistory"]

# The longest an inline call may hold the loop (epoch ticks are 10 ms, so
# in fact 20-30 ms), once per function version: past it, it moves.
BUDGET_MS = 20
_AVERAGE_SHIFT = 3  # the average moves an eighth of the way to each new run time


class CallHistory:
    """How a function version's calls have gone lately, in this process."""

    __slots__ = ("inline", "run_ns")

    def __init__(self) -> None:
        self.run_ns = -1  # running average of its run times; -1: no call yet
        self.inline = True  # False once an inline call of it had to move to a thread

    def note(self, run_ns: int) -> None:
        if self.run_ns < 0:
            self.run_ns = run_ns
        else:
            self.run_ns += (run_ns - self.run_ns) >> _AVERAGE_SHIFT

    def short(self, limit_ns: int) -> bool:
        """Whether its next call may run inline: calls lately shorter than ``limit_ns``, none moved."""
        return self.inline and 0 <= self.run_ns < limit_ns
