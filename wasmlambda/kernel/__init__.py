"""Registry, scheduler, warm pool and the worker that ties them together."""

from ._package import FunctionSpec, Limits
from ._pool import Pool
from ._worker import Invocation, Worker

__all__ = ["FunctionSpec", "Invocation", "Limits", "Pool", "Worker"]
