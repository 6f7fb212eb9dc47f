"""Renders an HTML page from a Mustache template with chevron, a pure-Python
templating library vendored from requirements.txt by `guest_sdk build`."""

from pathlib import Path

import chevron

# Read once at deploy time: the snapshot holds it, requests do not touch the disk.
TEMPLATE = (Path(__file__).parent / "page.mustache").read_text()


def f(event):
    return chevron.render(TEMPLATE, {
        "title": event.get("title", "Untitled"),
        "items": [{"name": item} for item in event.get("items", [])],
        "empty": not event.get("items"),
    })
