"""Function packages: a tar.gz holding the handler's module (``f.py``
defining ``f(event)``, or a WSGI app), any other modules or packages it
imports (``vendor/`` for dependencies) and its optional manifests
(``wasmlambda.toml``, ``ol.yaml``: see kernel/_manifest.py); or, for a native
function, ``f.wasm`` built by ``python -m guest_sdk build`` against
wasmlambda.h.

Extraction trusts nothing in the archive: only regular files and
directories, no absolute paths or ``..``, bounded count and size.  An archive
whose entries all sit under one top-level folder (``tar czf hello.tgz
hello/``) is accepted as if that folder were the root.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import re
import shutil
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from ..errors import DeployError
from ._manifest import HANDLER_FILE, MANIFEST_FILE, OL_MANIFEST_FILE

NATIVE_FILE = "f.wasm"
VENDOR_DIR = "vendor"  # dependencies, unpacked by guest_sdk (kernel/_package_cache.py shares them)
MAX_ENTRIES = 10_000  # files and folders
MAX_PATH_BYTES = 1024
MAX_NAME_BYTES = 255
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise DeployError(
            f"invalid function name {name!r}: use 1-64 letters, digits, '-' or '_', starting with a letter or digit"
        )
    return name


def extract(archive: bytes, destination: Path, max_unpacked_bytes: int) -> None:
    """Unpack a tar.gz into ``destination`` (which must not exist yet).

    The archive is read as a stream, one member at a time, and trusted in
    nothing: decompression stops as soon as more bytes come out than the
    files may hold (a gzip bomb costs at most ``max_unpacked_bytes``); each
    member's declared size is checked before it is read; files and
    directories both count against ``MAX_ENTRIES``; a path that is unsafe,
    too long or clashes with another member is a DeployError naming it.
    """
    staging = destination.parent / f".{destination.name}.unpacking"
    staging.mkdir(parents=True)
    stream = _CappedGzip(archive, max_unpacked_bytes + MAX_ENTRIES * _TAR_OVERHEAD_PER_ENTRY)
    entries = total = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                entries += 1
                if entries > MAX_ENTRIES:
                    raise DeployError(f"the package has more than {MAX_ENTRIES} files and folders")
                relative = _checked_path(member.name)
                if member.isdir() or not relative.parts:
                    with _unpacking(member.name):
                        (staging / relative).mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isfile():
                    raise DeployError(f"{member.name!r} is not a regular file (links and devices are not allowed)")
                total += member.size
                if total > max_unpacked_bytes:
                    raise DeployError(f"the package unpacks to more than {max_unpacked_bytes >> 20} MB")
                source = tar.extractfile(member)
                if source is None:
                    raise DeployError(f"cannot read {member.name!r} from the package")
                with _unpacking(member.name):
                    _copy(source, staging / relative)
    except (tarfile.TarError, zlib.error, EOFError, gzip.BadGzipFile) as exc:
        raise DeployError(f"the package is not a valid tar.gz archive ({exc or type(exc).__name__})") from None
    os.replace(_package_root(staging), destination)
    shutil.rmtree(staging, ignore_errors=True)
    if not any((destination / name).is_file() for name in _TOP_LEVEL_MARKERS):
        raise DeployError(f"the package has no {HANDLER_FILE} (defining f(event)), {OL_MANIFEST_FILE} or "
                          f"{NATIVE_FILE} at its top level")


def kind_of(code_dir: Path) -> str:
    """``wasm`` (a native module: f.wasm, no Python entry) or ``python``."""
    python = (code_dir / HANDLER_FILE).is_file() or (code_dir / OL_MANIFEST_FILE).is_file()
    return "wasm" if (code_dir / NATIVE_FILE).is_file() and not python else "python"


# Files that mark a package's root folder.
_TOP_LEVEL_MARKERS = (HANDLER_FILE, NATIVE_FILE, OL_MANIFEST_FILE, MANIFEST_FILE)


# Tar headers and padding around a file: two 512-byte blocks at most (more
# with long-name or pax records, which a package has little use for).
_TAR_OVERHEAD_PER_ENTRY = 2048
_CHUNK = 1 << 16


class _CappedGzip(io.RawIOBase):
    """The archive's decompressed bytes, refusing to produce more than ``cap``."""

    def __init__(self, archive: bytes, cap: int) -> None:
        self._gzip = gzip.GzipFile(fileobj=io.BytesIO(archive))
        self._cap = cap
        self._produced = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        room = self._cap - self._produced + 1  # one byte over says "too much"
        data = self._gzip.read(room if size < 0 else min(size, room))
        self._produced += len(data)
        if self._produced > self._cap:
            raise DeployError(f"the package decompresses to more than {self._cap >> 20} MB")
        return data


def _checked_path(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\0" in name:
        raise DeployError(f"unsafe path in package: {name!r}")
    try:
        encoded = name.encode()
    except UnicodeEncodeError:  # tarfile hands undecodable bytes over as surrogates
        raise DeployError(f"path in package is not UTF-8: {name!r}") from None
    if len(encoded) > MAX_PATH_BYTES or any(len(part.encode()) > MAX_NAME_BYTES for part in path.parts):
        raise DeployError(f"path too long in package: {name[:80]!r}... (at most {MAX_PATH_BYTES} bytes, "
                          f"{MAX_NAME_BYTES} per name)")
    return PurePosixPath(*[part for part in path.parts if part != "."])


@contextlib.contextmanager
def _unpacking(name: str) -> Iterator[None]:
    """One member's file-system step; a clash (``a`` and ``a/b``) is the package's fault."""
    try:
        yield
    except gzip.BadGzipFile:
        raise  # the archive's fault, reported as such by extract
    except OSError as exc:
        raise DeployError(f"cannot unpack {name!r}: {exc.strerror or exc} "
                          "(does another entry use the same path as a file and a folder?)") from None


def _copy(source: IO[bytes], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("xb") as file:  # exclusive: a second member of the same name is a clash
        shutil.copyfileobj(source, file, _CHUNK)


def _package_root(unpacked: Path) -> Path:
    """``unpacked``, or the single top-level folder everything sits in when f.py is not at the top."""
    if any((unpacked / name).exists() for name in _TOP_LEVEL_MARKERS):
        return unpacked
    tops = list(unpacked.iterdir())
    if len(tops) == 1 and tops[0].is_dir():
        return tops[0]
    return unpacked
