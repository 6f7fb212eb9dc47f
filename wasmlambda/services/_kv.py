"""Key-value state for guests, over SQLite (embedded default) or Redis.

Keys live in namespaces: a function's own (its name, private to it), and
shared ones (``shared:<name>``) that the operator granted to it; a package
cannot grant itself anything (see kernel/_access.py).  Values are bytes;
counters are decimal ASCII, as Redis keeps them, so both backends agree on
every operation.
"""

from __future__ import annotations

import base64
import binascii
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from ..errors import ConfigError
from ._host import CallContext, Service, ServiceFailure

MAX_KEY_BYTES = 1024
_SHARED = "shared:"
_NOT_A_COUNTER = "the key does not hold an integer counter"
MAX_VALUE_BYTES = 1 << 20


@contextmanager
def _failures(*errors: type[BaseException]) -> Iterator[None]:
    """A backend's own errors, as the ServiceFailure the guest sees."""
    try:
        yield
    except errors as exc:
        raise ServiceFailure(f"the state store failed: {exc}") from None


class Store(Protocol):
    """A backend; its failures surface as ServiceFailure."""

    def get(self, namespace: str, key: str) -> bytes | None: ...

    def put(self, namespace: str, key: str, value: bytes) -> None: ...

    def delete(self, namespace: str, key: str) -> bool: ...

    def incr(self, namespace: str, key: str, amount: int) -> int: ...

    def keys(self, namespace: str, prefix: str) -> list[str]: ...

    def close(self) -> None: ...


_SELECT = "SELECT value FROM kv WHERE namespace = ? AND key = ?"


