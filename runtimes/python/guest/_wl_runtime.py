"""Guest side of the wasmlambda ABI, imported once when the base image is made.

Theory of operation: the host writes one request into the shim's input
buffer and calls ``wl_handle``, which calls :func:`handle` here.  A request is
an opcode byte followed by a payload:

* ``L`` + JSON ``{"path", "module", "handler"}``: import a function's handler.
  The host does this once per deployment and snapshots the memory after it.
* ``I`` + the JSON event: call the loaded handler with the decoded event.

A response is a status byte followed by JSON: ``0`` + the result, or ``E`` +
``{"phase", "type", "message", "traceback", "file", "line"}``.  ``phase``
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
import math  # noqa: F401
import random
import re  # noqa: F401
import string  # noqa: F401
import struct  # noqa: F401
import sys
import time
import traceback
import typing  # noqa: F401
import uuid  # noqa: F401
import zlib  # noqa: F401

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
_handler = None
# False in every snapshot, so the first call after a restore reseeds `random`,
# whose state would otherwise be identical in every instance.
_seeded = False
# Default separators: results read the way `json.dumps` users expect.
_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def handle(request):
    try:
        opcode = request[:1]
        if opcode == b"I":
            return _invoke(request[1:])
        if opcode == b"L":
            return _load(request[1:])
        raise ValueError("unknown opcode %r" % opcode)
    except BaseException as exc:  # a failure here is ours, not the handler's
        return _error("runtime", exc)


def _reject_constant(name):
    raise ValueError("%s is not valid JSON" % name)


def _invoke(payload):
    global _seeded
    if not _seeded:
        random.seed()
        _seeded = True
    try:
        event = json.loads(payload, parse_constant=_reject_constant) if payload else None
    except (ValueError, RecursionError) as exc:
        return _error("event", exc)
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = io.StringIO()
    try:
        result = _handler(event)
    except BaseException as exc:  # the handler's failure is the caller's answer
        return _error("handler", exc)
    finally:
        sys.stdout, sys.stderr = stdout, stderr
    try:
        return b"0" + _dumps(result).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        return _error("result", exc)


def _load(payload):
    global _handler
    spec = json.loads(payload)
    sys.path.insert(0, spec["path"])
    try:
        module = __import__(spec["module"])
        handler = getattr(module, spec["handler"], None)
        if not callable(handler):
            raise AttributeError(
                "%s.py does not define a callable %s(event)" % (spec["module"], spec["handler"])
            )
    except BaseException as exc:
        return _error("load", exc, spec["path"])
    _handler = handler
    # Objects that exist now live as long as the snapshot: keep the collector
    # from walking them, which would dirty (copy-on-write) their pages later.
    gc.collect()
    gc.freeze()
    return b"0null"


def _error(phase, exc, code_path="/"):
    file = line = None
    message = str(exc)
    if isinstance(exc, SyntaxError):
        file, line, message = exc.filename, exc.lineno, exc.msg
    else:
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename.startswith(code_path):
                file, line = frame.filename, frame.lineno
    return b"E" + _dumps(
        {
            "phase": phase,
            "type": type(exc).__name__,
            "message": message,
            "traceback": "".join(traceback.format_exception(exc)),
            "file": file,
            "line": line,
        }
    ).encode()
