"""Registry, scheduler, warm pool, metering and the worker that ties them together."""

from ._ledger import GROUPS as BILLING_GROUPS
from ._ledger import Ledger
from ._meter import PriceModel, Usage, dollars
from ._package import FunctionSpec, Limits
from ._pool import Pool
from ._worker import Invocation, Worker

__all__ = [
    "BILLING_GROUPS",
    "FunctionSpec",
    "Invocation",
    "Ledger",
    "Limits",
    "Pool",
    "PriceModel",
    "Usage",
    "Worker",
    "dollars",
]
