"""Guest side of the wasmlambda ABI, imported once when the base image is made.

Theory of operation: the host writes one request into the shim's input
buffer and calls ``wl_handle``, which calls :func:`invoke` here for an ``I``
request and :func:`handle` for any other.  A request is an opcode byte
followed by a payload:

* ``L`` + JSON ``{"path", "module", "handler", "wsgi", "name", "memory_mb",
  "env"}``: set the environment and import a function's handler (``f``) or
  WSGI app.  The host does this once per deployment and snapshots the
  memory after it.
* ``S`` + JSON ``{name: value}``: add secrets to ``os.environ`` (after each
  restore: they are never part of a snapshot).
* ``I`` + request id + NUL + timeout in ms + NUL + the HTTP request head
  (``METHOD target CRLF`` then ``name: value CRLF`` lines; empty for a
  nested call) + NUL + the body: call the loaded handler with the body
  decoded as JSON, or the WSGI app with the body as it came.

A response is a status byte followed by JSON: ``0`` + the result, ``R`` +
the response settings (status, headers, cookies) + NUL + the result, ``W`` +
a WSGI app's ``{"status", "headers", "length"}`` + NUL + exactly ``length``
bytes of body, or ``E`` + ``{"phase", "type", "message", "traceback",
"file", "line"}``; then, if the call printed or logged anything, NUL + those
logs (JSON text never contains a raw NUL, and a WSGI body's length is
given, so the split is unambiguous).  ``phase``
says whose fault it was (``event``: bad input, ``load``: bad package,
``handler``: the handler raised, ``result``: the handler returned something
JSON cannot carry, ``runtime``: this module itself failed).

Everything imported here is part of the snapshot, so handlers get these
modules for free; that is why the import list is long.
"""

import base64  # noqa: F401  (preloaded into the snapshot for handlers)
import collections  # noqa: F401
import dataclasses  # noqa: F401
import datetime  # noqa: F401
import decimal  # noqa: F401
import functools  # noqa: F401
import gc
import hashlib  # noqa: F401
import io
import itertools  # noqa: F401
import json
import json.scanner
import math  # noqa: F401
import os
import random
import re  # noqa: F401
import string  # noqa: F401
import struct  # noqa: F401
import sys
import time
import traceback
import types
import typing  # noqa: F401
import urllib.parse
import uuid  # noqa: F401
import zlib  # noqa: F401

import _wl_host
import _wl_loop
import wasmlambda_guest

_host_sleep = time.sleep


def _interruptible_sleep(seconds):
    # The host's deadline (an epoch interrupt) only fires while wasm code
    # runs; one long sleep inside the host would hold the call past it.
    # Short sleeps in a loop keep returning to wasm code.
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    end = time.monotonic() + seconds
    remaining = seconds
    while remaining > 0:
        _host_sleep(min(remaining, 0.01))
        remaining = end - time.monotonic()


time.sleep = _interruptible_sleep

# Deep recursion through C code (json, repr, sort keys, ...) uses the wasm
# stack, which traps (safely: the instance is discarded) at a depth of about
# 1,500; an unbounded limit lets a handler push the interpreter into states
# it does not recover from.  So a handler may lower the limit, and raise it
# only this far.
MAX_RECURSION_LIMIT = 4000
_set_recursion_limit = sys.setrecursionlimit


def _bounded_set_recursion_limit(limit):
    _set_recursion_limit(min(limit, MAX_RECURSION_LIMIT))


sys.setrecursionlimit = _bounded_set_recursion_limit
_handler = None
_app = None  # the WSGI or ASGI app, when the function is one
_call_app = None  # _call_wsgi or _call_asgi, then
_asgi_state = {}  # what an ASGI app's lifespan startup put in its scope's "state"
# False in every snapshot, so the first call after a restore reseeds `random`,
# whose state would otherwise be identical in every instance.
_seeded = False
# Default separators: results read the way `json.dumps` users expect.
_dumps = wasmlambda_guest._dumps
_encode_chunks, _markers = wasmlambda_guest._encode_chunks, wasmlambda_guest._markers


def handle(request):
    """Every request but ``I`` (the shim calls :func:`invoke` for those)."""
    try:
        opcode = request[:1]
        if opcode == b"L":
            return _load(request[1:])
        if opcode == b"S":
            os.environ.update(json.loads(request[1:]))
            return b"0null"
        raise ValueError("unknown opcode %r" % opcode)
    except BaseException as exc:  # a failure here is ours, not the handler's
        return _error("runtime", exc, logs=True)