class SQLiteStore:
    """One connection behind a lock: calls come from several sandbox threads."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS kv (namespace TEXT, key TEXT, value BLOB, "
                         "PRIMARY KEY (namespace, key)) WITHOUT ROWID")

    def get(self, namespace: str, key: str) -> bytes | None:
        with self._lock, _failures(sqlite3.Error):
            row = self._db.execute(_SELECT, (namespace, key)).fetchone()
        return None if row is None else bytes(row[0])

    def put(self, namespace: str, key: str, value: bytes) -> None:
        with self._lock, _failures(sqlite3.Error):
            self._db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", (namespace, key, value))

    def delete(self, namespace: str, key: str) -> bool:
        with self._lock, _failures(sqlite3.Error):
            return self._db.execute("DELETE FROM kv WHERE namespace = ? AND key = ?", (namespace, key)).rowcount > 0

    def incr(self, namespace: str, key: str, amount: int) -> int:
        with self._lock, _failures(sqlite3.Error):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(_SELECT, (namespace, key)).fetchone()
                value = _as_counter(None if row is None else bytes(row[0])) + amount
                self._db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", (namespace, key, str(value).encode()))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return value

    def keys(self, namespace: str, prefix: str) -> list[str]:
        with self._lock, _failures(sqlite3.Error):
            rows = self._db.execute("SELECT key FROM kv WHERE namespace = ? AND substr(key, 1, ?) = ? ORDER BY key",
                                    (namespace, len(prefix), prefix)).fetchall()
        return [row[0] for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class RedisStore:
    """Keys are ``wl:<function>:<key>`` and ``wls:<name>:<key>`` for ``shared:<name>``:
    neither a function's nor a shared name contains a colon, so no two
    namespaces can spell the same Redis key."""

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._errors = redis.RedisError
        self._not_a_counter = redis.ResponseError  # what INCRBY answers for a value that is not one

    def _key(self, namespace: str, key: str) -> str:
        if namespace.startswith(_SHARED):
            return f"wls:{namespace[len(_SHARED):]}:{key}"
        return f"wl:{namespace}:{key}"

    def get(self, namespace: str, key: str) -> bytes | None:
        with _failures(self._errors):
            return cast("bytes | None", self._redis.get(self._key(namespace, key)))

    def put(self, namespace: str, key: str, value: bytes) -> None:
        with _failures(self._errors):
            self._redis.set(self._key(namespace, key), value)

    def delete(self, namespace: str, key: str) -> bool:
        with _failures(self._errors):
            return int(self._redis.delete(self._key(namespace, key))) > 0

    def incr(self, namespace: str, key: str, amount: int) -> int:
        with _failures(self._errors):
            try:
                return int(self._redis.incrby(self._key(namespace, key), amount))
            except self._not_a_counter:
                raise ServiceFailure(_NOT_A_COUNTER) from None

    def keys(self, namespace: str, prefix: str) -> list[str]:
        pattern = self._key(namespace, re.sub(r"([*?\[\]\\])", r"\\\1", prefix)) + "*"
        start = len(self._key(namespace, ""))
        with _failures(self._errors):
            return sorted(key.decode()[start:] for key in self._redis.scan_iter(match=pattern, count=1000))

    def close(self) -> None:
        self._redis.close()


def open_store(spec: str, data_dir: Path) -> Store:
    """``sqlite`` (the data dir's state.sqlite3) or ``redis://host:port/db``."""
    if spec == "sqlite":
        data_dir.mkdir(parents=True, exist_ok=True)
        return SQLiteStore(data_dir / "state.sqlite3")
    if urlsplit(spec).scheme in ("redis", "rediss", "unix"):
        return RedisStore(spec)
    raise ConfigError(f"state must be 'sqlite' or a redis:// URL, got {spec!r}")


def _refusal(function: str, namespace: object) -> str:
    if not isinstance(namespace, str):
        return "namespace must be a string"
    if namespace.startswith(_SHARED):
        return (f"shared namespace {namespace!r} is not granted to {function!r} (the worker's operator grants it: "
                f"wasmlambda namespaces grant {namespace[len(_SHARED):]} {function})")
    return (f"namespace {namespace!r} is private to the function of that name; share state through a "
            f"'shared:<name>' namespace the operator grants to {function!r}")


def _as_counter(value: bytes | None) -> int:
    if value is None:
        return 0
    try:
        return int(value)
    except ValueError:
        raise ServiceFailure(_NOT_A_COUNTER) from None


class KeyValueService(Service):
    name = "kv"

    def __init__(self, store: Store) -> None:
        self.store = store

    def handle(self, context: CallContext, request: dict[str, Any]) -> Any:
        namespace = request.get("namespace") or context.function
        if namespace != context.function and namespace not in context.namespaces:
            raise ServiceFailure(_refusal(context.function, namespace))
        op = request.get("op")
        if op == "keys":
            prefix = request.get("prefix", "")
            if not isinstance(prefix, str):
                raise ServiceFailure("prefix must be a string")
            return self.store.keys(namespace, prefix)
        key = request.get("key")
        if not isinstance(key, str) or not key or len(key.encode()) > MAX_KEY_BYTES:
            raise ServiceFailure(f"keys are non-empty strings of at most {MAX_KEY_BYTES} bytes")
        if op == "get":
            value = self.store.get(namespace, key)
            return None if value is None else base64.b64encode(value).decode()
        if op == "put":
            try:
                data = base64.b64decode(request["value"], validate=True)
            except (KeyError, TypeError, binascii.Error):
                raise ServiceFailure("put needs a base64 value") from None
            if len(data) > MAX_VALUE_BYTES:
                raise ServiceFailure(f"values are at most {MAX_VALUE_BYTES} bytes")
            self.store.put(namespace, key, data)
            return None
        if op == "delete":
            return self.store.delete(namespace, key)
        if op == "incr":
            amount = request.get("amount", 1)
            if not isinstance(amount, int) or isinstance(amount, bool):
                raise ServiceFailure("amount must be an integer")
            return self.store.incr(namespace, key, amount)
        raise ServiceFailure(f"unknown operation {op!r}")

    def close(self) -> None:
        self.store.close()
