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
import typing  # noqa: F401
import urllib.parse
import uuid  # noqa: F401
import zlib  # noqa: F401

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
_wsgi_app = None  # the WSGI callable, when the function is one
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
        if _wsgi_app is not None:
            return _call_wsgi(head, payload)
        try:
            event = _decode_event(payload) if payload else None
        except (ValueError, RecursionError) as exc:
            return _error("event", exc)
        if sys.stdout is not _output or sys.stderr is not _output:  # a handler replaced them
            sys.stdout = sys.stderr = _output
        try:
            result = _handler(event)
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
    global _handler, _wsgi_app
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
    _wsgi_app = None if handler is not None else app
    sys.stdout = sys.stderr = _output  # from now on, output is a call's logs
    # Objects that exist now live as long as the snapshot: keep the collector
    # from walking them, which would dirty (copy-on-write) their pages later.
    gc.collect()
    gc.freeze()
    return b'0"wsgi"' if _wsgi_app is not None else b'0"function"'


# -- WSGI (PEP 3333) --------------------------------------------------------

_HEADER_VARIABLES = {"content-type": "CONTENT_TYPE", "content-length": None, "transfer-encoding": None}


def _wsgi_environ(head, body):
    """The WSGI environ of one request, from the head the host sent."""
    unquote_to_bytes = urllib.parse.unquote_to_bytes
    lines = head.decode("latin-1").split("\r\n")
    method, _, target = lines[0].partition(" ")
    path, _, query = target.partition("?")
    # /run/<fn>[/rest]: the app is mounted at /run/<fn>.
    prefix_end = path.find("/", path.find("/", 1) + 1)
    script, rest = (path, "") if prefix_end < 0 else (path[:prefix_end], path[prefix_end:])
    environ = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": unquote_to_bytes(script).decode("latin-1"),
        "PATH_INFO": unquote_to_bytes(rest).decode("latin-1"),
        "QUERY_STRING": query,
        "CONTENT_LENGTH": str(len(body)),
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": _output,  # into the call's logs
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        if not name:
            continue
        name = name.lower()
        key = _HEADER_VARIABLES.get(name, "HTTP_" + name.upper().replace("-", "_"))
        if key is None:
            continue  # the body arrives whole: its length is CONTENT_LENGTH
        if key in environ:
            value = environ[key] + ("; " if key == "HTTP_COOKIE" else ",") + value
        environ[key] = value
    host = environ.get("HTTP_HOST")
    if host:
        name, colon, port = host.rpartition(":")
        if not colon or not port.isdigit():  # no port (or the end of an IPv6 address)
            name, port = host, "80"
        environ["SERVER_NAME"], environ["SERVER_PORT"] = name, port
    return environ


def _call_wsgi(head, body):
    if not head:
        return _error("handler", TypeError(
            "this function is a WSGI app: call it over HTTP (/run/<fn>/<path>), not with invoke()"))
    response = []  # [status, headers]
    chunks = []

    def start_response(status, headers, exc_info=None):
        if response and exc_info is None:
            raise AssertionError("start_response was called twice without exc_info")
        response[:] = [status, headers]
        return chunks.append  # the legacy write() callable

    if sys.stdout is not _output or sys.stderr is not _output:
        sys.stdout = sys.stderr = _output
    try:
        result = _wsgi_app(_wsgi_environ(head, body), start_response)
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
        if not response:
            raise AssertionError("the WSGI app returned without calling start_response")
        status = int(str(response[0]).split(" ", 1)[0])
        headers = [[str(name), str(value)] for name, value in response[1]]
    except BaseException as exc:  # the app's failure is the caller's answer
        return _error("handler", exc, logs=True)
    content = b"".join(chunks)
    settings = _dumps({"status": status, "headers": headers, "length": len(content)})
    return b"W" + settings.encode() + b"\x00" + content + (_logs() if _output.tell() else b"")


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
