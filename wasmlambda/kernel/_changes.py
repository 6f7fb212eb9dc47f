"""Telling the processes of one worker that the shared data dir changed.

Theory of operation: every process of a worker (``serve --processes N``)
maps the same 8-byte file, ``<data-dir>/changes``.  A process that changed
something on disk (published or removed a function, changed invoke keys or
namespace grants) writes a fresh random token into it; every process
compares the token with the last one it acted on before serving a request,
and re-reads the data dir when it differs.  Comparing 8 mapped bytes costs
about 100 ns, so it is done on every request, and a deploy is visible to
every process before its 201 is sent.

Random tokens instead of a counter need no lock: two writers racing both
leave a token no reader has seen yet, and a reader re-reads after the last
of them.  A torn read only causes one needless re-read.  A writer does not
mark its own token as seen, so it re-reads too and picks up a sibling's
change that landed just before its own.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

__all__ = ["ChangeToken"]

_SIZE = 8


class ChangeToken:
    def __init__(self, data_dir: Path) -> None:
        path = data_dir / "changes"
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(descriptor).st_size < _SIZE:
                os.ftruncate(descriptor, _SIZE)
            self._map = mmap.mmap(descriptor, _SIZE)
        finally:
            os.close(descriptor)  # the mapping keeps the file
        self._seen = self._map[:_SIZE]

    def announce(self) -> None:
        """Tell every process (this one included) to re-read the data dir."""
        self._map[:_SIZE] = os.urandom(_SIZE)

    def take(self) -> bool:
        """Whether something changed since the last call that returned True."""
        token = self._map[:_SIZE]
        if token == self._seen:
            return False
        self._seen = token
        return True

    def close(self) -> None:
        self._map.close()
