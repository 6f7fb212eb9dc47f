"""Builds the Cython twins in wasmlambda/_fastpath/; everything else is in pyproject.toml."""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(f"wasmlambda._fastpath.{name}", [f"wasmlambda/_fastpath/{name}.pyx"], extra_compile_args=["-O2"])
    for name in ("_delta", "_call", "_parser", "_meter", "_handoff")
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False},
        quiet=True,
    )
    if os.environ.get("WASMLAMBDA_NO_EXTENSIONS") != "1"
    else [],
)
