"""One copy on disk of each vendored file, however many functions carry it.

Theory of operation: a package's ``vendor/`` folder (its dependencies,
unpacked by ``guest_sdk``) is mostly the same files from function to
function: a hundred functions using Flask carry a hundred copies.  At
deploy, every file under ``vendor/`` is hashed and hard-linked to
``<data-dir>/packages/blobs/<sha256>``: the first function to bring a file
makes it the blob, the next ones replace their copy with a link to it.
Code directories are never written after deploy (the guest sees them
read-only), so sharing is safe.  A blob no function links to any more (link
count 1) is removed by :meth:`PackageCache.sweep`.

Each ``*.dist-info`` folder counts as one distribution: new to the cache
(``pull-package.cnt``, OpenLambda's name for a package it had to install)
or already there (``package-cache-hit.cnt``).  Where the file system cannot
hard-link, files stay as they are; nothing fails for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from pathlib import Path

__all__ = ["PackageCache"]

_CHUNK = 1 << 16


class PackageCache:
    def __init__(self, data_dir: Path) -> None:
        self.blobs = data_dir / "packages" / "blobs"
        self.distributions = data_dir / "packages" / "distributions"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.distributions.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.pulled = 0  # distributions new to the cache (this process)
        self.hits = 0  # distributions already in it
        self.shared_bytes = 0  # bytes of files replaced by a link to an existing blob

    def adopt(self, vendor: Path) -> None:
        """Share every file under ``vendor`` with the cache (a function's staging copy, before it is published)."""
        if not vendor.is_dir():
            return
        for info in sorted(vendor.glob("*.dist-info")):
            record = info / "RECORD"
            digest = _digest(record) if record.is_file() else hashlib.sha256(info.name.encode()).hexdigest()
            marker = self.distributions / f"{info.name}-{digest[:16]}"
            with self._lock:
                if marker.exists():
                    self.hits += 1
                else:
                    marker.touch()
                    self.pulled += 1
        for path in sorted(vendor.rglob("*")):
            if path.is_file() and not path.is_symlink():
                self._share(path)

    def _share(self, path: Path) -> None:
        blob = self.blobs / _digest(path)
        try:
            os.link(blob, path.with_name(path.name + ".wl-link"))
        except FileNotFoundError:  # first of its kind: this file becomes the blob
            with contextlib.suppress(OSError):
                os.link(path, blob)
            return
        except OSError:  # no hard links here (another file system, ...): keep the copy
            return
        size = path.stat().st_size
        os.replace(path.with_name(path.name + ".wl-link"), path)
        with self._lock:
            self.shared_bytes += size

    def sweep(self) -> int:
        """Remove blobs no function links to any more; how many."""
        removed = 0
        for blob in self.blobs.iterdir():
            with contextlib.suppress(OSError):
                if blob.stat().st_nlink == 1:
                    blob.unlink()
                    removed += 1
        return removed

    def stats(self) -> dict[str, int]:
        return {"pull-package.cnt": self.pulled, "package-cache-hit.cnt": self.hits,
                "shared_bytes": self.shared_bytes}


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()