def _reject_constant(name):
    raise ValueError("%s is not valid JSON" % name)


_event_decoder = json.JSONDecoder(parse_constant=_reject_constant)
_decode_text = _event_decoder.decode
_scan_event = json.scanner.c_make_scanner(_event_decoder)  # raw_decode's own worker


def _decode_event(payload):
    # What json.loads(payload, parse_constant=...) does, minus building a
    # decoder on every call (half of a warm call's time in here) and, for the
    # usual UTF-8 event, the encoding sniffing: an ASCII first byte (no BOM)
    # not followed by NUL (not UTF-16/32) is what detect_encoding calls UTF-8.
    if 0 < payload[0] < 0x80 and payload[1:2] != b"\0":
        text = payload.decode("utf-8", "surrogatepass")
        if payload[0] > 0x20:
            # No leading whitespace: the scanner alone skips decode's two
            # regex matches for it; what the scanner cannot take, or leaves
            # behind (whitespace, junk), goes the long way, for decode's errors.
            try:
                value, end = _scan_event(text, 0)
            except StopIteration:
                pass
            else:
                if end == len(text):
                    return value
        return _decode_text(text)
    return _decode_text(payload.decode(json.detect_encoding(payload), "surrogatepass"))


# A call's print output and logs: installed as sys.stdout and sys.stderr
# once (a StringIO per call, and swapping it in and out, cost a tenth of a
# warm call), emptied by every call that wrote to it.
# A call's output is capped here, in the guest, so that a handler printing
# 50 MB neither runs out of memory nor loses what it printed first: past
# OUTPUT_LIMIT characters the rest is counted, not kept, and a line says so.
# (The worker keeps less of it still: see its log settings.)
OUTPUT_LIMIT = 1 << 20


class _Capture(io.StringIO):
    dropped = 0

    def write(self, text):
        if self.dropped or self.tell() + len(text) > OUTPUT_LIMIT:
            room = max(OUTPUT_LIMIT - self.tell(), 0)
            if room:
                super().write(text[:room])
            self.dropped += len(text) - room
            return len(text)
        return super().write(text)


_output = _Capture()


def invoke(payload):
    """An ``I`` request, without its opcode: every call of a function comes here."""
    global _seeded
    try:
        if not _seeded:
            random.seed()
            _seeded = True
        request_id, timeout_ms, head, payload = payload.split(b"\x00", 3)
        context = wasmlambda_guest.context
        context._begin(request_id, timeout_ms, head)
        if sys.stdout is not _output or sys.stderr is not _output:  # a handler replaced them
            sys.stdout = sys.stderr = _output
        if _call_app is not None:  # a WSGI or ASGI app: HTTP only
            if not head:
                return _error("handler", TypeError(
                    "this function is a web app: call it over HTTP (/run/<fn>/<path>), not with invoke()"))
            return _call_app(head, payload)
        try:
            event = _decode_event(payload) if payload else None
        except (ValueError, RecursionError) as exc:
            return _error("event", exc)
        try:
            result = _handler(event)
            if result.__class__ in _SPECIAL_RESULTS:
                if result.__class__ is types.CoroutineType:  # async def f(event)
                    result = _wl_loop.run(result)
                if result.__class__ in _STREAMS:
                    return _stream_result(result, context)
        except BaseException as exc:  # the handler's failure is the caller's answer
            return _error("handler", exc, logs=True)
        try:
            encoded = "".join(_encode_chunks(result, 0)).encode()  # _dumps, inlined: a call less per call
        except BaseException as exc:
            _markers.clear()
            if isinstance(exc, (TypeError, ValueError, RecursionError)):
                return _error("result", exc, logs=True)
            raise
        logs = _logs() if _output.tell() else b""
        if context._response is not None:
            settings = context._response_settings()
            if settings is not None:
                return b"R" + _dumps(settings).encode() + b"\x00" + encoded + logs
        return b"0" + encoded + logs
    except BaseException as exc:  # a failure here is ours, not the handler's
        return _error("runtime", exc, logs=True)


