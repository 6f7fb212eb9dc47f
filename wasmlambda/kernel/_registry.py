"""The code store: deployed functions on disk, and their index in memory.

Layout under the data dir::

    store/<name>-<ns>/code/...          the unpacked package
    store/<name>-<ns>/manifest.json     name, version, spec, deploy time
    store/<name>-<ns>/snapshot.bin      the memory delta over the runtime image (Python)
    store/<name>-<ns>/module.cwasm      compiled machine code (native functions)
    functions/<name> -> ../store/<name>-<ns>   a symlink (a pointer file where there are none)

A deployment is staged in ``store/.staging-*``, fsynced, renamed into place,
and published by atomically replacing the ``functions/<name>`` link (a
symlink on POSIX; elsewhere a small file naming the store entry, replaced
the same way: see _platform.SYMLINKS), so a crash at any point leaves
either the old version or the new one, never a mix.  Both kinds are read.

Several processes may share one data dir (``serve --processes N``): each
keeps its own index and ``refresh`` brings it up to date with the links on
disk.  So a replaced or removed version is not deleted at once (a sibling
may still be running it) but retired (renamed ``store/.retired-*``), and
unreferenced store entries are swept only once they are older than
``SWEEP_GRACE_S``, longer than any call or deploy may take.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .. import _platform
from ..errors import FunctionNotFound
from ..sandbox import Entry, NativeProgram, Snapshot, SnapshotFormatError
from ._inline import CallHistory
from ._manifest import FunctionSpec
from ._package import check_name

# Longer than the longest call (15 min) and deploy: what is older is nobody's.
SWEEP_GRACE_S = 20 * 60
MANIFEST = "manifest.json"
SNAPSHOT = "snapshot.bin"
COMPILED = "module.cwasm"


@dataclasses.dataclass
class Function:
    name: str
    version: str
    directory: Path
    spec: FunctionSpec
    deployed_at: float
    kind: str  # "python" or "wasm"
    snapshot: Snapshot | None = None  # Python functions
    program: NativeProgram | None = None  # native functions, compiled when loaded
    # How its calls went in this process (whether they may run inline): not saved.
    calls: CallHistory = dataclasses.field(default_factory=CallHistory, compare=False, repr=False)

    @property
    def code_dir(self) -> Path:
        return self.directory / "code"

    @property
    def compiled_path(self) -> Path:
        return self.directory / COMPILED

    @property
    def entry(self) -> Entry:
        """What its snapshot imports, and the environment the package sets."""
        return Entry(self.spec.entry, self.spec.wsgi_entry, self.spec.env)

    def describe(self) -> dict[str, Any]:
        description = {
            "name": self.name,
            "kind": self.kind,
            "version": self.version,
            "deployed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.deployed_at)),
            **self.spec.to_json(),
        }
        if self.snapshot is not None:
            description["snapshot"] = {"bytes": len(self.snapshot.payload), "ranges": self.snapshot.range_count,
                                       "memory_pages": self.snapshot.pages}
        return description


class Registry:
    def __init__(self, data_dir: Path) -> None:
        self.links = data_dir / "functions"
        self.store = data_dir / "store"
        self.links.mkdir(parents=True, exist_ok=True)
        self.store.mkdir(parents=True, exist_ok=True)
        self._functions: dict[str, Function] = {}

    def get(self, name: str) -> Function:
        try:
            return self._functions[name]
        except KeyError:
            raise FunctionNotFound(f"no function named {name!r} is deployed") from None

    def __iter__(self) -> Iterator[Function]:
        return iter(sorted(self._functions.values(), key=lambda fn: fn.name))

    def __len__(self) -> int:
        return len(self._functions)

    def __contains__(self, name: object) -> bool:
        return name in self._functions

    # -- deploying --------------------------------------------------------

    def staging_dir(self) -> Path:
        return self.store / f".staging-{uuid.uuid4().hex}"

    def stage(self, staging: Path, function: Function) -> Function:
        """Write manifest (and snapshot) next to the unpacked code; durable, not yet visible."""
        manifest = {"name": function.name, "version": function.version, "kind": function.kind,
                    "deployed_at": function.deployed_at, **function.spec.to_json()}
        _write_durably(staging / MANIFEST, json.dumps(manifest, indent=2).encode())
        if function.snapshot is not None:
            _write_durably(staging / SNAPSHOT, function.snapshot.to_bytes())
        final = self.store / f"{function.name}-{time.time_ns()}"
        os.replace(staging, final)
        _fsync_dir(self.store)
        return dataclasses.replace(function, directory=final)

    def publish(self, function: Function) -> Function | None:
        """Make ``function`` the live version; returns the version it replaced."""
        link = self.links / function.name
        temporary = self.links / f".{function.name}.{uuid.uuid4().hex}"
        if _platform.SYMLINKS:
            temporary.symlink_to(Path("..") / "store" / function.directory.name)
        else:
            _write_durably(temporary, f"{POINTER_PREFIX}{function.directory.name}\n".encode())
        os.replace(temporary, link)
        _fsync_dir(self.links)
        previous = self._functions.get(function.name)
        self._functions[function.name] = function
        return previous

    def remove(self, name: str) -> Function:
        function = self.get(name)
        (self.links / name).unlink(missing_ok=True)  # (a sibling process may have removed it first)
        _fsync_dir(self.links)
        del self._functions[name]
        return function

    def forget(self, name: str) -> None:
        """Drop a function from this process's index only (it could not be prepared)."""
        self._functions.pop(name, None)

    def retire(self, directory: Path) -> None:
        """Set a replaced or removed version aside; ``sweep`` deletes it later."""
        retired = self.store / f".retired-{time.time_ns()}-{directory.name}"
        try:
            os.replace(directory, retired)
            os.utime(retired)  # the grace period counts from now
        except FileNotFoundError:
            pass  # a sibling process retired it already

    def sweep(self, grace_s: float = SWEEP_GRACE_S) -> None:
        """Delete store entries no link names that are older than ``grace_s``:
        retired versions, and staging left by a crash."""
        cutoff = time.time() - grace_s
        for link in self.links.iterdir():  # publishes interrupted before their rename
            if link.name.startswith(".") and link.lstat().st_mtime < cutoff:
                link.unlink(missing_ok=True)
        referenced = set()
        for link in self.links.iterdir():
            if not link.name.startswith("."):
                with contextlib.suppress(OSError, ValueError):
                    referenced.add(_target(link))
        for entry in self.store.iterdir():
            try:
                stale = entry.name not in referenced and entry.stat().st_mtime < cutoff
            except FileNotFoundError:
                continue
            if stale:
                shutil.rmtree(entry, ignore_errors=True)

    def refresh(self, warn: Callable[[str], None]) -> tuple[list[Function], list[str]]:
        """Bring the index up to date with the links on disk (a sibling
        process deployed or removed something): returns the functions that
        are new or changed (not yet prepared) and the names that went away."""
        changed: list[Function] = []
        linked: set[str] = set()
        for link in sorted(self.links.iterdir()):
            if link.name.startswith("."):
                continue  # a publish interrupted before its rename (or one in progress)
            linked.add(link.name)
            known = self._functions.get(link.name)
            try:
                if known is not None and known.directory.name == _target(link):
                    continue
                function = _read_function(link, self.store / _target(link), warn)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                warn(f"skipping function {link.name!r}: cannot read {link}: {exc}")
                continue
            self._functions[function.name] = function
            changed.append(function)
        gone = [name for name in self._functions if name not in linked]
        for name in gone:
            del self._functions[name]
        return changed, gone

    def replace_snapshot(self, function: Function, snapshot: Snapshot) -> None:
        temporary = function.directory / f".{SNAPSHOT}.tmp"
        _write_durably(temporary, snapshot.to_bytes())
        os.replace(temporary, function.directory / SNAPSHOT)
        function.snapshot = snapshot

    # -- startup ----------------------------------------------------------

    def load(self, warn: Callable[[str], None]) -> None:
        """Index every published function (skipping, and reporting, broken ones)
        and sweep what no link names any more."""
        self.refresh(warn)
        self.sweep()


