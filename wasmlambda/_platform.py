"""Which operating-system-specific paths this process takes, decided in one place.

Theory of operation: the worker runs on Linux, macOS and Windows.  Every
call that exists only on some of them sits behind one of the flags below,
with a portable way beside it:

* ``REUSE_PORT`` (Linux): ``serve --processes N`` children each bind the
  port with SO_REUSEPORT; elsewhere they inherit one listening socket
  (POSIX), and Windows refuses ``--processes`` above 1.
* ``EPOLL_WATCH`` (Linux): the loop's spin watch reads Trio's epoll
  descriptor (a private attribute); elsewhere the loop does not watch.
* ``SYMLINKS`` (POSIX): a deploy is published by replacing a symlink;
  elsewhere by replacing a small pointer file (both atomic with ``os.replace``).
* ``FSYNC_DIRECTORIES`` (POSIX): renames are made durable by fsyncing the
  folder; Windows cannot open a folder for that.
* ``INHERIT_SOCKETS`` (POSIX): a child process can be handed a listening socket.

The C extensions (wasmlambda/_fastpath) are the other platform-specific
part: each has a pure-Python twin, used wherever it was not built.

``WASMLAMBDA_PORTABLE=1`` takes the portable way everywhere, on Linux too
(and the pure twins), so the fallbacks are tested here: ``make test`` runs
the suites once that way.  tests/test_platform.py scans the code for
platform-specific calls and lists the places allowed to make them.
"""

from __future__ import annotations

import os
import socket
import sys

__all__ = ["EPOLL_WATCH", "FSYNC_DIRECTORIES", "INHERIT_SOCKETS", "PORTABLE", "REUSE_PORT", "SYMLINKS"]

PORTABLE = os.environ.get("WASMLAMBDA_PORTABLE") == "1"
_LINUX = sys.platform.startswith("linux") and not PORTABLE
_POSIX = os.name == "posix"

REUSE_PORT = _LINUX and hasattr(socket, "SO_REUSEPORT")
EPOLL_WATCH = _LINUX
SYMLINKS = _POSIX and not PORTABLE
FSYNC_DIRECTORIES = _POSIX and not PORTABLE
INHERIT_SOCKETS = _POSIX  # (the portable way for --processes where SO_REUSEPORT is not taken)
