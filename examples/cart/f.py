"""A shopping cart kept in a session: the `cart` cookie names the session,
key-value state holds its items.

{"add": "apple"} / {"remove": "apple"} / {} -> {"items": {"apple": 1, ...}}
The first call sets the cookie; send it back to keep the same cart.
"""

import uuid

from wasmlambda_guest import context, kv


def f(event):
    event = event or {}
    session = context.cookies.get("cart")
    if not session:
        session = uuid.uuid4().hex
        context.response.set_cookie("cart", session, max_age=7 * 24 * 3600)
        context.response.status = 201
    key = f"session:{session}"
    items = kv.get_json(key, {})
    if "add" in event:
        items[event["add"]] = items.get(event["add"], 0) + 1
    if event.get("remove") in items:
        items[event["remove"]] -= 1
        if not items[event["remove"]]:
            del items[event["remove"]]
    if "add" in event or "remove" in event:
        kv.put(key, items)
    return {"items": items}
