"""The services dispatch: JSON requests, byte requests, and its errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from wasmlambda.config import Settings
from wasmlambda.kernel import Worker
from wasmlambda.sandbox import Runtime, RuntimeImage
from wasmlambda.services import CallContext, KeyValueService, Service, ServiceFailure, Services, SQLiteStore

from ..conftest import CACHE_DIR


class Echo(Service):
    name = "echo"

    def handle(self, context: CallContext, request: dict[str, Any]) -> Any:
        return [context.function, request.get("value")]

    def handle_bytes(self, context: CallContext, op: str, payload: bytes) -> bytes:
        if op == "fail":
            raise ServiceFailure("as asked")
        return payload  # JSON already: it goes back without a round of decoding

    def close(self) -> None:
        pass


def answer(services: Services, request: bytes) -> Any:
    return json.loads(services.dispatch(request))


def test_json_and_byte_requests(tmp_path: Path) -> None:
    services = Services({"echo": Echo(), "kv": KeyValueService(SQLiteStore(tmp_path / "s.sqlite3"))})
    with services.bound(CallContext("fn", frozenset())):
        assert answer(services, b'{"service": "echo", "op": "x", "value": [1]}') == {"ok": ["fn", [1]]}
        assert services.dispatch(b"\0echo\0x\0[1, \"\\u0000\"]") == b'0[1, "\\u0000"]'
        assert answer(services, b"\0echo\0fail\0null") == {"error": "echo: fail: as asked"}
        assert answer(services, b"\0kv\0get\0k") == {"error": "kv: get: this service takes JSON requests only"}
        assert answer(services, b"\0nope\0x\0y") == {"error": "nope: dispatch: no such service on this worker"}
        for malformed in (b"\0echo-without-op", b"\0\xff\0x\0y", b"not json", b"[1]"):
            assert answer(services, malformed)["error"].startswith("host: decode: "), malformed
    assert answer(services, b"\0echo\0x\0null") == {
        "error": "echo: prepare: host services are only available while a request is handled"}
    services.close()


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                           max_leaves=8)
REQUESTS = st.fixed_dictionaries(
    {"service": st.sampled_from(["kv", "invoke", "echo", "nope"]) | JSON_VALUES},
    optional={"op": st.sampled_from(["get", "put", "delete", "incr", "keys", "map", "call"]) | JSON_VALUES,
              "key": st.text(max_size=5) | JSON_VALUES, "value": JSON_VALUES, "namespace": JSON_VALUES,
              "prefix": JSON_VALUES, "amount": JSON_VALUES, "function": JSON_VALUES, "events": JSON_VALUES})


@pytest.fixture(scope="module")
def hostile_target(runtime_image: RuntimeImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """Real services (kv on SQLite, invoke on a real worker with nothing deployed) for malformed requests."""
    data_dir = tmp_path_factory.mktemp("hostile")
    services = Services({"echo": Echo(), "kv": KeyValueService(SQLiteStore(data_dir / "s.sqlite3"))})
    runtime = Runtime(runtime_image, CACHE_DIR, max_instances=2, max_memory_mb=64, host_dispatch=services.dispatch)
    worker = Worker(Settings(data_dir=data_dir), runtime, services, lambda _: None)
    yield services
    worker.close()
    runtime.close()


def test_a_worker_refuses_a_runtime_wired_to_other_services(runtime: Runtime, tmp_path: Path) -> None:
    # Else guests' invoke and map calls would silently go nowhere.
    with pytest.raises(ValueError, match=r"host_dispatch=services\.dispatch"):
        Worker(Settings(data_dir=tmp_path), runtime, Services({}), lambda _: None)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=REQUESTS)
def test_malformed_json_requests_are_refused_not_raised(hostile_target: Services, request: dict[str, Any]) -> None:
    with hostile_target.bound(CallContext("fn", frozenset())):
        reply = json.loads(hostile_target.dispatch(json.dumps(request).encode()))
    assert set(reply) in ({"ok"}, {"error"})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(service=st.sampled_from([b"kv", b"invoke", b"echo", b"\xff"]) | st.binary(max_size=8),
       op=st.sampled_from([b"call", b"get", b"fail"]) | st.binary(max_size=8), payload=st.binary(max_size=40))
@example(service=b"invoke", op=b"call", payload=b"\xff\0null")  # a callee name that is not UTF-8
def test_malformed_byte_requests_are_refused_not_raised(hostile_target: Services, service: bytes, op: bytes,
                                                        payload: bytes) -> None:
    with hostile_target.bound(CallContext("fn", frozenset())):
        reply = hostile_target.dispatch(b"\0" + service + b"\0" + op + b"\0" + payload)
    assert reply[:1] == b"0" or set(json.loads(reply)) == {"error"}
