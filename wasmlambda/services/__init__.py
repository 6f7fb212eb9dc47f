"""Host services guests can call: key-value state (SQLite or Redis)."""

from ._host import CallContext, Service, ServiceFailure, Services
from ._kv import KeyValueService, RedisStore, SQLiteStore, Store, open_store

__all__ = [
    "CallContext",
    "KeyValueService",
    "RedisStore",
    "SQLiteStore",
    "Service",
    "ServiceFailure",
    "Services",
    "Store",
    "open_store",
]
