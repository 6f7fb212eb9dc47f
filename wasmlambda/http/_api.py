"""The HTTP API: maps requests onto the worker (routes: README, "HTTP API").

Every route is ``open`` or ``admin``.  Admin routes (the control plane)
answer 401 with ``WWW-Authenticate: Bearer`` unless the request carries the
admin token; ``/run`` is open unless the function was deployed with
``invoke_keys = true``.  Because both are headers, a browser page cannot
reach them with a "simple" cross-site request (docs/security.md).

Every failure is rendered here, once: ``{"error": {"type", "message"}}``
with the status its error class names.  Anything unexpected becomes a 500
with the same shape; the worker logs it and keeps serving.
"""

from __future__ import annotations

import datetime
import hmac
import json
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, Literal
from urllib.parse import parse_qs, quote

import trio

from .. import __version__
from ..errors import BadRequest, CapacityExceeded, GuestError, NotFound, Unauthorized, WasmLambdaError
from ..kernel import BILLING_GROUPS, MAX_PAGE_LINES, METHODS, Invocation, Peer, Worker, dollars
from ._fanout import ask_peers, merge_billing, merge_counters, merge_logs, parse_cursor
from ._headers import app_head, handler_head
from ._messages import JSON_TYPE, Request, Response

Handler = Callable[[Request, list[str]], Awaitable[Response]]
# Whom /stats, /logs and /billing answer for: this process, its worker (the
# processes sharing a data dir), or every worker (the default).
SCOPES = ("process", "worker", "cluster")
# "open": anyone who reaches the port; "admin": the admin token only.
Access = Literal["open", "admin"]
_CHALLENGE = (b"www-authenticate", b'Bearer realm="wasmlambda"')
# Routes whose path goes on past the function's name.
_PREFIX_ROUTES = frozenset(("run", "runLambda"))


