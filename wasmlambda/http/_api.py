"""The HTTP API (DESIGN.md §4): maps requests onto the worker.

Every failure is rendered here, once: ``{"error": {"type", "message"}}``
with the status its error class names.  Anything unexpected becomes a 500
with the same shape; the worker logs it and keeps serving.
"""

from __future__ import annotations

import datetime
import json
import re
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from .. import __version__
from ..errors import BadRequest, CapacityExceeded, GuestError, NotFound, WasmLambdaError
from ..kernel import BILLING_GROUPS, Invocation, Ledger, Usage, Worker, dollars
from ._messages import JSON_TYPE, Request, Response

Handler = Callable[[Request, str], Awaitable[Response]]


class Api:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.started = time.monotonic()
        # (first path segment, has a name) -> {method: handler}
        self._routes: dict[tuple[str, bool], dict[str, Handler]] = {
            ("run", True): {"POST": self._run},
            ("runLambda", True): {"POST": self._run},
            ("registry", True): {"POST": self._deploy, "GET": self._describe, "DELETE": self._remove},
            ("registry", False): {"GET": self._list},
            ("status", False): {"GET": self._status},
            ("stats", False): {"GET": self._stats},
            ("logs", True): {"GET": self._logs},
            ("billing", False): {"GET": self._billing},
            ("billing", True): {"GET": self._explain},
            ("metrics", False): {"GET": self._metrics},
        }

    def body_limit(self, path: str) -> int:
        """The largest body the server should accept for ``path``."""
        settings = self.worker.settings
        return settings.max_package_bytes if path.startswith("/registry") else settings.max_event_bytes

    async def handle(self, request: Request) -> Response:
        segments = request.path.strip("/").split("/")
        name = segments[1] if len(segments) == 2 and segments[1] else ""
        methods = self._routes.get((segments[0], bool(name))) if len(segments) <= 2 else None
        if methods is None:
            return Response.error(404, "NotFound", f"no route for {request.path}")
        handler = methods.get(request.method)
        if handler is None:
            allow = ", ".join(sorted(methods)).encode()
            return Response.error(405, "MethodNotAllowed", f"{request.method} is not allowed on {request.path}",
                                   [(b"allow", allow)])
        try:
            return await handler(request, name)
        except WasmLambdaError as exc:
            return error_response(exc)
        except Exception:
            self.worker.log("internal error while handling " + request.path + ":\n" + traceback.format_exc())
            return Response.error(500, "InternalError", "the worker failed to handle this request")

    async def _run(self, request: Request, name: str) -> Response:
        target = f"{request.path}?{request.query}" if request.query else request.path
        head = b"%s %s\r\n%s" % (request.method.encode(), target.encode(),
                                  b"".join(b"%s: %s\r\n" % pair for pair in request.headers))
        invocation = await self.worker.invoke(name, request.body, head)
        return run_response(invocation, with_logs=_flag(request, "logs"))

    async def _logs(self, request: Request, name: str) -> Response:
        self.worker.registry.get(name)  # 404 for unknown functions
        query = parse_qs(request.query)
        try:
            since = int(query.get("since", ["0"])[0])
        except ValueError:
            raise BadRequest("since must be an integer (the last seq you saw)") from None
        lines = self.worker.logs.read(name, since, query.get("request_id", [None])[0])
        return Response.json(200, {"function": name, "lines": lines,
                                   "next": lines[-1]["seq"] if lines else since})

    async def _deploy(self, request: Request, name: str) -> Response:
        if not request.body:
            raise BadRequest("the request body must be the function's tar.gz package")
        return Response.json(201, await self.worker.deploy(name, request.body))

    async def _describe(self, request: Request, name: str) -> Response:
        return Response.json(200, self.worker.describe(name))

    async def _remove(self, request: Request, name: str) -> Response:
        await self.worker.remove(name)
        return Response.json(200, {"removed": name})

    async def _list(self, request: Request, name: str) -> Response:
        return Response.json(200, {"functions": self.worker.list_functions()})

    async def _billing(self, request: Request, name: str) -> Response:
        ledger = self._ledger()
        query = parse_qs(request.query)
        group = query.get("group", ["fn"])[0]
        if group not in BILLING_GROUPS:
            raise BadRequest(f"group must be one of {', '.join(BILLING_GROUPS)}, got {group!r}")
        since, until = (parse_time(query[key][0]) if key in query else None for key in ("since", "until"))
        rows = await ledger.aggregate(query.get("fn", [None])[0], since, until, group)
        for row in rows:
            row["cost"] = dollars(row["cost_pusd"])
        return Response.json(200, {"group": group, "unit": "pico-dollars (1e-12 USD) in *_pusd fields",
                                   "rows": rows})

    async def _explain(self, request: Request, request_id: str) -> Response:
        record = await self._ledger().find(request_id)
        if record is None:
            raise NotFound(f"no invocation with request id {request_id!r} in the ledger")
        usage = Usage(record["request_id"], record["function"], record["ts"], record["status"], bool(record["cold"]),
                      record["queue_us"], record["restore_us"], record["run_us"], record["memory_mb"],
                      record["peak_memory_bytes"], record["fuel"], record["bytes_in"], record["bytes_out"])
        prices = self.worker.prices
        return Response.json(200, {
            **record,
            "cold": usage.cold,
            "phases_us": {"queue": usage.queue_us, "restore": usage.restore_us, "run": usage.run_us,
                          "billed": usage.billed_us},
            "price_lines": prices.explain(usage) + ([{
                "item": "nested calls", "cost_pusd": record["nested_cost_pusd"],
                "formula": f"{record['nested_calls']} call(s) made with wasmlambda_guest.invoke/map"}]
                if record["nested_calls"] else []),
            "cost": dollars(record["cost_pusd"]),
            "rounding": {"1ms": dollars(record["cost_1ms_pusd"]), "100ms": dollars(record["cost_100ms_pusd"])},
        })

    def _ledger(self) -> Ledger:
        if self.worker.ledger is None:
            raise NotFound("billing is off on this worker (billing = false)")
        return self.worker.ledger

    async def _metrics(self, request: Request, name: str) -> Response:
        text = self.worker.metrics.to_prometheus(self.worker.gauges())
        return Response(200, text.encode(), [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")])

    async def _status(self, request: Request, name: str) -> Response:
        return Response.json(200, {
            "status": "ok",
            "version": __version__,
            "runtime": self.worker.runtime.base_id,
            "functions": len(self.worker.registry),
            "uptime_s": round(time.monotonic() - self.started, 3),
        })

    async def _stats(self, request: Request, name: str) -> Response:
        return Response.json(200, self.worker.stats_json())


def run_response(invocation: Invocation, with_logs: bool = False) -> Response:
    """A /run response: the handler's JSON (or its error) plus how it ran.

    With ``?logs=true`` the body is ``{"request_id", "logs", "result"}`` (or
    the error with ``logs`` added) instead of the bare result.
    """
    usage = invocation.usage
    meta = [
        (b"x-request-id", usage.request_id.encode()),
        (b"x-wasmlambda-start", b"cold" if usage.cold else b"warm"),
        (b"x-wasmlambda-duration-us", b"%d" % invocation.duration_us),
        (b"x-wasmlambda-queue-us", b"%d" % usage.queue_us),
        (b"x-wasmlambda-restore-us", b"%d" % usage.restore_us),
        (b"x-wasmlambda-run-us", b"%d" % usage.run_us),
    ]
    if invocation.cost_pusd is not None:
        meta += [
            (b"x-wasmlambda-billed-us", b"%d" % usage.billed_us),
            (b"x-wasmlambda-memory-mb", b"%d" % usage.memory_mb),
            (b"x-wasmlambda-peak-memory-bytes", b"%d" % usage.peak_memory_bytes),
            (b"x-wasmlambda-fuel", b"%d" % usage.fuel),
            (b"x-wasmlambda-cost", dollars(invocation.cost_pusd).encode()),
            (b"x-wasmlambda-cost-pusd", b"%d" % invocation.cost_pusd),
        ]
        if invocation.nested_calls:
            meta.append((b"x-wasmlambda-nested-calls", b"%d" % invocation.nested_calls))
    if invocation.error is not None:
        response = error_response(invocation.error, invocation.logs if with_logs else None)
        response.headers += meta
        return response
    assert invocation.result is not None
    status = 200
    if invocation.response_settings is not None:
        try:
            status, extra = _handler_settings(invocation.response_settings)
        except ValueError as exc:
            return error_response(GuestError(f"the handler's response settings are invalid: {exc}", "ValueError",
                                             ""))
        meta += extra
    body = invocation.result
    if with_logs:
        body = b'{"request_id": "%s", "logs": %s, "result": %s}' % (
            invocation.request_id.encode(), json.dumps(invocation.logs).encode(), body)
    return Response(status, body, [JSON_TYPE, *meta])


_TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_RESERVED = ("content-length", "transfer-encoding", "connection", "server", "x-request-id", "x-wasmlambda-")


def _handler_settings(settings: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]]]:
    """Check what a handler set on context.response: no header injection,
    no overriding of the worker's own framing and metering headers."""
    status = settings.get("status") or 200
    if not isinstance(status, int) or not 200 <= status <= 599:
        raise ValueError(f"status must be an integer from 200 to 599, got {status!r}")
    headers: list[tuple[bytes, bytes]] = []
    for name, value in (settings.get("headers") or {}).items():
        lowered = str(name).lower()
        if not _TOKEN.fullmatch(lowered) or lowered.startswith(_RESERVED):
            raise ValueError(f"header {name!r} cannot be set by a handler")
        headers.append((lowered.encode(), _header_value(value)))
    headers += [(b"set-cookie", _header_value(cookie)) for cookie in settings.get("cookies") or []]
    return status, headers


def _header_value(value: object) -> bytes:
    text = str(value)
    if any(character in text for character in "\r\n\x00"):
        raise ValueError(f"header value {text[:40]!r} contains a line break")
    return text.encode("latin-1", "replace")


def error_response(error: WasmLambdaError, logs: str | None = None) -> Response:
    headers = []
    if isinstance(error, CapacityExceeded):
        headers.append((b"retry-after", str(error.retry_after).encode()))
    document = error.to_json()
    if logs is not None:
        document["logs"] = logs
    return Response.json(error.status, {"error": document}, headers)


def parse_time(value: str) -> float:
    """Epoch seconds, an ISO 8601 time, or an age such as 90s, 15m, 2h, 7d."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if value[-1:] in units and value[:-1].isdigit():
            return time.time() - int(value[:-1]) * units[value[-1]]
        try:
            return float(value)
        except ValueError:
            parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=datetime.UTC)
            return parsed.timestamp()
    except ValueError:
        raise BadRequest(f"cannot read {value!r} as a time: use epoch seconds, ISO 8601 or an age like 15m") from None


def _flag(request: Request, name: str) -> bool:
    if not request.query:
        return False
    return parse_qs(request.query).get(name, ["false"])[0].lower() in ("1", "true", "yes")

