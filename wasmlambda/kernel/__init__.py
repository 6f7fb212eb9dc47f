"""Registry, scheduler, warm pool, metering and the worker that ties them together."""

from .._money import dollars
from ._ledger import GROUPS as BILLING_GROUPS
from ._ledger import Ledger
from ._logs import MAX_PAGE_LINES
from ._manifest import METHODS, FunctionSpec, Limits
from ._meter import PriceModel, Usage
from ._peers import Peer, PeerRegistry, peer_registry
from ._pool import Pool
from ._worker import Invocation, Worker

__all__ = [
    "BILLING_GROUPS",
    "MAX_PAGE_LINES",
    "METHODS",
    "FunctionSpec",
    "Invocation",
    "Ledger",
    "Limits",
    "Peer",
    "PeerRegistry",
    "Pool",
    "PriceModel",
    "Usage",
    "Worker",
    "dollars",
    "peer_registry",
]
