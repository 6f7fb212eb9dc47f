"""wasmlambda.toml and ol.yaml, read into one FunctionSpec (kernel/_manifest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from wasmlambda.errors import DeployError
from wasmlambda.kernel import FunctionSpec, Limits
from wasmlambda.kernel._manifest import read_spec

DEFAULT = Limits(timeout_ms=1000, memory_mb=64)


@pytest.fixture
def code(tmp_path: Path) -> Path:
    (tmp_path / "f.py").write_text("def f(event):\n    return event\n")
    return tmp_path


def test_spec_defaults_without_manifest(code: Path) -> None:
    assert read_spec(code, DEFAULT, 512) == FunctionSpec(DEFAULT, "warm")


def test_spec_reads_limits_and_isolation(code: Path) -> None:
    (code / "wasmlambda.toml").write_text('[function]\nisolation = "fresh"\n[limits]\nmemory_mb = 32\n')
    assert read_spec(code, DEFAULT, 512) == FunctionSpec(Limits(1000, 32), "fresh")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("[limits]\ntimeout = 5", "unknown setting limits.timeout"),
        ("[limts]\n", "unknown setting limts"),
        ("[limits]\nmemory_mb = 4096", "memory_mb must be between 16 and 512"),
        ("[limits]\ntimeout_ms = 0", "timeout_ms must be between 1"),
        ("[limits]\ntimeout_ms = '5'", "must be an integer"),
        ('[function]\nisolation = "cold"', "isolation must be one of"),
        ("limits = 3", r"\[limits\] must be a table"),
        ("[limits\n", "wasmlambda.toml"),
        ("[env]\n'A B' = 1", "not a valid variable name"),
        ("[env]\nA = [1]", "A must be a string or a number"),
        ("[state]\nnamespaces = ['x']", "granted by the worker's operator"),
    ],
)
def test_bad_manifest(code: Path, document: str, message: str) -> None:
    (code / "wasmlambda.toml").write_text(document)
    with pytest.raises(DeployError, match=message):
        read_spec(code, DEFAULT, 512)


def test_ol_yaml_as_openlambda_reads_it(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("app = None\n")
    (tmp_path / "ol.yaml").write_text(
        "triggers:\n  http:\n    - method: GET\n    - method: post\n  kafka:\n    - topic: x\n"
        "environment:\n  GREETING: hi\n  RETRIES: 3\n  OL_ENTRY_FILE: app.py\n  OL_WSGI_ENTRY: app\n"
        "reuse-sandbox: false\nlimits: {}\n")
    spec = read_spec(tmp_path, DEFAULT, 512)
    assert spec.methods == ("GET", "POST")
    assert spec.allows("HEAD") and not spec.allows("DELETE")
    assert spec.allowed_methods() == ["GET", "HEAD", "POST"]
    assert spec.env == {"GREETING": "hi", "RETRIES": "3", "OL_ENTRY_FILE": "app.py", "OL_WSGI_ENTRY": "app"}
    assert (spec.entry, spec.wsgi_entry, spec.isolation) == ("app", "app", "fresh")
    assert spec.warnings == ("ol.yaml: 'limits' is not supported by this worker and was ignored",
                             "ol.yaml: kafka triggers are not supported by this worker and were ignored")
    assert FunctionSpec.from_json(spec.to_json()) == spec


def test_wasmlambda_toml_wins_over_ol_yaml(code: Path) -> None:
    (code / "ol.yaml").write_text("environment: {A: from-ol, B: from-ol}\nreuse-sandbox: false\n")
    (code / "wasmlambda.toml").write_text('[function]\nisolation = "warm"\n[env]\nA = "from-toml"\n')
    spec = read_spec(code, DEFAULT, 512)
    assert spec.env == {"A": "from-toml", "B": "from-ol"} and spec.isolation == "warm"


def test_star_method_means_any(code: Path) -> None:
    (code / "ol.yaml").write_text("triggers:\n  http:\n    - method: GET\n    - method: '*'\n")
    spec = read_spec(code, DEFAULT, 512)
    assert spec.methods == () and spec.allows("DELETE")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("triggers: [1]", "triggers must be a mapping"),
        ("triggers:\n  http: GET", "triggers.http must be a list"),
        ("triggers:\n  http:\n    - method: BREW", "unknown HTTP method 'BREW'"),
        ("triggers:\n  http:\n    - GET", "each triggers.http entry"),
        ("environment: [A]", "environment must be a mapping"),
        ("environment: {OL_ENTRY_FILE: ../x.py}", "OL_ENTRY_FILE must name a .py file"),
        ("environment: {OL_ENTRY_FILE: main.py}", "no main.py"),
        ("environment: {OL_WSGI_ENTRY: 'a.b'}", "OL_WSGI_ENTRY must be a Python name"),
        ("reuse-sandbox: maybe", "reuse-sandbox must be true or false"),
        ("- a\n- b", "must be a mapping"),
        ("a: [", "not valid YAML"),
        ("x: !!python/object/apply:os.system [true]", "not valid YAML"),
    ],
)
def test_bad_ol_yaml(code: Path, document: str, message: str) -> None:
    (code / "ol.yaml").write_text(document)
    with pytest.raises(DeployError, match=message):
        read_spec(code, DEFAULT, 512)


def test_a_package_without_its_entry_module_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match=r"no f\.py"):
        read_spec(tmp_path, DEFAULT, 512)
    assert read_spec(tmp_path, DEFAULT, 512, python=False) == FunctionSpec(DEFAULT)


def test_oversized_or_undecodable_manifests_are_refused(code: Path) -> None:
    (code / "ol.yaml").write_text("environment:\n" + "".join(f"  V{i}: {'x' * 1000}\n" for i in range(80)))
    with pytest.raises(DeployError, match="larger than 64 KB"):
        read_spec(code, DEFAULT, 512)
    (code / "ol.yaml").write_bytes(b"environment: {A: \xff}\n")
    with pytest.raises(DeployError, match="not UTF-8"):
        read_spec(code, DEFAULT, 512)
