"""Function packages: a tar.gz holding ``f.py`` (defining ``f(event)``), any
other modules or packages it imports (``vendor/`` for dependencies), and an
optional ``wasmlambda.toml``; or, for a native function, ``f.wasm`` built by
``python -m guest_sdk build`` against wasmlambda.h::

    [function]
    isolation = "warm"     # or "fresh": restore from the snapshot for every request
    invoke_keys = false    # true: /run needs one of the function's invoke keys

    [limits]
    timeout_ms = 30000
    memory_mb = 128


A package cannot grant itself access to anything: shared key-value
namespaces are granted by the operator (kernel/_access.py), and the
``[state] namespaces`` setting of earlier versions is refused with a
message saying so.

Extraction trusts nothing in the archive: only regular files and
directories, no absolute paths or ``..``, bounded count and size.  An archive
whose entries all sit under one top-level folder (``tar czf hello.tgz
hello/``) is accepted as if that folder were the root.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import io
import os
import re
import shutil
import tarfile
import tomllib
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal, get_args

from ..config import check_memory_mb
from ..errors import ConfigError, DeployError

HANDLER_FILE = "f.py"
NATIVE_FILE = "f.wasm"
MANIFEST_FILE = "wasmlambda.toml"
MAX_ENTRIES = 10_000  # files and folders
MAX_PATH_BYTES = 1024
MAX_NAME_BYTES = 255
MAX_TIMEOUT_MS = 15 * 60 * 1000
Isolation = Literal["warm", "fresh"]
ISOLATION_MODES: tuple[Isolation, ...] = get_args(Isolation)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


@dataclasses.dataclass(frozen=True)
class Limits:
    timeout_ms: int
    memory_mb: int

    @property
    def memory_bytes(self) -> int:
        return self.memory_mb << 20


@dataclasses.dataclass(frozen=True)
class FunctionSpec:
    """What a package's wasmlambda.toml says, with the worker's defaults filled in."""

    limits: Limits
    isolation: Isolation = "warm"
    invoke_keys: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"isolation": self.isolation, "invoke_keys": self.invoke_keys,
                "limits": dataclasses.asdict(self.limits)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FunctionSpec:
        # (A manifest from before invoke keys has none; its old state grants are not read.)
        return cls(Limits(**data["limits"]), data["isolation"], bool(data.get("invoke_keys", False)))


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
    if not (destination / HANDLER_FILE).is_file() and not (destination / NATIVE_FILE).is_file():
        raise DeployError(f"the package has no {HANDLER_FILE} (defining f(event)) or {NATIVE_FILE} at its top level")


def kind_of(code_dir: Path) -> str:
    """``python`` (f.py) or ``wasm`` (a native module, f.wasm)."""
    return "python" if (code_dir / HANDLER_FILE).is_file() else "wasm"


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
    if (unpacked / HANDLER_FILE).exists() or (unpacked / NATIVE_FILE).exists():
        return unpacked
    tops = list(unpacked.iterdir())
    if len(tops) == 1 and tops[0].is_dir():
        return tops[0]
    return unpacked


def read_spec(code_dir: Path, default: Limits, max_memory_mb: int) -> FunctionSpec:
    """Parse and validate wasmlambda.toml; unknown keys are errors, not ignored typos."""
    path = code_dir / MANIFEST_FILE
    if not path.exists():
        return FunctionSpec(default)
    try:
        document = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DeployError(f"{MANIFEST_FILE}: {exc}") from None
    _reject_unknown(document, {"function", "limits", "state"}, "")
    function = _table(document, "function")
    limits = _table(document, "limits")
    state = _table(document, "state")
    _reject_unknown(function, {"isolation", "invoke_keys"}, "function.")
    _reject_unknown(limits, {"timeout_ms", "memory_mb"}, "limits.")
    if "namespaces" in state:
        raise DeployError(f"{MANIFEST_FILE}: state.namespaces cannot be set by a package: shared namespaces "
                          "are granted by the worker's operator (wasmlambda namespaces grant NAME FUNCTION)")
    _reject_unknown(state, set(), "state.")
    isolation = function.get("isolation", "warm")
    if isolation not in ISOLATION_MODES:
        raise DeployError(f"{MANIFEST_FILE}: function.isolation must be one of {ISOLATION_MODES}, got {isolation!r}")
    invoke_keys = function.get("invoke_keys", False)
    if not isinstance(invoke_keys, bool):
        raise DeployError(f"{MANIFEST_FILE}: function.invoke_keys must be true or false, got {invoke_keys!r}")
    timeout_ms = _integer(limits, "timeout_ms", default.timeout_ms)
    memory_mb = _integer(limits, "memory_mb", default.memory_mb)
    if not 1 <= timeout_ms <= MAX_TIMEOUT_MS:
        raise DeployError(f"{MANIFEST_FILE}: limits.timeout_ms must be between 1 and {MAX_TIMEOUT_MS}")
    try:
        check_memory_mb(memory_mb, max_memory_mb)
    except ConfigError as exc:
        raise DeployError(f"{MANIFEST_FILE}: limits.{exc}") from None
    return FunctionSpec(Limits(timeout_ms, memory_mb), isolation, invoke_keys)


def _table(document: dict[str, Any], key: str) -> dict[str, Any]:
    value = document.get(key, {})
    if not isinstance(value, dict):
        raise DeployError(f"{MANIFEST_FILE}: [{key}] must be a table")
    return value


def _reject_unknown(table: dict[str, Any], known: set[str], prefix: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise DeployError(f"{MANIFEST_FILE}: unknown setting {prefix}{unknown[0]}")


def _integer(table: dict[str, Any], key: str, default: int) -> int:
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise DeployError(f"{MANIFEST_FILE}: limits.{key} must be an integer, got {value!r}")
    return value
