"""A chain of three functions: text -> `wordcount` -> `render` -> an HTML page
of the most frequent words, each step an in-process `wasmlambda_guest.invoke`.

{"title": "...", "text": "...", "top": 5} -> "<!doctype html>..."
"""

from wasmlambda_guest import invoke


def f(event):
    counts = invoke("wordcount", {"text": event["text"], "top": event.get("top", 5)})
    items = [f"{word} ({count})" for word, count in counts["top"]]
    return invoke("render", {"title": event.get("title", "Top words"), "items": items})
