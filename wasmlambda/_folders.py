"""What a function folder looks like, checked before a worker starts (``serve
--deploy``, ``cluster up --deploy``) so a typo fails at once, not after the runtime loads."""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError

__all__ = ["check_function_folder"]

# A Python handler (f.py), an OpenLambda folder (ol.yaml naming its entry file), or a C handler (f.c).
_MARKERS = ("f.py", "ol.yaml", "f.c")


def check_function_folder(directory: Path) -> None:
    if not any((directory / marker).is_file() for marker in _MARKERS):
        raise ConfigError(f"--deploy {directory}: no {', '.join(_MARKERS[:-1])} or {_MARKERS[-1]} in that folder")
