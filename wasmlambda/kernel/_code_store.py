"""The code store several workers share: deployed packages in Redis.

Theory of operation: a worker's own data dir holds what it runs (code,
snapshot); with ``code_store = "redis://..."`` it also shares what is
deployed through it, so that every worker of a cluster can run every
function.  Keys (``wlc:`` cannot clash with key-value state, whose keys
start ``wl:`` or ``wls:``)::

    wlc:index           hash  name -> version (the package's SHA-256 prefix)
    wlc:package:<name>  hash  {"version", "package"}: the tar.gz as deployed
    wlc:changes         pub/sub channel: the name of each deployed or removed function
    wlc:peers           hash  process id -> {"process", "worker", "url"} (see _peers.py)
    wlc:doc:<name>      string: the cluster's invoke keys and namespace grants (JSON, see _access.py);
                        a change is announced on wlc:changes as ACCESS_CHANGED

A deploy writes the package and the index entry in one transaction, then
publishes the name.  Other workers do not build on the message: they drop
their copy if its version differs, and fetch and build (snapshot included)
on the function's first call there, so each worker only holds the code it
is sent, which with consistent-hash routing is about its share.  A worker
that was down reconciles at start: its copies that the index no longer
names, or names at another version, are dropped.  Between a deploy and the
message reaching a worker (about a millisecond) that worker may still serve
the old version; a single worker's processes do not have that window.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any, cast

from ..errors import ServiceUnavailable

__all__ = ["ACCESS_CHANGED", "SUBSCRIBED", "CodeStore"]

_INDEX = "wlc:index"
_CHANNEL = "wlc:changes"
_PEERS = "wlc:peers"
# Announced when invoke keys or grants change (no function has this name).
ACCESS_CHANGED = "\0access"
# Given to listen's on_change once subscribed: changes from here on will be seen.
SUBSCRIBED = "\0subscribed"


def _package_key(name: str) -> str:
    return f"wlc:package:{name}"


class CodeStore:
    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        self._redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._errors = redis.RedisError

    @contextlib.contextmanager
    def _failures(self) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            raise ServiceUnavailable(f"the shared code store ({self.url}) is unavailable: {exc}") from None

    def put(self, name: str, version: str, package: bytes) -> None:
        with self._failures():
            pipeline = self._redis.pipeline(transaction=True)
            pipeline.hset(_package_key(name), mapping={"version": version, "package": package})
            pipeline.hset(_INDEX, name, version)
            pipeline.publish(_CHANNEL, name)
            pipeline.execute()

    def delete(self, name: str) -> None:
        with self._failures():
            pipeline = self._redis.pipeline(transaction=True)
            pipeline.delete(_package_key(name))
            pipeline.hdel(_INDEX, name)
            pipeline.publish(_CHANNEL, name)
            pipeline.execute()

    def fetch(self, name: str) -> tuple[str, bytes] | None:
        """(version, package) of the shared function, or None if there is none."""
        with self._failures():
            entry = cast("dict[bytes, bytes]", self._redis.hgetall(_package_key(name)))
        if not entry:
            return None
        return entry[b"version"].decode(), entry[b"package"]

    def index(self) -> dict[str, str]:
        with self._failures():
            entries = cast("dict[bytes, bytes]", self._redis.hgetall(_INDEX))
        return {name.decode(): version.decode() for name, version in entries.items()}

    def listen(self, on_change: Callable[[str], None], stopped: Callable[[], bool]) -> None:
        """Call ``on_change(name)`` for every change announced, until ``stopped()``
        (checked every second), after ``on_change(SUBSCRIBED)`` once the
        subscription is in place; blocking: run it on a thread.  Raises
        ServiceUnavailable when the connection is lost (the caller reconciles
        and listens again)."""
        with self._failures():
            subscription: Any = self._redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            subscription.subscribe(_CHANNEL)
            on_change(SUBSCRIBED)
            try:
                while not stopped():
                    message = subscription.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        on_change(message["data"].decode())
            finally:
                subscription.close()

    def document(self, name: str) -> _RedisDocument:
        return _RedisDocument(self, name)

    def peer_registry(self) -> _RedisPeers:
        return _RedisPeers(self)

    def close(self) -> None:
        self._redis.close()


class _RedisDocument:
    """A JSON document the workers share; saving it tells them to re-read it."""

    def __init__(self, store: CodeStore, name: str) -> None:
        self._store, self._key = store, f"wlc:doc:{name}"

    def load(self) -> dict[str, Any]:
        with self._store._failures():
            text = self._store._redis.get(self._key)
        document = json.loads(text) if text else {}
        return document if isinstance(document, dict) else {}

    def save(self, document: dict[str, Any]) -> None:
        with self._store._failures():
            pipeline = self._store._redis.pipeline(transaction=True)
            pipeline.set(self._key, json.dumps(document, sort_keys=True))
            pipeline.publish(_CHANNEL, ACCESS_CHANGED)
            pipeline.execute()


class _RedisPeers:
    """Every process of every worker of the cluster, in one Redis hash."""

    def __init__(self, store: CodeStore) -> None:
        self._store = store

    def register(self, peer: Any) -> None:
        with self._store._failures():
            self._store._redis.hset(_PEERS, peer.process, json.dumps(peer._asdict()))

    def withdraw(self, process: str) -> None:
        with self._store._failures():
            self._store._redis.hdel(_PEERS, process)

    def peers(self) -> list[Any]:
        from ._peers import Peer

        with self._store._failures():
            entries = cast("dict[bytes, bytes]", self._store._redis.hgetall(_PEERS))
        return sorted(Peer(**json.loads(value)) for value in entries.values())
