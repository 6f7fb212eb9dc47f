"""Who may call a function, and which shared state a function may reach.

Both are the operator's decisions, taken through the admin API and kept in
small JSON documents: files in the data dir (mode 0600, replaced
atomically), or, for the workers of a cluster, in its Redis, so that a key
created through any worker opens every worker (``_code_store.py``):

* **Invoke keys** (``invoke-keys.json``).  A function deployed with
  ``[function] invoke_keys = true`` answers ``/run`` only to a caller
  presenting one of its keys (``Authorization: Bearer wlk_<id>_<secret>``).
  Only a SHA-256 of each secret is stored; a key is looked up by its id and
  its secret compared in constant time.
* **Shared namespaces** (``namespaces.json``).  Every function's own
  key-value namespace is private to it.  Shared state lives only in
  namespaces named ``shared:<name>``, and the operator grants each one to
  the functions that may use it; a tenant's package cannot grant anything.

The security model as a whole: docs/security.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from ..errors import BadRequest, NotFound

__all__ = ["SHARED_PREFIX", "Document", "InvokeKeys", "JsonFile", "NamespaceGrants", "check_shared_name"]

SHARED_PREFIX = "shared:"
_KEY = re.compile(r"wlk_([0-9a-f]{8})_([A-Za-z0-9_-]{20,100})")
_SHARED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def check_shared_name(name: str) -> str:
    """``name`` or ``shared:name`` -> ``shared:name``; BadRequest if malformed."""
    bare = name.removeprefix(SHARED_PREFIX)
    if not _SHARED_NAME.fullmatch(bare):
        raise BadRequest(f"invalid shared namespace {name!r}: use 1-64 letters, digits, '-' or '_'")
    return SHARED_PREFIX + bare


class Document(Protocol):
    """Where a JSON object is kept: read whole, written whole."""

    def load(self) -> dict[str, Any]: ...

    def save(self, document: dict[str, Any]) -> None: ...


class JsonFile:
    """A small document on disk, rewritten whole (fsync + rename) on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        try:
            document = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise OSError(f"cannot read {self.path}: {exc}") from None
        return document if isinstance(document, dict) else {}

    def save(self, document: dict[str, Any]) -> None:
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump(document, file, indent=2, sort_keys=True)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)


class InvokeKeys:
    def __init__(self, document: Document) -> None:
        self._file = document
        self._lock = threading.Lock()
        # function -> key id -> {"sha256": hex, "created": epoch seconds}
        self._keys: dict[str, dict[str, dict[str, Any]]] = self._file.load()

    def reload(self) -> None:
        """Re-read the file (a sibling process changed it)."""
        with self._lock:
            self._keys = self._file.load()

    def create(self, function: str) -> dict[str, Any]:
        """A new key for ``function``; the secret is in this answer only."""
        key_id, secret = secrets.token_hex(4), secrets.token_urlsafe(32)
        with self._lock:
            self._keys = self._file.load()  # another process or worker may have changed it
            self._keys.setdefault(function, {})[key_id] = {"sha256": _digest(secret), "created": time.time()}
            self._file.save(self._keys)
        return {"function": function, "id": key_id, "key": f"wlk_{key_id}_{secret}"}

    def list(self, function: str) -> list[dict[str, Any]]:
        return [{"id": key_id, "created": entry["created"]}
                for key_id, entry in sorted(self._keys.get(function, {}).items())]

    def revoke(self, function: str, key_id: str) -> None:
        with self._lock:
            self._keys = self._file.load()
            if key_id not in self._keys.get(function, {}):
                raise NotFound(f"{function!r} has no invoke key {key_id!r}")
            del self._keys[function][key_id]
            if not self._keys[function]:
                del self._keys[function]
            self._file.save(self._keys)

    def forget(self, function: str) -> None:
        """Drop a removed function's keys (a function deployed later under its name starts with none)."""
        with self._lock:
            self._keys = self._file.load()
            if self._keys.pop(function, None) is not None:
                self._file.save(self._keys)

    def check(self, function: str, presented: str) -> bool:
        match = _KEY.fullmatch(presented)
        if match is None:
            return False
        entry = self._keys.get(function, {}).get(match[1])
        return entry is not None and hmac.compare_digest(entry["sha256"], _digest(match[2]))


class NamespaceGrants:
    def __init__(self, document: Document) -> None:
        self._file = document
        self._lock = threading.Lock()
        # shared namespace -> functions granted
        self._grants: dict[str, list[str]] = {}
        self._by_function: dict[str, frozenset[str]] = {}
        self.reload()

    def reload(self) -> None:
        """(Re-)read the file (at start, and when a sibling process changed it)."""
        with self._lock:
            document = self._file.load()
            self._grants = {name: sorted(set(functions)) for name, functions in document.items()}
            self._by_function = self._index()

    def for_function(self, function: str) -> frozenset[str]:
        """The shared namespaces ``function`` may use (on every call's path: one dict lookup)."""
        return self._by_function.get(function, frozenset())

    def list(self) -> dict[str, list[str]]:
        return {name: list(functions) for name, functions in sorted(self._grants.items())}

    def grant(self, namespace: str, function: str) -> None:
        namespace = check_shared_name(namespace)
        with self._lock:
            self._grants = self._file.load()
            functions = self._grants.setdefault(namespace, [])
            if function not in functions:
                functions.append(function)
                functions.sort()
            self._commit()

    def revoke(self, namespace: str, function: str) -> None:
        namespace = check_shared_name(namespace)
        with self._lock:
            self._grants = self._file.load()
            functions = self._grants.get(namespace, [])
            if function not in functions:
                raise NotFound(f"{function!r} has no grant on {namespace!r}")
            functions.remove(function)
            if not functions:
                del self._grants[namespace]
            self._commit()

    def _commit(self) -> None:
        self._file.save(self._grants)
        self._by_function = self._index()

    def _index(self) -> dict[str, frozenset[str]]:
        by_function: dict[str, set[str]] = {}
        for namespace, functions in self._grants.items():
            for function in functions:
                by_function.setdefault(function, set()).add(namespace)
        return {function: frozenset(names) for function, names in by_function.items()}


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
