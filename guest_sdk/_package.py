"""Packing a function folder into the tar.gz the worker deploys."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

_SKIPPED = {"__pycache__", ".git", ".venv", "node_modules", ".mypy_cache", ".pytest_cache"}


def pack(directory: Path) -> bytes:
    """A deterministic tar.gz of ``directory`` (f.py at its root), skipping
    caches and VCS folders; raises FileNotFoundError without an f.py."""
    if not (directory / "f.py").is_file():
        raise FileNotFoundError(f"{directory} has no f.py")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(directory.rglob("*")):
            relative = path.relative_to(directory)
            if _SKIPPED & set(relative.parts) or not path.is_file() or path.suffix == ".pyc":
                continue
            info = tarfile.TarInfo(relative.as_posix())
            info.size = path.stat().st_size
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(path.read_bytes()))
    return buffer.getvalue()
