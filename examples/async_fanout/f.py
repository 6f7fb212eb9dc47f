"""Awaits three functions at once: ``invoke_async`` starts each callee in an
instance of its own, and ``asyncio.gather`` waits for all three, so the
call takes about as long as the slowest callee, not the sum.  (Deploy
hello, echo and wordcount too: `make serve` deploys every example.)
"""

import asyncio

from wasmlambda_guest import invoke_async, kv


async def f(event):
    text = (event or {}).get("text", "to be or not to be")
    hello, echo, words = await asyncio.gather(
        invoke_async("hello", {"name": "fan-out"}),
        invoke_async("echo", {"text": text}),
        invoke_async("wordcount", {"text": text, "top": 2}),
    )
    calls = await kv.aincr("calls")
    return {"hello": hello, "echo": echo, "wordcount": words, "calls": calls}
