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

import dataclasses
import io
import re
import tarfile
import tomllib
import zlib
from pathlib import Path, PurePosixPath
from typing import Any, Literal, get_args

from ..config import check_memory_mb
from ..errors import ConfigError, DeployError

HANDLER_FILE = "f.py"
NATIVE_FILE = "f.wasm"
MANIFEST_FILE = "wasmlambda.toml"
MAX_FILES = 10_000
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
    """Unpack a tar.gz into ``destination`` (which must not exist yet)."""
    try:
        tar = tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz")  # noqa: SIM115 (closed below)
        members = tar.getmembers()
    except (tarfile.TarError, zlib.error, EOFError, OSError) as exc:
        raise DeployError(f"the package is not a valid tar.gz archive ({exc})") from None
    with tar:
        files = _checked_members(members, max_unpacked_bytes)
        prefix = _common_folder(list(files))
        destination.mkdir(parents=True)
        for relative, member in files.items():
            target = destination / PurePosixPath(*relative.parts[len(prefix.parts):])
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            if source is None:
                raise DeployError(f"cannot read {member.name!r} from the package")
            target.write_bytes(source.read())
    if not (destination / HANDLER_FILE).is_file() and not (destination / NATIVE_FILE).is_file():
        raise DeployError(f"the package has no {HANDLER_FILE} (defining f(event)) or {NATIVE_FILE} at its top level")


def kind_of(code_dir: Path) -> str:
    """``python`` (f.py) or ``wasm`` (a native module, f.wasm)."""
    return "python" if (code_dir / HANDLER_FILE).is_file() else "wasm"


def _checked_members(members: list[tarfile.TarInfo], max_unpacked_bytes: int) -> dict[PurePosixPath, tarfile.TarInfo]:
    files: dict[PurePosixPath, tarfile.TarInfo] = {}
    total = 0
    for member in members:
        path = PurePosixPath(member.name)
        if path.is_absolute() or ".." in path.parts:
            raise DeployError(f"unsafe path in package: {member.name!r}")
        if member.isdir():
            continue
        if not member.isfile():
            raise DeployError(f"{member.name!r} is not a regular file (links and devices are not allowed)")
        total += member.size
        if total > max_unpacked_bytes:
            raise DeployError(f"the package unpacks to more than {max_unpacked_bytes >> 20} MB")
        files[PurePosixPath(*[part for part in path.parts if part != "."])] = member
    if len(files) > MAX_FILES:
        raise DeployError(f"the package has {len(files)} files; at most {MAX_FILES} are allowed")
    return files


def _common_folder(paths: list[PurePosixPath]) -> PurePosixPath:
    """The single top-level folder everything sits in, if f.py is not at the root."""
    if PurePosixPath(HANDLER_FILE) in paths or PurePosixPath(NATIVE_FILE) in paths or not paths:
        return PurePosixPath()
    tops = {path.parts[0] for path in paths}
    if len(tops) == 1 and all(len(path.parts) > 1 for path in paths):
        return PurePosixPath(tops.pop())
    return PurePosixPath()


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