# Results that are not a value: a coroutine (async def f) runs on the guest
# loop; a generator or async generator streams its chunks.
_STREAMS = frozenset((types.GeneratorType, types.AsyncGeneratorType))
_SPECIAL_RESULTS = _STREAMS | {types.CoroutineType}


# -- streaming ----------------------------------------------------------------

_STREAM_WRITE = b"\x00stream\x00write\x00"
_host_call = _wl_host.call


def _chunk_bytes(chunk):
    if chunk.__class__ is bytes:
        return chunk
    if isinstance(chunk, str):
        return chunk.encode()
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        return bytes(chunk)
    raise TypeError("a streamed chunk must be str or bytes, not %s" % type(chunk).__name__)


def _sse(data):
    """One server-sent event per chunk (``data:`` lines, a blank line), unless it is framed already."""
    if data.endswith(b"\n\n"):
        return data
    return b"".join(b"data: " + line + b"\n" for line in data.split(b"\n")) + b"\n"


class _Chunks:
    """A generator's or an async generator's chunks, the same way; closing runs its ``finally`` blocks."""

    def __init__(self, source):
        self._source = source
        self._async = source.__class__ is types.AsyncGeneratorType
        self._iterator = source if self._async else iter(source)
        self.text = None  # whether the first chunk was str (None: none yet)

    def next(self):
        """The next non-empty chunk as bytes, or None at the end."""
        while True:
            try:
                if self._async:
                    chunk = _wl_loop.run(self._source.__anext__(), settle=False)  # tasks may span chunks
                else:
                    chunk = next(self._iterator)
            except (StopIteration, StopAsyncIteration):
                return None
            data = _chunk_bytes(chunk)
            if data:
                if self.text is None:
                    self.text = isinstance(chunk, str)
                return data

    def close(self):
        if self._async:
            _wl_loop.run(self._source.aclose())
        else:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()


def _stream_result(result, context):
    """A generator handler's response: status and headers from ``context.response``."""

    def head():  # read after the first chunk: the generator may set them as it starts
        settings = context._response_settings() or {}
        headers = {str(name).lower(): [value] for name, value in (settings.get("headers") or {}).items()}
        if settings.get("cookies"):
            headers["set-cookie"] = settings["cookies"]
        return settings.get("status") or 200, headers

    return _stream(_Chunks(result), head, context)


class _Sender:
    """One streamed response, pushed to the host: ``start`` the head, ``write`` each
    chunk (the host writes it as an HTTP chunk and blocks while the client is
    slow), then ``summary()``, the call's ``T`` answer."""

    def __init__(self):
        self.count = self.sent = 0
        self.outcome = "complete"

    def start(self, status, pairs):
        started = json.loads(_host_call(json.dumps({"service": "stream", "op": "start", "status": status,
                                                    "headers": pairs}).encode()))
        if "error" in started:
            raise RuntimeError(started["error"])

    def write(self, data):
        """False once the client has gone (or the call's time is up)."""
        if _host_call(_STREAM_WRITE + data) != b"0true":
            self.outcome = "client-disconnected"
            return False
        self.count += 1
        self.sent += len(data)
        return True

    def failed(self, exc):
        """A failure after the head: the stream is cut, the traceback logged."""
        _output.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        if self.outcome == "complete":
            self.outcome = "error: %s: %s" % (type(exc).__name__, exc)

    def summary(self):
        answer = _dumps({"outcome": self.outcome, "chunks": self.count, "bytes": self.sent})
        return b"T" + answer.encode() + (_logs() if _output.tell() else b"")


def _stream(chunks, head, context, frame_events=True):
    """Send ``chunks`` one host call each.  The first chunk is taken before
    ``head()`` (status, lower-case name -> values) is read and sent, so a
    failure before it is still a plain error response.  ``frame_events``: wrap
    chunks as server-sent events when the content type is text/event-stream
    (a handler's chunks; an app frames its own)."""
    try:
        first = chunks.next()
        status, headers = head()
    except BaseException:
        chunks.close()
        raise
    if "content-type" not in headers:
        wants_events = "text/event-stream" in context.headers.get("accept", "")
        headers["content-type"] = ["text/event-stream" if wants_events else (
            "application/octet-stream" if chunks.text is False else "text/plain; charset=utf-8")]
    events = frame_events and str(headers["content-type"][0]).startswith("text/event-stream")
    sender = _Sender()
    try:
        sender.start(status, [[name, str(value)] for name, values in headers.items() for value in values])
    except BaseException:
        chunks.close()
        raise
    try:
        chunk = first
        while chunk is not None and sender.write(_sse(chunk) if events else chunk):
            chunk = chunks.next()
    except BaseException as exc:
        sender.failed(exc)
    finally:
        try:
            chunks.close()  # GeneratorExit (or aclose) inside the handler: its finally blocks run
        except BaseException as exc:
            sender.failed(exc)
    return sender.summary()


