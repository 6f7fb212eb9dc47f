"""Where the other processes of a worker, and the other workers of a cluster, listen.

Theory of operation: each process keeps its own counters and recent logs,
and each worker its own billing ledger (SQLite in its data dir, shared by
its processes).  A question about all of them (``/stats``, ``/logs``,
``/billing`` asked without ``scope=process``) is answered by asking each of
them over HTTP and merging the answers (``http/_fanout.py``): nothing is
copied on the request path, and the figures are exact when asked.  For
that every process registers a URL at start and withdraws it at a clean
stop: in ``<data-dir>/peers/`` for the processes of one worker, or in the
cluster's Redis (hash ``wlc:peers``) when there is a shared code store.  A
process killed without withdrawing stays listed until its replacement (same
id) overwrites it; asking it fails fast, and the answer names it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple, Protocol

from ._access import JsonFile
from ._code_store import CodeStore

__all__ = ["Peer", "PeerRegistry", "peer_registry"]


class Peer(NamedTuple):
    process: str  # this process's id (X-WasmLambda-Worker)
    worker: str  # the worker (data dir) it belongs to: its processes share a ledger
    url: str  # where it answers, e.g. http://127.0.0.1:40123


class PeerRegistry(Protocol):
    def register(self, peer: Peer) -> None: ...

    def withdraw(self, process: str) -> None: ...

    def peers(self) -> list[Peer]: ...


class _PeerDirectory:
    """One small JSON file per process in the shared data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.directory = data_dir / "peers"
        self.directory.mkdir(parents=True, exist_ok=True)

    def register(self, peer: Peer) -> None:
        JsonFile(self.directory / f"{peer.process}.json").save(peer._asdict())

    def withdraw(self, process: str) -> None:
        (self.directory / f"{process}.json").unlink(missing_ok=True)

    def peers(self) -> list[Peer]:
        found = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                found.append(Peer(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                continue  # being replaced, or damaged: the next read sees the new one
        return found


def peer_registry(data_dir: Path, code_store: CodeStore | None) -> PeerRegistry:
    return code_store.peer_registry() if code_store is not None else _PeerDirectory(data_dir)