class Api:
    def __init__(self, worker: Worker, admin_token: str) -> None:
        if not admin_token:
            raise ValueError("the API needs an admin token")
        self.worker = worker
        self.started = time.monotonic()
        self._admin_token = admin_token.encode()
        self._token = admin_token  # for asking peers, which share it
        # (first path segment, number of segments) -> {method: (handler, access)}
        admin: Access = "admin"
        self._routes: dict[tuple[str, int], dict[str, tuple[Handler, Access]]] = {
            # /run/<fn>[/<path>]: any method, any sub-path (the function decides: ol.yaml, its WSGI app).
            ("run", 2): dict.fromkeys(METHODS, (self._run, "open")),
            ("runLambda", 2): dict.fromkeys(METHODS, (self._run, "open")),
            ("status", 1): {"GET": (self._status, "open")},
            ("stats", 1): {"GET": (self._stats, "open")},
            ("registry", 2): {"POST": (self._deploy, admin), "GET": (self._describe, admin),
                              "DELETE": (self._remove, admin)},
            ("registry", 1): {"GET": (self._list, admin)},
            ("logs", 2): {"GET": (self._logs, admin)},
            ("billing", 1): {"GET": (self._billing, admin)},
            ("billing", 2): {"GET": (self._explain, admin)},
            ("metrics", 1): {"GET": (self._metrics, admin)},
            ("keys", 2): {"GET": (self._list_keys, admin), "POST": (self._create_key, admin)},
            ("keys", 3): {"DELETE": (self._revoke_key, admin)},
            ("secrets", 2): {"GET": (self._list_secrets, admin)},
            ("secrets", 3): {"PUT": (self._set_secret, admin), "DELETE": (self._remove_secret, admin)},
            ("namespaces", 1): {"GET": (self._list_grants, admin)},
            ("namespaces", 3): {"PUT": (self._grant, admin), "DELETE": (self._revoke_grant, admin)},
        }

    def body_limit(self, path: str) -> int:
        """The largest body the server should accept for ``path``."""
        settings = self.worker.settings
        return settings.max_package_bytes if path.startswith("/registry") else settings.max_event_bytes

    async def handle(self, request: Request) -> Response:
        segments = request.path.strip("/").split("/")
        if segments[0] in _PREFIX_ROUTES:
            segments = segments[:2]  # /run/<fn>/<path>: the rest is the function's (its handler reads the head)
        methods = None if "" in segments else self._routes.get((segments[0], len(segments)))
        if methods is None:
            return Response.error(404, "NotFound", f"no route for {request.path}")
        route = methods.get(request.method)
        if route is None:
            allow = ", ".join(sorted(methods)).encode()
            return Response.error(405, "MethodNotAllowed", f"{request.method} is not allowed on {request.path}",
                                   [(b"allow", allow)])
        handler, access = route
        try:
            self.worker.sync()  # what sibling processes deployed is served from here on
            if access == "admin" and not self.is_admin(request):
                raise Unauthorized("this route needs the admin token (Authorization: Bearer ...)")
            return await handler(request, segments[1:])
        except WasmLambdaError as exc:
            return error_response(exc)
        except Exception:
            self.worker.log("internal error while handling " + request.path + ":\n" + traceback.format_exc())
            return Response.error(500, "InternalError", "the worker failed to handle this request")

    def is_admin(self, request: Request) -> bool:
        """Whether the request carries the admin token (compared in constant time)."""
        presented = _bearer(request)
        return presented is not None and hmac.compare_digest(presented.encode(), self._admin_token)

    async def _run(self, request: Request, args: list[str]) -> Response:
        name = args[0]
        spec = await self.worker.spec(name)
        if not spec.allows(request.method):
            allow = ", ".join(spec.allowed_methods())
            return Response.error(405, "MethodNotAllowed", f"{name!r} answers {allow} (its ol.yaml triggers), "
                                  f"not {request.method}", [(b"allow", allow.encode())])
        if spec.invoke_keys and not self.is_admin(request):
            presented = _bearer(request)
            if presented is None or not await self.worker.check_invoke_key(name, presented):
                raise Unauthorized(f"{name!r} needs an invoke key (Authorization: Bearer wlk_...)")
        target = f"{request.path}?{request.query}" if request.query else request.path
        head = b"%s %s\r\n%s" % (request.method.encode(), target.encode(),
                                  b"".join(b"%s: %s\r\n" % pair for pair in request.headers))
        stream = request.stream
        invocation = await self.worker.invoke(name, request.body, head, request.caller_gone, stream)
        if stream is not None and not stream.end_unstarted():
            # Its head and chunks are out: the server ends it (or cuts it, after a failure or a timeout).
            return Response(200, streamed=True, complete=invocation.error is None)
        return run_response(invocation, with_logs=_flag(request, "logs"))

    async def _logs(self, request: Request, args: list[str]) -> Response:
        name = args[0]
        query = parse_qs(request.query)
        try:
            since_text = query.get("since", ["0"])[0]
            cursor = parse_cursor(since_text)
            limit = min(int(query.get("limit", [str(MAX_PAGE_LINES)])[0]), MAX_PAGE_LINES)
        except ValueError:
            raise BadRequest("since and limit must be integers (since: the \"next\" of the last page)") from None
        request_id = query.get("request_id", [None])[0]
        peers = await self._peers(request)
        if peers is None:
            since = cursor.get(self.worker.id, cursor.get("*", 0))
            lines = self.worker.read_logs(name, since, request_id, limit)
            return Response.json(200, {"function": name, "lines": lines, "next": lines[-1]["seq"] if lines else since})
        only = f"&request_id={quote(request_id)}" if request_id else ""

        def page_of(peer: Peer) -> str:
            since = cursor.get(peer.process, cursor.get("*", 0))
            return f"/logs/{name}?scope=process&since={since}&limit={limit}{only}"

        answers, unreachable = await ask_peers(peers, page_of, self._token)
        if not answers and not unreachable:
            raise NotFound(f"no function named {name!r} is deployed")
        lines, next_cursor = merge_logs(answers, cursor, limit)
        return Response.json(200, {"function": name, "lines": lines, "next": next_cursor,
                                   "unreachable": unreachable})

    async def _deploy(self, request: Request, args: list[str]) -> Response:
        if not request.body:
            raise BadRequest("the request body must be the function's tar.gz package")
        return Response.json(201, await self.worker.deploy(args[0], request.body))

    async def _describe(self, request: Request, args: list[str]) -> Response:
        return Response.json(200, await self.worker.describe(args[0]))

    async def _remove(self, request: Request, args: list[str]) -> Response:
        await self.worker.remove(args[0])
        return Response.json(200, {"removed": args[0]})

    async def _list(self, request: Request, args: list[str]) -> Response:
        return Response.json(200, {"functions": await self.worker.list_functions()})

    async def _list_keys(self, request: Request, args: list[str]) -> Response:
        return Response.json(200, {"function": args[0], "keys": await self.worker.list_invoke_keys(args[0])})

    async def _create_key(self, request: Request, args: list[str]) -> Response:
        return Response.json(201, await self.worker.create_invoke_key(args[0]))

    async def _revoke_key(self, request: Request, args: list[str]) -> Response:
        self.worker.revoke_invoke_key(args[0], args[1])
        return Response.json(200, {"function": args[0], "revoked": args[1]})

    async def _list_secrets(self, request: Request, args: list[str]) -> Response:
        return Response.json(200, {"function": args[0], "names": await self.worker.list_secrets(args[0])})

    async def _set_secret(self, request: Request, args: list[str]) -> Response:
        await self.worker.set_secret(args[0], args[1], request.body)
        return Response.json(200, {"function": args[0], "set": args[1]})

    async def _remove_secret(self, request: Request, args: list[str]) -> Response:
        self.worker.remove_secret(args[0], args[1])
        return Response.json(200, {"function": args[0], "removed": args[1]})

    async def _list_grants(self, request: Request, args: list[str]) -> Response:
        return Response.json(200, {"namespaces": self.worker.list_grants()})

    async def _grant(self, request: Request, args: list[str]) -> Response:
        self.worker.grant(args[0], args[1])
        return Response.json(200, {"namespaces": self.worker.list_grants()})

    async def _revoke_grant(self, request: Request, args: list[str]) -> Response:
        self.worker.revoke_grant(args[0], args[1])
        return Response.json(200, {"namespaces": self.worker.list_grants()})

    async def _billing(self, request: Request, args: list[str]) -> Response:
        query = parse_qs(request.query)
        group = query.get("group", ["fn"])[0]
        if group not in BILLING_GROUPS:
            raise BadRequest(f"group must be one of {', '.join(BILLING_GROUPS)}, got {group!r}")
        since, until = (parse_time(query[key][0]) if key in query else None for key in ("since", "until"))
        rows = await self.worker.billing(query.get("fn", [None])[0], since, until, group)
        others, unreachable = await self._ask_other_workers(request, "/billing")
        rows = merge_billing([rows, *(answer["rows"] for answer in others)])
        for row in rows:
            row["cost"] = dollars(row["cost_pusd"])
        document: dict[str, Any] = {"group": group, "unit": "pico-dollars (1e-12 USD) in *_pusd fields",
                                    "rows": rows}
        if others or unreachable:
            document["unreachable"] = unreachable
        return Response.json(200, document)

    async def _ask_other_workers(self, request: Request, path: str) -> tuple[list[Any], list[str]]:
        """The same question to one process of each other worker (each answers from
        its own ledger, which its processes share); none without peers."""
        peers = await self._peers(request, widest="worker")
        if peers is None:
            return [], []
        mine = self.worker.peer.worker if self.worker.peer is not None else ""
        one_each = {peer.worker: peer for peer in peers if peer.worker != mine}
        target = f"{path}?{request.query}&scope=worker" if request.query else f"{path}?scope=worker"
        answers, unreachable = await ask_peers(list(one_each.values()), target, self._token)
        return [answer for _, answer in answers], unreachable

    async def _peers(self, request: Request, widest: Literal["worker", "process"] = "process") -> list[Peer] | None:
        """The peers to ask, or None to answer from here alone: ``?scope=process``
        (and, for the ledger, ``scope=worker``) asks for this one only."""
        registry = self.worker.peers
        scope = parse_qs(request.query).get("scope", ["cluster"])[0]
        if scope not in SCOPES:
            raise BadRequest(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        if registry is None or scope == "process" or scope == widest:
            return None
        return await trio.to_thread.run_sync(registry.peers)

    async def _explain(self, request: Request, args: list[str]) -> Response:
        request_id = args[0]
        explained = await self.worker.explain(request_id)
        if explained is None:  # billed by another worker of the cluster?
            others, _ = await self._ask_other_workers(request, f"/billing/{quote(request_id)}")
            if not others:
                raise NotFound(f"no invocation with request id {request_id!r} in the ledger")
            explained = others[0]
        return Response.json(200, explained)


    async def _metrics(self, request: Request, args: list[str]) -> Response:
        text = self.worker.metrics.to_prometheus(self.worker.gauges())
        return Response(200, text.encode(), [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")])

    async def _status(self, request: Request, args: list[str]) -> Response:
        # Open (health checks): nothing about any tenant without the token.
        return Response.json(200, {"status": "ok", "version": __version__,
                                   "uptime_s": round(time.monotonic() - self.started, 3),
                                   **self.worker.status(with_tenants=self.is_admin(request))})

    async def _stats(self, request: Request, args: list[str]) -> Response:
        # Open (OpenLambda's client reads it): worker-wide counters; per function with the token.
        admin = self.is_admin(request)
        peers = await self._peers(request)
        if peers is None:
            return Response.json(200, self.worker.stats_json(per_function=admin))
        answers, unreachable = await ask_peers(peers, "/stats?scope=process", self._token)
        stats = merge_counters([answer for _, answer in answers]) if answers else self.worker.stats_json()
        if not admin:
            stats.pop("functions", None)
        stats["processes"] = [peer.process for peer, _ in answers]
        stats["unreachable"] = unreachable
        return Response.json(200, stats)


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
        (b"x-wasmlambda-cpu-us", b"%d" % usage.cpu_us),
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
    settings = invocation.response_settings
    if settings is not None and settings.get("raw"):  # a WSGI app's own status, headers and bytes
        try:
            status, extra = app_head(settings)
        except (ValueError, TypeError) as exc:
            return error_response(GuestError(f"the app's response is invalid: {exc}", "ValueError", ""))
        return Response(status, b"" if status in (204, 304) else invocation.result, [*extra, *meta])
    status = 200
    if invocation.response_settings is not None:
        try:
            status, extra = handler_head(invocation.response_settings)
        except ValueError as exc:
            return error_response(GuestError(f"the handler's response settings are invalid: {exc}", "ValueError",
                                             ""))
        meta += extra
    body = invocation.result
    if status in (204, 304):  # no body, whatever the handler returned
        return Response(status, b"", meta)
    if with_logs:
        body = b'{"request_id": "%s", "logs": %s, "result": %s}' % (
            invocation.request_id.encode(), json.dumps(invocation.logs).encode(), body)
    return Response(status, body, [JSON_TYPE, *meta])


def error_response(error: WasmLambdaError, logs: str | None = None) -> Response:
    headers = []
    if isinstance(error, CapacityExceeded):
        headers.append((b"retry-after", str(error.retry_after).encode()))
    elif isinstance(error, Unauthorized):
        headers.append(_CHALLENGE)
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


def _bearer(request: Request) -> str | None:
    """The credentials of an ``Authorization: Bearer ...`` header, if any."""
    for name, value in request.headers:
        if name == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            if scheme.lower() == b"bearer":
                return credentials.strip().decode("latin-1")
    return None


def _flag(request: Request, name: str) -> bool:
    if not request.query:
        return False
    return parse_qs(request.query).get(name, ["false"])[0].lower() in ("1", "true", "yes")

