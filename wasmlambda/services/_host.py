"""Host services as plugins: the dispatch behind the guest's one host-call import.

Theory of operation (in the manner of Spin's factors): each service is
configured once from the settings, sees every guest request addressed to
it together with the *call context* (which function is running, which
shared state namespaces the operator granted it), and is closed at shutdown.  The worker
binds the context for the duration of a guest call on the sandbox thread;
the sandbox's host-call import hands request bytes to :meth:`Services.dispatch`.

Requests are JSON, ``{"service", "op", ...}``, or, for payloads that are
bytes already (an invoked function's event), ``NUL service NUL op NUL
payload``: the service's ``handle_bytes`` gets the payload untouched and
answers JSON bytes, which go back unparsed behind a ``0`` (calls between
functions never re-encode on the host).  Other responses are ``{"ok":
value}``; a failure is ``{"error": "<service>: <phase>: <message>"}`` in
either lane, so a failing service is named to the guest, which raises
ServiceError.  Nothing a guest sends makes the host raise: a request of the
wrong shape is answered with an error like any other refusal.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol


class CallContext(NamedTuple):
    """Who is calling, for the services (a NamedTuple: built on every request's hot path)."""

    function: str
    namespaces: frozenset[str]  # shared state namespaces ("shared:<name>") granted besides its own
    request_id: str = ""
    depth: int = 0  # 0 for a request from outside, +1 per nested invoke
    chain: tuple[str, ...] = ()  # the functions on the call stack, for cycle detection
    deadline_ns: int = 0  # perf_counter_ns by which the outermost call must answer (0: none)
    bill: Any = None  # where nested calls add their cost (the kernel's Bill)
    stream: Any = None  # where a streamed response goes (the kernel's ResponseStream); HTTP calls only


class ServiceFailure(Exception):
    """A request the service refuses (bad input, a namespace not granted, a backend down)."""


class Service(Protocol):
    name: str

    def handle(self, context: CallContext, request: dict[str, Any]) -> Any: ...

    def handle_bytes(self, context: CallContext, op: str, payload: bytes) -> bytes:
        """A request with a byte payload; the answer is a JSON value, encoded."""
        raise ServiceFailure("this service takes JSON requests only")

    def close(self) -> None: ...


class Services:
    def __init__(self, services: Mapping[str, Service]) -> None:
        self._services = dict(services)
        self._local = threading.local()

    def add(self, service: Service) -> None:
        self._services[service.name] = service

    def bind(self, context: CallContext | None) -> CallContext | None:
        """Make ``context`` the current call's on this (sandbox) thread; returns
        the one it replaces, to bind again when the call ends (calls nest)."""
        local = self._local
        previous: CallContext | None = getattr(local, "context", None)
        local.context = context
        return previous

    def bound(self, context: CallContext) -> _Binding:
        """``with services.bound(context):`` binds it for the block."""
        return _Binding(self, context)

    def dispatch(self, raw: bytes) -> bytes:
        payload: bytes | None = None
        try:
            if raw[:1] == b"\0":
                _, service_name, op_name, payload = raw.split(b"\0", 3)
                name, op = service_name.decode(), op_name.decode()
            else:
                request = json.loads(raw)
                name, op = request.get("service"), request.get("op", "?")
        except (ValueError, AttributeError):
            return _error("host", "decode", "the request is neither a JSON object nor NUL-separated bytes")
        service = self._services.get(name) if isinstance(name, str) else None
        if service is None:
            return _error(str(name), "dispatch", "no such service on this worker")
        context: CallContext | None = getattr(self._local, "context", None)
        if context is None:
            return _error(name, "prepare", "host services are only available while a request is handled")
        try:
            if payload is not None:
                return b"0" + service.handle_bytes(context, op, payload)
            return json.dumps({"ok": service.handle(context, request)}).encode()
        except ServiceFailure as exc:
            return _error(name, str(op), str(exc))
        except (TypeError, ValueError, KeyError, AttributeError, UnicodeError) as exc:
            # A malformed request the service did not foresee (a field of the
            # wrong type, bytes that are not UTF-8): the guest's error, not the host's.
            return _error(name, str(op), f"malformed request ({type(exc).__name__}: {exc})")

    def close(self) -> None:
        for service in self._services.values():
            service.close()


class _Binding:
    __slots__ = ("_context", "_previous", "_services")

    def __init__(self, services: Services, context: CallContext) -> None:
        self._services = services
        self._context = context

    def __enter__(self) -> None:
        self._previous = self._services.bind(self._context)

    def __exit__(self, *exc_info: object) -> None:
        self._services.bind(self._previous)


def _error(service: str, phase: str, message: str) -> bytes:
    return json.dumps({"error": f"{service}: {phase}: {message}"}).encode()
