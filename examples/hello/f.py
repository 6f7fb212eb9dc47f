"""Greets whoever the event names: {"name": "alice"} -> {"hello": "alice"}."""


def f(event):
    return {"hello": (event or {}).get("name", "world")}
