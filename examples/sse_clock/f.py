"""Server-sent events: the time, every ``interval`` seconds, ``count`` times.

``f`` is an async generator: every ``yield`` goes to the client at once, as
one event (``data: ...``), while the handler sleeps on the sandbox's event
loop between them.  Try it with ``curl -N``.
"""

import asyncio
import datetime
import json

from wasmlambda_guest import context


async def f(event):
    count = int(context.query.get("count", 5))
    interval = float(context.query.get("interval", 1))
    context.response.headers["content-type"] = "text/event-stream"
    context.response.headers["cache-control"] = "no-cache"
    for tick in range(count):
        now = datetime.datetime.now(datetime.timezone.utc)
        yield json.dumps({"tick": tick, "time": now.isoformat(timespec="milliseconds")})
        if tick + 1 < count:
            await asyncio.sleep(interval)
