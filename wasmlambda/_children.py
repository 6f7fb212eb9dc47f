"""What the supervisors (``serve --processes N``, ``cluster up``) read from a worker they started.

A worker prints exactly one line on stdout, ``wasmlambda listening on
http://HOST:PORT``, once it serves; everything else goes to stderr.
"""

from __future__ import annotations

import trio

__all__ = ["listening_port"]

_READY = b"wasmlambda listening on "


async def listening_port(stdout: trio.abc.ReceiveStream) -> int | None:
    """The port of the worker's "listening" line, or None if it exited first."""
    buffer = b""
    while b"\n" not in buffer.partition(_READY)[2]:
        chunk = await stdout.receive_some()
        if not chunk:
            return None
        buffer += chunk
    line = buffer.partition(_READY)[2].split(b"\n", 1)[0]
    return int(line.rsplit(b":", 1)[1])