def _logs():
    """NUL + what the call wrote to stdout/stderr (the capture is emptied), or nothing."""
    text = _output.getvalue()
    _output.seek(0)
    _output.truncate()
    if _output.dropped:
        text += "\n[wasmlambda: %d more characters of output were cut: at most %d are kept per call]\n" % (
            _output.dropped, OUTPUT_LIMIT)
        _output.dropped = 0
    if not text:
        return b""
    return b"\x00" + text.encode("utf-8", "replace").replace(b"\x00", b"")


def _load(payload):
    global _handler, _app, _call_app, _asgi_state
    spec = json.loads(payload)
    wasmlambda_guest.context.function_name = spec["name"]
    wasmlambda_guest.context.memory_limit_mb = spec["memory_mb"]
    sys.path.insert(0, spec["path"])
    # Dependencies that `python -m guest_sdk build` vendored.
    sys.path.insert(1, spec["path"] + "/vendor")
    stdout, stderr = sys.stdout, sys.stderr
    os.environ.update(spec.get("env") or {})
    sys.stdout = sys.stderr = io.StringIO()  # import-time output is not a call's log
    try:
        module = __import__(spec["module"])
        handler = getattr(module, spec["handler"], None)
        app = getattr(module, spec.get("wsgi") or "app", None)
        if spec.get("wsgi") or not callable(handler):
            handler = None
            if not callable(app):
                raise AttributeError(
                    "%s.py defines neither a callable %s(event) nor a WSGI app named %s" % (
                        spec["module"], spec["handler"], spec.get("wsgi") or "app"))
    except BaseException as exc:
        return _error("load", exc, code_path=spec["path"])
    finally:
        sys.stdout, sys.stderr = stdout, stderr
    _handler = handler
    _wl_loop.inline_thread_pools()
    if handler is None:
        _app = app
        if _is_asgi(app):
            _call_app = _call_asgi
            try:
                _asgi_state = _asgi_startup(app)
            except BaseException as exc:
                return _error("load", exc, code_path=spec["path"])
        else:
            _call_app = _call_wsgi
    sys.stdout = sys.stderr = _output  # from now on, output is a call's logs
    # Objects that exist now live as long as the snapshot: keep the collector
    # from walking them, which would dirty (copy-on-write) their pages later.
    gc.collect()
    gc.freeze()
    return b'0"function"' if _call_app is None else b'0"asgi"' if _call_app is _call_asgi else b'0"wsgi"'


# -- WSGI (PEP 3333) --------------------------------------------------------

_HEADER_VARIABLES = {"content-type": "CONTENT_TYPE", "content-length": None, "transfer-encoding": None}


class _Head:
    """An app's view of the request head the host sent: the app is mounted at
    ``/run/<fn>`` (``script``), and ``rest`` is the path below it."""

    def __init__(self, head):
        lines = head.decode("latin-1").split("\r\n")
        self.method, _, target = lines[0].partition(" ")
        self.path, _, self.query = target.partition("?")
        prefix_end = self.path.find("/", self.path.find("/", 1) + 1)
        self.script, self.rest = (self.path, "") if prefix_end < 0 else (self.path[:prefix_end],
                                                                         self.path[prefix_end:])
        self.headers = [(name.lower(), value) for name, _, value in (line.partition(": ") for line in lines[1:])
                        if name]
        host = next((value for name, value in self.headers if name == "host"), "")
        name, colon, port = host.rpartition(":")
        if not colon or not port.isdigit():  # no port (or the end of an IPv6 address)
            name, port = host, "80"
        self.server = (name or "localhost", int(port))