POINTER_PREFIX = "store/"


def _target(link: Path) -> str:
    """The store entry a link names: a symlink's target, or a pointer file's contents."""
    if link.is_symlink():
        return Path(os.readlink(link)).name
    text = link.read_text().strip()
    if not text.startswith(POINTER_PREFIX) or "/" in text[len(POINTER_PREFIX):] or text.endswith("."):
        raise ValueError(f"not a pointer to a store entry: {text[:80]!r}")
    return text[len(POINTER_PREFIX):]


def _read_function(link: Path, directory: Path, warn: Callable[[str], None]) -> Function:
    manifest = json.loads((directory / MANIFEST).read_text())
    name = check_name(manifest["name"])
    if name != link.name:
        raise ValueError(f"manifest names {name!r}")
    kind = manifest.get("kind", "python")
    snapshot = None
    if kind == "python":
        try:
            snapshot = Snapshot.from_bytes((directory / SNAPSHOT).read_bytes())
        except (OSError, SnapshotFormatError) as exc:
            # The code is intact: the worker takes the snapshot again from it.
            warn(f"function {name!r}: unusable snapshot ({exc}); it will be taken again")
    return Function(name, manifest["version"], directory, FunctionSpec.from_json(manifest),
                    float(manifest["deployed_at"]), kind, snapshot)


def _write_durably(path: Path, data: bytes) -> None:
    with path.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _fsync_dir(path: Path) -> None:
    if not _platform.FSYNC_DIRECTORIES:  # (Windows cannot open a folder to fsync it)
        return
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
