"""Baseline for bench/load.py: the hello handler in a plain Trio + h11 server,
run in the host interpreter with no sandbox, no registry and no scheduler.

For bench/streaming.py, ``GET /stream?chunks=N&size=S`` streams N chunks of S
bytes, each sent as it is made (what a generator handler does), chunked.

Usage: python bench/baseline_server.py [PORT]   (prints "listening on http://HOST:PORT")
"""

from __future__ import annotations

import contextlib
import json
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


async def main(port: int) -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, serve_connection, port, host="127.0.0.1"))
        host, bound = listeners[0].socket.getsockname()[:2]
        print(f"listening on http://{host}:{bound}", flush=True)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 0)
