"""Secrets: environment variables a function sees that its package does not carry.

Theory of operation: the operator sets them through the admin API
(``wasmlambda secrets set FN KEY``); they are kept in one document apart
from everything else (``secrets.json``, mode 0600, or the cluster's Redis)
and reach the guest only after a restore, as ``os.environ`` entries
(``Instance.set_environment``), so no snapshot, package, ledger row or log
line the worker writes ever holds one.  Listing shows names, never values.
A handler reads them when it runs; at import time (in the snapshot) they are
not there yet.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

from ..errors import BadRequest, NotFound
from ._access import Document

__all__ = ["MAX_SECRET_BYTES", "Secrets", "check_secret"]

MAX_SECRET_BYTES = 32 * 1024
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def check_secret(name: str, value: bytes) -> str:
    """The value as text; BadRequest naming what is wrong (never quoting the value)."""
    if not _NAME.fullmatch(name):
        raise BadRequest(f"invalid secret name {name!r}: use letters, digits and '_', not starting with a digit")
    if len(value) > MAX_SECRET_BYTES:
        raise BadRequest(f"the value of {name} is larger than {MAX_SECRET_BYTES >> 10} KB")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"the value of {name} is not UTF-8 text") from None
    if "\0" in text:
        raise BadRequest(f"the value of {name} contains a NUL character")
    return text


class Secrets:
    def __init__(self, document: Document) -> None:
        self._file = document
        self._lock = threading.Lock()
        self._secrets: dict[str, dict[str, str]] = self._file.load()  # function -> name -> value
        # function -> how often its secrets changed here: part of its instances'
        # pool key, so an instance still running with the old values is not reused.
        self._generations: dict[str, int] = {}

    def reload(self) -> set[str]:
        """Re-read the document (another process or worker changed it); the functions whose secrets changed."""
        with self._lock:
            before, self._secrets = self._secrets, self._file.load()
            changed = {name for name in before.keys() | self._secrets.keys()
                       if before.get(name) != self._secrets.get(name)}
            for name in changed:
                self._generations[name] = self._generations.get(name, 0) + 1
        return changed

    def generation(self, function: str) -> int:
        return self._generations.get(function, 0)

    def of(self, function: str) -> dict[str, str]:
        return self._secrets.get(function, {})

    def names(self, function: str) -> list[str]:
        return sorted(self._secrets.get(function, {}))

    def set(self, function: str, name: str, value: str) -> None:
        self._change(function, lambda secrets: secrets.__setitem__(name, value))

    def remove(self, function: str, name: str) -> None:
        def remove(secrets: dict[str, str]) -> None:
            if secrets.pop(name, None) is None:
                raise NotFound(f"{function!r} has no secret named {name!r}")

        self._change(function, remove)

    def forget(self, function: str) -> None:
        """Drop a removed function's secrets (a function deployed later under its name starts with none)."""
        with self._lock:
            self._secrets = self._file.load()
            if self._secrets.pop(function, None) is not None:
                self._file.save(self._secrets)

    def _change(self, function: str, change: Callable[[dict[str, str]], None]) -> None:
        with self._lock:
            self._secrets = self._file.load()
            secrets = self._secrets.setdefault(function, {})
            try:
                change(secrets)
            finally:
                if not secrets:
                    del self._secrets[function]
            self._file.save(self._secrets)
            self._generations[function] = self._generations.get(function, 0) + 1