def _wsgi_environ(head, body):
    """The WSGI environ of one request."""
    unquote_to_bytes = urllib.parse.unquote_to_bytes
    head = _Head(head)
    environ = {
        "REQUEST_METHOD": head.method,
        "SCRIPT_NAME": unquote_to_bytes(head.script).decode("latin-1"),
        "PATH_INFO": unquote_to_bytes(head.rest).decode("latin-1"),
        "QUERY_STRING": head.query,
        "CONTENT_LENGTH": str(len(body)),
        "SERVER_NAME": head.server[0],
        "SERVER_PORT": str(head.server[1]),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": _output,  # into the call's logs
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in head.headers:
        key = _HEADER_VARIABLES.get(name, "HTTP_" + name.upper().replace("-", "_"))
        if key is None:
            continue  # the body arrives whole: its length is CONTENT_LENGTH
        if key in environ:
            value = environ[key] + ("; " if key == "HTTP_COOKIE" else ",") + value
        environ[key] = value
    return environ


def _call_wsgi(head, body):
    response = []  # [status, headers]
    chunks = []

    def start_response(status, headers, exc_info=None):
        if response and exc_info is None:
            raise AssertionError("start_response was called twice without exc_info")
        response[:] = [status, headers]
        return chunks.append  # the legacy write() callable

    try:
        result = _app(_wsgi_environ(head, body), start_response)
        if not isinstance(result, (list, tuple)) and not _declares_length(response):
            # An iterable of unknown length (a generator, Flask's stream_with_context): streamed.
            return _stream(_Chunks(_WsgiBody(chunks, result)), lambda: _wsgi_head(response),
                           wasmlambda_guest.context, frame_events=False)
        try:
            for chunk in result:
                if not isinstance(chunk, bytes):
                    raise TypeError("a WSGI app must yield bytes, got %s" % type(chunk).__name__)
                if chunk:
                    chunks.append(chunk)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = _wsgi_head(response)
        headers = [[name, value] for name, values in headers.items() for value in values]
    except BaseException as exc:  # the app's failure is the caller's answer
        return _error("handler", exc, logs=True)
    return _collected(status, headers, b"".join(chunks))


def _collected(status, headers, content):
    """An app's whole response: ``W`` + status and [[name, value], ...] + the body's length, then the body."""
    settings = _dumps({"status": status, "headers": headers, "length": len(content)})
    return b"W" + settings.encode() + b"\x00" + content + (_logs() if _output.tell() else b"")


# -- ASGI ------------------------------------------------------------------------


def _is_asgi(app):
    import inspect

    return inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(getattr(app, "__call__", None))


class _NoLifespan(Exception):
    """The app does not speak the lifespan protocol (allowed: it just has no startup)."""


def _asgi_startup(app):
    """Run the app's lifespan startup now, at deploy, so what it sets up is in the
    snapshot.  The lifespan task stays pending (shutdown never comes: an
    instance is simply discarded); the state it filled is every request's."""
    loop = _wl_loop.loop()
    started = loop.create_future()
    messages = [{"type": "lifespan.startup"}]
    never = loop.create_future()
    state = {}

    async def receive():
        if messages:
            return messages.pop(0)
        return await never

    async def send(message):
        kind = message.get("type")
        if kind == "lifespan.startup.complete" and not started.done():
            started.set_result(None)
        elif kind == "lifespan.startup.failed" and not started.done():
            started.set_exception(RuntimeError("lifespan startup failed: %s" % message.get("message", "")))

    async def lifespan():
        try:
            await app({"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": state},
                      receive, send)
        except BaseException as exc:
            if not started.done():
                started.set_exception(_NoLifespan(exc))
        if not started.done():
            started.set_result(None)

    task = loop.create_task(lifespan())
    _wl_loop.kept.add(task)
    try:
        loop.run_until_complete(started)
    except _NoLifespan:
        pass
    return state


class _Exchange:
    """One ASGI request: the body in, the response out (whole, or streamed once
    the app says more body follows)."""

    def __init__(self, body):
        self._body = body
        self._loop = _wl_loop.loop()
        self._over = self._loop.create_future()  # the response is complete, or the client gone
        self.status = self.headers = self.sender = None
        self.chunks = []
        self.complete = False

    async def receive(self):
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self._over  # (Starlette listens for a disconnect while it streams)
        return {"type": "http.disconnect"}

    async def send(self, message):
        kind = message["type"]
        if kind == "http.response.start":
            if self.status is not None:
                raise RuntimeError("http.response.start was sent twice")
            self.status = int(message["status"])
            self.headers = [[bytes(name).decode("latin-1"), bytes(value).decode("latin-1")]
                            for name, value in message.get("headers", ())]
        elif kind == "http.response.body":
            if self.status is None or self.complete:
                raise RuntimeError("http.response.body outside a response")
            body, more = bytes(message.get("body", b"")), bool(message.get("more_body", False))
            if self.sender is None and not more:
                self.chunks.append(body)
                return self._finish()
            if self.sender is None:  # more body will follow: stream it
                self.sender = _Sender()
                self.sender.start(self.status, self.headers)
                for chunk in self.chunks:
                    self.sender.write(chunk)
            if body and not self.sender.write(body):
                self._finish()
                raise OSError("the client disconnected")
            if not more:
                self._finish()
        else:
            raise ValueError("unsupported ASGI message %r" % kind)

    def _finish(self):
        self.complete = True
        if not self._over.done():
            self._over.set_result(None)


def _asgi_scope(head):
    """The http scope of one request: ``path`` is the whole path and ``root_path``
    where the app is mounted (so routing sees the path below it)."""
    head = _Head(head)
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": head.method, "scheme": "http", "path": urllib.parse.unquote(head.path),
        "raw_path": head.path.encode("latin-1"), "query_string": head.query.encode("latin-1"),
        "root_path": urllib.parse.unquote(head.script), "server": head.server, "client": None,
        "headers": [(name.encode("latin-1"), value.encode("latin-1")) for name, value in head.headers],
        "state": dict(_asgi_state),
    }


