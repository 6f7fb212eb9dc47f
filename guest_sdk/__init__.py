"""Tools for handler authors: build, package and try functions locally.

``python -m guest_sdk build DIR`` makes a deployable package,
``python -m guest_sdk run DIR EVENT`` runs the handler once in the sandbox.
"""

from ._build import build, build_bytes
from ._package import pack
from ._run import run
from ._vendor import BuildError

__all__ = ["BuildError", "build", "build_bytes", "pack", "run"]
