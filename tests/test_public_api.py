"""Each package's __all__ names exactly its public (non-underscore) attributes."""

import importlib
import types

import pytest

PACKAGES = ["wasmlambda", "wasmlambda.sandbox", "wasmlambda.kernel", "wasmlambda.http", "guest_sdk"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_matches_public_names(name: str) -> None:
    package = importlib.import_module(name)
    public = {
        attribute
        for attribute, value in vars(package).items()
        if not attribute.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(package.__all__) == public


def test_only_sandbox_imports_wasmtime() -> None:
    from pathlib import Path

    root = Path(importlib.import_module("wasmlambda").__file__).parent
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if "sandbox" not in path.parts and "import wasmtime" in path.read_text()
    ]
    assert offenders == []