def _call_asgi(head, body):
    exchange = _Exchange(body)
    try:
        _wl_loop.run(_app(_asgi_scope(head), exchange.receive, exchange.send))
        if exchange.sender is None and not exchange.complete:
            raise RuntimeError("the ASGI app returned without sending a whole response")
    except BaseException as exc:
        if exchange.sender is None:
            return _error("handler", exc, logs=True)
        if exchange.sender.outcome == "complete":
            exchange.sender.failed(exc)
    if exchange.sender is not None:
        if not exchange.complete and exchange.sender.outcome == "complete":
            exchange.sender.failed(RuntimeError("the ASGI app returned before its response was complete"))
        return exchange.sender.summary()
    return _collected(exchange.status, exchange.headers, b"".join(exchange.chunks))


def _declares_length(response):
    return bool(response) and any(str(name).lower() == "content-length" for name, _ in response[1])


def _wsgi_head(response):
    """The status (an int) and headers (lower-case name -> values) an app gave start_response."""
    if not response:
        raise AssertionError("the WSGI app returned without calling start_response")
    headers = {}
    for name, value in response[1]:
        headers.setdefault(str(name).lower(), []).append(str(value))
    return int(str(response[0]).split(" ", 1)[0]), headers


class _WsgiBody:
    """What ``write()`` was given, then the app's iterable (which must yield bytes); closes it."""

    def __init__(self, written, result):
        self._written, self._result = written, result
        self._iterator = iter(result)

    def __iter__(self):
        return self

    def __next__(self):
        if self._written:
            return self._written.pop(0)
        chunk = next(self._iterator)
        if not isinstance(chunk, bytes):
            raise TypeError("a WSGI app must yield bytes, got %s" % type(chunk).__name__)
        return chunk

    def close(self):
        close = getattr(self._result, "close", None)
        if close is not None:
            close()


def _error(phase, exc, code_path="/", logs=False):
    file = line = None
    message = str(exc)
    if isinstance(exc, SyntaxError):
        file, line, message = exc.filename, exc.lineno, exc.msg
    else:
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename.startswith(code_path):
                file, line = frame.filename, frame.lineno
    tb = exc.__traceback__
    if phase == "handler" and tb is not None:
        tb = tb.tb_next  # start at the handler, not at this module's call of it
    formatted = "".join(traceback.format_exception(type(exc), exc, tb))
    if logs:
        _output.write(formatted)  # the traceback belongs in the invocation's logs too
    body = {
        "phase": phase,
        "type": type(exc).__name__,
        "message": message,
        "traceback": formatted,
        "file": file,
        "line": line,
    }
    return b"E" + _dumps(body).encode() + (_logs() if logs else b"")
