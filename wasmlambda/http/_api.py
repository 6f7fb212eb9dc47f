"""The HTTP API (DESIGN.md §4): maps requests onto the worker.

Every failure is rendered here, once: ``{"error": {"type", "message"}}``
with the status its error class names.  Anything unexpected becomes a 500
with the same shape; the worker logs it and keeps serving.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

from .. import __version__
from ..errors import BadRequest, CapacityExceeded, WasmLambdaError
from ..kernel import Invocation, Worker
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
            return _error_response(404, "NotFound", f"no route for {request.path}")
        handler = methods.get(request.method)
        if handler is None:
            allow = ", ".join(sorted(methods)).encode()
            return _error_response(405, "MethodNotAllowed", f"{request.method} is not allowed on {request.path}",
                                   [(b"allow", allow)])
        try:
            return await handler(request, name)
        except WasmLambdaError as exc:
            return error_response(exc)
        except Exception:
            self.worker.log("internal error while handling " + request.path + ":\n" + traceback.format_exc())
            return _error_response(500, "InternalError", "the worker failed to handle this request")

    async def _run(self, request: Request, name: str) -> Response:
        invocation = await self.worker.invoke(name, request.body)
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
    meta = [
        (b"x-request-id", invocation.request_id.encode()),
        (b"x-wasmlambda-start", b"cold" if invocation.cold else b"warm"),
        (b"x-wasmlambda-duration-us", str(invocation.duration_us).encode()),
    ]
    if invocation.error is not None:
        response = error_response(invocation.error, invocation.logs if with_logs else None)
        response.headers += meta
        return response
    assert invocation.result is not None
    body = invocation.result
    if with_logs:
        body = b'{"request_id": "%s", "logs": %s, "result": %s}' % (
            invocation.request_id.encode(), json.dumps(invocation.logs).encode(), body)
    return Response(200, body, [JSON_TYPE, *meta])


def error_response(error: WasmLambdaError, logs: str | None = None) -> Response:
    headers = []
    if isinstance(error, CapacityExceeded):
        headers.append((b"retry-after", str(error.retry_after).encode()))
    document = error.to_json()
    if logs is not None:
        document["logs"] = logs
    return Response.json(error.status, {"error": document}, headers)


def _flag(request: Request, name: str) -> bool:
    return parse_qs(request.query).get(name, ["false"])[0].lower() in ("1", "true", "yes")


def _error_response(status: int, kind: str, message: str,
                    headers: list[tuple[bytes, bytes]] | None = None) -> Response:
    return Response.json(status, {"error": {"type": kind, "message": message}}, headers)
