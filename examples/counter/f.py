"""Counts calls in key-value state: {"by": 2} adds 2. The count survives
restarts (SQLite) and is shared by workers pointed at the same Redis."""

from wasmlambda_guest import kv


def f(event):
    by = (event or {}).get("by", 1)
    return {"count": kv.incr("count", by)}
