"""Finding (and building) the guest runtime image.

Where the worker looks, in order: ``WASMLAMBDA_RUNTIME_DIR`` (a prebuilt
image); an installed runtime wheel (``wasmlambda-runtime-python``, see
_runtime_wheel.py), if it matches this source tree or there is no source
tree; the build cache.  The build itself lives in runtimes/python/build.py,
which only needs the standard library; its input hash names the cache
directory, so the worker always runs the image that matches its own guest
ABI.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

from . import _runtime_wheel
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
    """The built runtime directory, or RuntimeMissing saying how to get one."""
    override = os.environ.get("WASMLAMBDA_RUNTIME_DIR")
    if override:
        directory = Path(override)
    else:
        wheel = _runtime_wheel.installed()
        source_tree = BUILD_SCRIPT.exists()
        if wheel is not None and (not source_tree or wheel[1] == build_script().input_key()):
            return wheel[0]
        if not source_tree:
            raise RuntimeMissing(
                f"no guest runtime: install the runtime wheel (pip install {_runtime_wheel.DISTRIBUTION}-*.whl, "
                "made by `wasmlambda runtime pack` on a machine that built it)")
        directory = build_script().runtime_dir(cache_dir)
    if not (directory / "build-info.json").exists():
        raise RuntimeMissing(
            f"the guest runtime is not built ({directory}); run `wasmlambda runtime build` (about 2 minutes)"
        )
    return Path(directory)
