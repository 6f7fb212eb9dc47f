"""Cython twins of hot pure-Python modules (docs/architecture.md, "The fast path and its twins").

:func:`pick` returns the compiled twin unless ``WASMLAMBDA_NO_EXTENSIONS=1``.
An extension that was built but fails to import is an error, never a silent
fallback; one that was never built (a source checkout without ``pip install``)
falls back to the pure-Python module.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

from .. import _platform

_HERE = Path(__file__).parent
NAMES = ("_call", "_delta", "_handoff", "_meter", "_parser")


def extensions_disabled() -> bool:
    # (The portable paths, wasmlambda/_platform.py, take the pure twins too.)
    return os.environ.get("WASMLAMBDA_NO_EXTENSIONS") == "1" or _platform.PORTABLE


def is_built(name: str) -> bool:
    return any(_HERE.glob(f"{name}.*.so")) or any(_HERE.glob(f"{name}.*.pyd"))


def active(name: str) -> bool:
    """Whether the compiled twin of ``name`` is the one in use."""
    return not extensions_disabled() and is_built(name)


def pick(name: str, pure: ModuleType) -> ModuleType:
    if not active(name):
        return pure
    return importlib.import_module(f"{__name__}.{name}")
