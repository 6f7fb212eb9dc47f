"""What a handler can use from inside the sandbox.

    from wasmlambda_guest import context, kv, log

    def f(event):
        log("called as", context.function_name, "request", context.request_id)
        visits = kv.incr("visits")
        if context.remaining_time_ms() < 100:
            ...

``print`` output, ``log`` lines and the traceback of an exception become the
invocation's logs (``GET /logs/<fn>``, ``wasmlambda logs <fn>``).
"""

import base64
import json
import json.scanner
import sys
import time

import _wl_host  # the shim's builtin module: the one door to the host

__all__ = ["Context", "KeyValue", "Response", "ServiceError", "context", "invoke", "invoke_async", "kv", "log", "map"]


class Response:
    """What the handler wants the HTTP response to carry besides its result."""

    __slots__ = ("cookies", "headers", "status")

    def __init__(self):
        self.status = None  # None: 200
        self.headers = {}
        self.cookies = []

    def set_cookie(self, name, value, max_age=None, path="/", http_only=True, secure=False, same_site="Lax"):
        from http.cookies import SimpleCookie

        cookie = SimpleCookie()
        cookie[name] = value
        morsel = cookie[name]
        morsel["path"] = path
        if max_age is not None:
            morsel["max-age"] = int(max_age)
        morsel["httponly"] = http_only
        morsel["secure"] = secure
        if same_site:
            morsel["samesite"] = same_site
        self.cookies.append(morsel.OutputString())


class Context:
    """The current invocation.  The worker fills it in before each call.

    ``method``, ``path``, ``query``, ``headers`` and ``cookies`` describe the
    HTTP request (empty for a nested call); ``response`` sets the status,
    headers and cookies of the HTTP response.
    """

    __slots__ = ("_head", "_request", "_request_id", "_response", "_started", "_timeout_ms", "function_name",
                 "memory_limit_mb")

    def __init__(self):
        self.function_name = ""
        self.memory_limit_mb = 0
        self._begin(b"", b"0", b"")

    def _begin(self, request_id, timeout_ms, head):
        # Kept as the host sent them (bytes) and converted on first use: a
        # nested call's handler rarely looks.
        self._request_id = request_id
        self._started = time.monotonic()
        self._timeout_ms = timeout_ms
        self._head = head
        self._request = None
        self._response = None

    @property
    def request_id(self):
        """This invocation's id (a nested call's is its caller's id, a dot, a number)."""
        return self._request_id.decode()

    def remaining_time_ms(self):
        """Milliseconds left before the worker stops this call."""
        return max(0, int(self._timeout_ms) - int((time.monotonic() - self._started) * 1000))

    def _parsed(self):
        # Parsed on first use: most handlers never look at the request head.
        if self._request is None:
            from urllib.parse import parse_qsl

            lines = self._head.decode("latin-1").split("\r\n")
            method, _, target = lines[0].partition(" ")
            path, _, query = target.partition("?")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(": ")
                if name:
                    headers[name] = headers[name] + ", " + value if name in headers else value
            cookies = {}
            if "cookie" in headers:
                from http.cookies import SimpleCookie

                jar = SimpleCookie()
                jar.load(headers["cookie"])
                cookies = {name: morsel.value for name, morsel in jar.items()}
            self._request = (method, path, dict(parse_qsl(query)), headers, cookies)
        return self._request

    method = property(lambda self: self._parsed()[0], doc="The HTTP method ('' for a nested call).")
    path = property(lambda self: self._parsed()[1], doc="The request path.")
    query = property(lambda self: self._parsed()[2], doc="Query parameters (the last value of each).")
    headers = property(lambda self: self._parsed()[3], doc="Request headers, lower-case names.")
    cookies = property(lambda self: self._parsed()[4], doc="Request cookies.")

    @property
    def response(self):
        if self._response is None:
            self._response = Response()
        return self._response

    def _response_settings(self):
        response = self._response
        if response is None or (response.status is None and not response.headers and not response.cookies):
            return None
        return {"status": response.status, "headers": response.headers, "cookies": response.cookies}

    def __repr__(self):
        return "Context(function_name=%r, request_id=%r, memory_limit_mb=%r, remaining_time_ms=%r)" % (
            self.function_name, self.request_id, self.memory_limit_mb, self.remaining_time_ms())


context = Context()


def log(*values, sep=" "):
    """Add one line to this invocation's logs."""
    print(*values, sep=sep, file=sys.stdout)


class ServiceError(Exception):
    """A host service (key-value state, ...) refused or failed a request."""


_answers = json.JSONDecoder()  # the host answers UTF-8 JSON
_decode_response = _answers.decode
_scan = json.scanner.c_make_scanner(_answers)  # decode's own worker, for answers that start with "0"
# json.JSONEncoder.encode builds its C encoder on every call (~1.5 µs here, a
# tenth of a warm call): build it once.  Its circular-reference markers must
# start each encoding empty, so a failed one clears them.
_markers = {}
_encode_chunks = json.encoder.c_make_encoder(
    _markers, json.JSONEncoder().default, json.encoder.encode_basestring, None, ": ", ", ", False, False, False
)


