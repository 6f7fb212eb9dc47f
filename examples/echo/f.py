"""Returns the event unchanged."""


def f(event):
    return event
