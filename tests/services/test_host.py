"""The services dispatch: JSON requests, byte requests, and its errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wasmlambda.services import CallContext, KeyValueService, Service, ServiceFailure, Services, SQLiteStore


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
