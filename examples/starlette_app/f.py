"""A small Starlette app (ASGI): routes, JSON, a request body, a streamed
response, and a lifespan startup that runs once, at deploy time, so what it
prepares is part of the function's snapshot.

Endpoints are ``async def``: the sandbox has no threads, so Starlette's
thread pool for plain ``def`` endpoints runs them inline instead.
"""

import asyncio
import contextlib

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route


@contextlib.asynccontextmanager
async def lifespan(app):
    # Deploy time: whatever is prepared here is in the snapshot.
    yield {"primes": [n for n in range(2, 200) if all(n % d for d in range(2, int(n ** 0.5) + 1))]}


async def index(request):
    return JSONResponse({"path": request.url.path, "query": dict(request.query_params),
                         "primes_known": len(request.state.primes)})


async def reverse(request):
    text = (await request.body()).decode()
    return PlainTextResponse(text[::-1], status_code=201)


async def primes(request):
    upto = int(request.query_params.get("upto", 50))

    async def lines():
        for prime in request.state.primes:
            if prime > upto:
                break
            yield f"{prime}\n"
            await asyncio.sleep(0)

    return StreamingResponse(lines(), media_type="text/plain")


def sync_endpoint(request):
    return PlainTextResponse("plain def endpoints work too")


app = Starlette(routes=[Route("/", index), Route("/reverse", reverse, methods=["POST"]),
                        Route("/primes", primes), Route("/sync", sync_endpoint)], lifespan=lifespan)
