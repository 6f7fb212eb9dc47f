"""Key-value state: both backends behave the same; namespaces are enforced."""

from __future__ import annotations

import base64
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from wasmlambda.services import CallContext, KeyValueService, RedisStore, Services, SQLiteStore, Store


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        backend: Store = SQLiteStore(tmp_path / "state.sqlite3")
    else:
        backend = RedisStore(request.getfixturevalue("redis_url"))
    yield backend
    backend.close()


def ns() -> str:
    return f"t{uuid.uuid4().hex[:8]}"  # the Redis server is shared by the session


def test_get_put_delete(store: Store) -> None:
    space = ns()
    assert store.get(space, "k") is None
    store.put(space, "k", b"\x00bytes\xff")
    assert store.get(space, "k") == b"\x00bytes\xff"
    assert store.get(ns(), "k") is None  # namespaces are separate
    assert store.delete(space, "k") is True
    assert store.delete(space, "k") is False


def test_incr_is_atomic_across_threads(store: Store) -> None:
    space = ns()

    def bump() -> None:
        for _ in range(100):
            store.incr(space, "n", 1)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.incr(space, "n", 0) == 400
    assert store.incr(space, "n", -10) == 390
    assert store.get(space, "n") == b"390"


def test_keys_by_prefix_including_glob_characters(store: Store) -> None:
    space = ns()
    for key in ("user:1", "user:2", "user*x", "other", "us"):
        store.put(space, key, b"1")
    assert store.keys(space, "user") == ["user*x", "user:1", "user:2"]
    assert store.keys(space, "user*") == ["user*x"]
    assert store.keys(space, "") == ["other", "us", "user*x", "user:1", "user:2"]


def call(services: Services, context: CallContext, **request: object) -> dict[str, object]:
    with services.bound(context):
        result: dict[str, object] = json.loads(services.dispatch(json.dumps({"service": "kv", **request}).encode()))
    return result


def test_service_enforces_namespaces_and_validates(tmp_path: Path) -> None:
    services = Services({"kv": KeyValueService(SQLiteStore(tmp_path / "s.sqlite3"))})
    alice = CallContext("alice", frozenset({"shared:team"}))
    bob = CallContext("bob", frozenset())
    value = base64.b64encode(b"secret").decode()
    assert call(services, alice, op="put", key="k", value=value) == {"ok": None}
    assert call(services, alice, op="get", key="k") == {"ok": value}
    assert call(services, bob, op="get", key="k") == {"ok": None}  # bob's own namespace
    denied = call(services, bob, op="get", key="k", namespace="alice")
    assert denied == {"error": "kv: get: namespace 'alice' is private to the function of that name; share state "
                               "through a 'shared:<name>' namespace the operator grants to 'bob'"}
    assert call(services, alice, op="incr", key="n", namespace="shared:team") == {"ok": 1}
    assert call(services, bob, op="get", key="n", namespace="shared:team") == {
        "error": "kv: get: shared namespace 'shared:team' is not granted to 'bob' (the worker's operator grants it: "
                 "wasmlambda namespaces grant team bob)"}
    assert call(services, bob, op="get", key="n", namespace=7) == {"error": "kv: get: namespace must be a string"}
    assert call(services, alice, op="incr", key="k")["error"] == "kv: incr: the key does not hold an integer counter"
    assert "keys are non-empty strings" in str(call(services, alice, op="get", key=""))
    assert "unknown operation" in str(call(services, alice, op="explode", key="x"))
    assert json.loads(services.dispatch(b'{"service": "kv", "op": "get", "key": "k"}')) == {
        "error": "kv: prepare: host services are only available while a request is handled"}
    assert json.loads(services.dispatch(b"[1]"))["error"].startswith("host: decode:")
    services.close()


def test_shared_and_private_namespaces_never_share_a_key(store: Store) -> None:
    # A function named "shared" must not reach shared:<name> through its own keys.
    space = ns()
    store.put(f"shared:{space}", "k", b"team")
    store.put("shared", f"{space}:k", b"mine")
    assert store.get(f"shared:{space}", "k") == b"team"
    assert store.get("shared", f"{space}:k") == b"mine"
    assert store.keys(f"shared:{space}", "") == ["k"]


def test_both_backends_refuse_a_non_counter_alike(store: Store) -> None:
    from wasmlambda.services import ServiceFailure

    space = ns()
    store.put(space, "text", b"not a number")
    with pytest.raises(ServiceFailure, match=r"^the key does not hold an integer counter$"):
        store.incr(space, "text", 1)


def test_a_dead_redis_is_a_service_failure() -> None:
    from wasmlambda.services import ServiceFailure

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the probe closes
    dead = RedisStore(f"redis://127.0.0.1:{port}/0")
    with pytest.raises(ServiceFailure, match=r"^the state store failed: "):
        dead.get("ns", "k")
    dead.close()
