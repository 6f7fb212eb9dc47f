"""Baseline for bench/load.py: the hello handler in a plain Trio + h11 server,
run in the host interpreter with no sandbox, no registry and no scheduler.

For bench/streaming.py, ``GET /stream?chunks=N&size=S`` streams N chunks of S
bytes, each sent as it is made (what a generator handler does), chunked.

Usage: python bench/baseline_server.py [PORT] [--processes N]   (prints "listening on http://HOST:PORT")

With ``--processes N`` (Linux), N copies serve one port (SO_REUSEPORT), as
``wasmlambda serve --processes N`` does: the same cores for both.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
from functools import partial
from pathlib import Path

import h11
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples" / "hello"))
from f import f as handler


async def serve_connection(stream: trio.SocketStream) -> None:
    # A client that resets its connections when it stops (wrk does) ends only that connection.
    with contextlib.suppress(trio.BrokenResourceError):
        await _serve(stream)


async def _serve(stream: trio.SocketStream) -> None:
    connection = h11.Connection(h11.SERVER)
    body = bytearray()
    target = b""
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            if not data:
                return
            connection.receive_data(data)
        elif isinstance(event, h11.Request):
            target = event.target
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage) and target.startswith(b"/stream"):
            query = dict(pair.split("=") for pair in target.decode().partition("?")[2].split("&") if pair)
            await stream.send_all(connection.send(h11.Response(status_code=200, headers=[
                ("content-type", "application/octet-stream")])))
            for _ in range(int(query.get("chunks", "10"))):
                await stream.send_all(connection.send(h11.Data(data=b"x" * int(query.get("size", "1024")))))
            await stream.send_all(connection.send(h11.EndOfMessage()))
            connection.start_next_cycle()
            body.clear()
        elif isinstance(event, h11.EndOfMessage):
            result = json.dumps(handler(json.loads(body))).encode()
            headers = [("content-type", "application/json"), ("content-length", str(len(result)))]
            await stream.send_all(
                connection.send(h11.Response(status_code=200, headers=headers))
                + connection.send(h11.Data(data=result))
                + connection.send(h11.EndOfMessage())
            )
            connection.start_next_cycle()
            body.clear()
        elif isinstance(event, h11.ConnectionClosed):
            return


async def main(port: int, reuse_port: bool = False) -> None:
    async with trio.open_nursery() as nursery:
        if reuse_port:
            sock = trio.socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            await sock.bind(("127.0.0.1", port))
            sock.listen(1024)
            listeners = [trio.SocketListener(sock)]
            nursery.start_soon(trio.serve_listeners, serve_connection, listeners)
        else:
            listeners = await nursery.start(partial(trio.serve_tcp, serve_connection, port, host="127.0.0.1"))
        host, bound = listeners[0].socket.getsockname()[:2]
        print(f"listening on http://{host}:{bound}", flush=True)


def supervise(processes: int) -> None:
    """N copies on one port; the port is held (bound, not listening) while they start."""
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    children = [subprocess.Popen([sys.executable, __file__, str(port), "--reuse-port"], stdout=subprocess.PIPE,
                                 text=True) for _ in range(processes)]
    for child in children:
        assert child.stdout is not None and "listening" in child.stdout.readline()
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: [child.terminate() for child in children])
    for child in children:
        child.wait()


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if "--processes" in arguments:
        supervise(int(arguments[arguments.index("--processes") + 1]))
    else:
        trio.run(main, int(arguments[0]) if arguments else 0, "--reuse-port" in arguments)
