"""The admin token: where the worker and the CLI find it.

The control plane (deploying, removing, logs, billing, metrics, keys,
namespace grants) answers only requests that carry ``Authorization: Bearer
<token>``.  The token is, in order: the ``--admin-token`` flag (``--token``
for the CLI), the ``WASMLAMBDA_ADMIN_TOKEN`` environment variable, or the
file ``<data-dir>/admin-token``.  A worker that finds none of them writes a
new random token into that file (mode 0600) at its first start and reuses it
afterwards, so on one machine the CLI and the worker agree without any
set-up.  See docs/security.md.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["TOKEN_FILE", "load_or_create", "read"]

TOKEN_FILE = "admin-token"


def read(data_dir: Path) -> str | None:
    """The token stored in ``data_dir``, or None if there is none."""
    try:
        token = (data_dir / TOKEN_FILE).read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return token or None


def load_or_create(data_dir: Path) -> str:
    """The stored token; a new one (written with mode 0600) if there is none."""
    token = read(data_dir)
    if token is not None:
        return token
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / TOKEN_FILE
    token = secrets.token_urlsafe(32)
    temporary = data_dir / f".{TOKEN_FILE}.{os.getpid()}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(token + "\n")
            file.flush()
            os.fsync(file.fileno())
        # Link, not rename: two workers starting at once keep the first token.
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        except OSError:  # no hard links here (some file systems): last writer wins, still 0600
            os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    stored = read(data_dir)
    assert stored is not None
    return stored
