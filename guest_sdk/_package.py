"""Packing a function folder into the tar.gz the worker deploys."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

SKIPPED = (".git", ".venv", "node_modules", ".mypy_cache", ".pytest_cache", ".ruff_cache", "__pycache__")


def pack(directory: Path, include_bytecode: bool = False) -> bytes:
    """A tar.gz of ``directory``, skipping VCS folders and caches (and, unless
    ``include_bytecode``, host bytecode: the guest build writes its own)."""
    skipped = set(SKIPPED) - ({"__pycache__"} if include_bytecode else set())
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(directory.rglob("*")):
            relative = path.relative_to(directory)
            if skipped & set(relative.parts) or not path.is_file():
                continue
            if path.suffix == ".pyc" and not include_bytecode:
                continue
            info = tarfile.TarInfo(relative.as_posix())
            info.size = path.stat().st_size
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(path.read_bytes()))
    return buffer.getvalue()