def _dumps(value):
    """``json.dumps(value, ensure_ascii=False, allow_nan=False)`` (NaN is not JSON), faster."""
    try:
        return "".join(_encode_chunks(value, 0))
    except BaseException:
        _markers.clear()
        raise


def _service(request):
    response = _decode_response(_wl_host.call(json.dumps(request).encode()).decode())
    if "error" in response:
        raise ServiceError(response["error"])
    return response["ok"]


def _service_bytes(request):
    """A byte-lane request (``NUL service NUL op NUL payload``); its answer is
    ``0`` + the JSON value, or a JSON ``{"error": ...}``."""
    response = _wl_host.call(request).decode()
    if response[:1] == "0":
        try:
            value, end = _scan(response, 1)
        except StopIteration:
            end = -1
        if end == len(response):
            return value
        # The host passes results through: only a C function can write one that is not JSON.
        raise ServiceError("the answer is not valid JSON: %.200s" % response[1:])
    raise ServiceError(_decode_response(response)["error"])


class KeyValue:
    """Key-value state that outlives instances and restarts.

    Keys are strings; values are bytes (stored as given) or anything JSON can
    encode (stored as JSON; read back with ``get_json``).  Each function has
    its own, private namespace; ``namespace="shared:<name>"`` reaches a
    shared one, if the worker's operator granted it to this function.
    """

    def get(self, key, namespace=None):
        """The stored bytes, or None."""
        value = _service({"service": "kv", "op": "get", "key": key, "namespace": namespace})
        return None if value is None else base64.b64decode(value)

    def get_json(self, key, default=None, namespace=None):
        value = self.get(key, namespace)
        return default if value is None else json.loads(value)

    def put(self, key, value, namespace=None):
        data = value if isinstance(value, (bytes, bytearray)) else json.dumps(value).encode()
        _service({"service": "kv", "op": "put", "key": key, "namespace": namespace,
                  "value": base64.b64encode(data).decode()})

    def delete(self, key, namespace=None):
        """True if the key existed."""
        return _service({"service": "kv", "op": "delete", "key": key, "namespace": namespace})

    def incr(self, key, amount=1, namespace=None):
        """Add ``amount`` to an integer counter (0 if absent) atomically; the new value."""
        return _service({"service": "kv", "op": "incr", "key": key, "amount": amount, "namespace": namespace})

    def keys(self, prefix="", namespace=None):
        """Sorted keys starting with ``prefix``."""
        return _service({"service": "kv", "op": "keys", "prefix": prefix, "namespace": namespace})

    # Awaitable forms, for async handlers.  Key-value operations take
    # microseconds in the host, so each is answered at once.

    async def aget(self, key, namespace=None):
        return self.get(key, namespace)

    async def aget_json(self, key, default=None, namespace=None):
        return self.get_json(key, default, namespace)

    async def aput(self, key, value, namespace=None):
        return self.put(key, value, namespace)

    async def adelete(self, key, namespace=None):
        return self.delete(key, namespace)

    async def aincr(self, key, amount=1, namespace=None):
        return self.incr(key, amount, namespace)

    async def akeys(self, prefix="", namespace=None):
        return self.keys(prefix, namespace)


kv = KeyValue()


def invoke(function, event=None):
    """Call another deployed function in-process and return its result.

    Same limits and billing as an HTTP call (its cost goes onto this
    request's bill); a failure raises ServiceError naming the callee.
    """
    try:
        head = _invoke_heads[function]
    except (KeyError, TypeError):  # a name not seen yet, or not even hashable
        if not isinstance(function, str) or "\0" in function:
            raise TypeError(f"invoke takes a function name, not {function!r}") from None
        if len(_invoke_heads) >= 256:  # names made up at run time must not grow it forever
            _invoke_heads.clear()
        head = _invoke_heads[function] = b"\0invoke\0call\0" + function.encode() + b"\0"
    try:
        encoded = "".join(_encode_chunks(event, 0))  # _dumps, inlined: a call less per hop
    except BaseException:
        _markers.clear()
        raise
    # The event goes to the host as bytes (see services/_host.py): no re-encoding on the way.
    return _service_bytes(head + encoded.encode())


_invoke_heads = {}  # function name -> the start of its byte-lane request


async def invoke_async(function, event=None):
    """``await invoke_async(name, event)``: like :func:`invoke`, but the call runs in
    another instance while this handler goes on; several awaited together
    (``asyncio.gather``) run in parallel, like :func:`map`."""
    import asyncio

    from _wl_loop import GuestLoop

    loop = asyncio.get_running_loop()
    if not isinstance(loop, GuestLoop):
        raise RuntimeError("invoke_async needs the sandbox's event loop")
    ticket = _service({"service": "invoke", "op": "start", "function": function, "event": event})
    return await loop.host_future(ticket)


def map(function, events):  # noqa: A001 (the name users look for)
    """Call ``function`` once per event, in parallel instances; the results in order."""
    return _service({"service": "invoke", "op": "map", "function": function, "events": list(events)})
