"""Finding (and building) the guest runtime image for this source tree.

The build itself lives in runtimes/python/build.py, which only needs the
standard library; its input hash names the cache directory, so the worker
always runs the image that matches its own guest ABI.  ``WASMLAMBDA_RUNTIME_DIR``
points at a prebuilt image instead (an install without the source tree).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

from .errors import RuntimeMissing

BUILD_SCRIPT = Path(__file__).resolve().parent.parent / "runtimes" / "python" / "build.py"


def build_script() -> ModuleType:
    if not BUILD_SCRIPT.exists():
        raise RuntimeMissing(
            f"{BUILD_SCRIPT} not found: building the runtime needs a source checkout "
            "(or set WASMLAMBDA_RUNTIME_DIR to a built runtime)"
        )
    spec = importlib.util.spec_from_file_location("wasmlambda_runtime_build", BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def locate(cache_dir: Path) -> Path:
    """The built runtime directory, or RuntimeMissing saying how to build it."""
    override = os.environ.get("WASMLAMBDA_RUNTIME_DIR")
    directory = Path(override) if override else build_script().runtime_dir(cache_dir)
    if not (directory / "build-info.json").exists():
        raise RuntimeMissing(
            f"the guest runtime is not built ({directory}); run `wasmlambda runtime build` (about 2 minutes)"
        )
    return Path(directory)
