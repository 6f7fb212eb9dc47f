"""Benchmarks share the test suite's fixtures (the real runtime)."""

from tests.conftest import make_function, runtime, runtime_image

__all__ = ["make_function", "runtime", "runtime_image"]
