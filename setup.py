"""Builds the Cython twins in wasmlambda/_fastpath/; everything else is in pyproject.toml.

The extensions are optional: each has a pure-Python twin that the worker
uses where it is missing.  They are not built with WASMLAMBDA_NO_EXTENSIONS=1
or on Windows (they use GCC/Clang atomics and POSIX calls MSVC lacks), and a
compiler that fails on one (no compiler at all, say) leaves it out with a
warning instead of failing the install.
"""

import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def build_extension(self, ext):  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:  # (CompileError, LinkError, a missing compiler: all the same here)
            print(f"warning: {ext.name} not built ({exc}); the worker uses its pure-Python twin", file=sys.stderr)


extensions = [
    Extension(f"wasmlambda._fastpath.{name}", [f"wasmlambda/_fastpath/{name}.pyx"], extra_compile_args=["-O2"])
    for name in ("_delta", "_call", "_parser", "_meter", "_handoff")
]
wanted = os.environ.get("WASMLAMBDA_NO_EXTENSIONS") != "1" and sys.platform != "win32"

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False},
        quiet=True,
    )
    if wanted
    else [],
    cmdclass={"build_ext": OptionalBuildExt},
)
