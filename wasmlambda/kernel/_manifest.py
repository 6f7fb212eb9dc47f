"""What a package says about itself: ``wasmlambda.toml`` and OpenLambda's ``ol.yaml``.

Theory of operation: both files are optional and read once, at deploy, into
one :class:`FunctionSpec`; the worker's defaults fill the gaps.
``wasmlambda.toml`` is strict (an unknown key is a typo, refused)::

    [function]
    isolation = "warm"     # or "fresh": restore from the snapshot for every request
    invoke_keys = false    # true: /run needs one of the function's invoke keys

    [limits]
    timeout_ms = 30000
    memory_mb = 128

    [env]                  # the guest's os.environ (not for secrets: see `wasmlambda secrets`)
    GREETING = "hello"

``ol.yaml`` is read the way OpenLambda reads it, so a folder moves over
unchanged: ``triggers.http[].method`` limits the methods (``"*"``: any),
``environment`` becomes ``os.environ`` (``OL_ENTRY_FILE`` names the entry
module instead of ``f.py``, ``OL_WSGI_ENTRY`` the WSGI callable), and
``reuse-sandbox: false`` means ``isolation = "fresh"``.  What OpenLambda has
and this worker does not (kafka and cron triggers, ...) is a warning in the
deploy answer, not a failure.  Where both files say something,
``wasmlambda.toml`` wins.

A package cannot grant itself access to anything: shared key-value
namespaces are granted by the operator (kernel/_access.py), and the
``[state] namespaces`` setting of earlier versions is refused with a
message saying so.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from ..config import check_memory_mb
from ..errors import ConfigError, DeployError

__all__ = ["HANDLER_FILE", "ISOLATION_MODES", "MANIFEST_FILE", "METHODS", "OL_MANIFEST_FILE", "FunctionSpec",
           "Isolation", "Limits", "read_spec"]

HANDLER_FILE = "f.py"
MANIFEST_FILE = "wasmlambda.toml"
OL_MANIFEST_FILE = "ol.yaml"
MAX_TIMEOUT_MS = 15 * 60 * 1000
MAX_MANIFEST_BYTES = 64 * 1024
MAX_ENV_BYTES = 64 * 1024
Isolation = Literal["warm", "fresh"]
ISOLATION_MODES: tuple[Isolation, ...] = get_args(Isolation)
# The methods /run/<fn> answers (OPTIONS too: a WSGI app may answer CORS preflights).
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# ol.yaml keys OpenLambda knows that this worker reads (the rest are warned about).
_OL_READ = {"triggers", "environment", "reuse-sandbox"}


@dataclasses.dataclass(frozen=True)
class Limits:
    timeout_ms: int
    memory_mb: int

    @property
    def memory_bytes(self) -> int:
        return self.memory_mb << 20


@dataclasses.dataclass(frozen=True)
class FunctionSpec:
    """What a package's manifests say, with the worker's defaults filled in."""

    limits: Limits
    isolation: Isolation = "warm"
    invoke_keys: bool = False
    entry: str = "f"  # the module the handler (or WSGI app) is imported from
    wsgi_entry: str | None = None  # named by OL_WSGI_ENTRY: serve this WSGI callable even if `f` exists
    methods: tuple[str, ...] = ()  # the HTTP methods /run answers; () = any
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # what the deploy answer tells the tenant (ignored ol.yaml keys, ...)

    def allows(self, method: str) -> bool:
        return not self.methods or method in self.methods or (method == "HEAD" and "GET" in self.methods)

    def allowed_methods(self) -> list[str]:
        methods = set(self.methods or METHODS)
        if "GET" in methods:
            methods.add("HEAD")
        return sorted(methods)

    def to_json(self) -> dict[str, Any]:
        return {"isolation": self.isolation, "invoke_keys": self.invoke_keys,
                "limits": dataclasses.asdict(self.limits), "entry": self.entry, "wsgi_entry": self.wsgi_entry,
                "methods": list(self.methods), "env": self.env, "warnings": list(self.warnings)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FunctionSpec:
        # (A manifest from an earlier version lacks the later fields; its old state grants are not read.)
        return cls(Limits(**data["limits"]), data["isolation"], bool(data.get("invoke_keys", False)),
                   data.get("entry", "f"), data.get("wsgi_entry"), tuple(data.get("methods", ())),
                   dict(data.get("env", {})), tuple(data.get("warnings", ())))


def read_spec(code_dir: Path, default: Limits, max_memory_mb: int, python: bool = True) -> FunctionSpec:
    """Parse and validate ``wasmlambda.toml`` and ``ol.yaml``; every mistake is a DeployError naming its file.

    ``python``: the package is Python source (its entry module must exist);
    False for a native module, which only limits and isolation apply to.
    """
    toml = _read_toml(code_dir / MANIFEST_FILE)
    ol = _read_ol_yaml(code_dir / OL_MANIFEST_FILE)
    function = _table(toml, "function")
    limits = _table(toml, "limits")
    isolation = function.get("isolation", ol.isolation or "warm")
    if isolation not in ISOLATION_MODES:
        raise DeployError(f"{MANIFEST_FILE}: function.isolation must be one of {ISOLATION_MODES}, got {isolation!r}")
    invoke_keys = function.get("invoke_keys", False)
    if not isinstance(invoke_keys, bool):
        raise DeployError(f"{MANIFEST_FILE}: function.invoke_keys must be true or false, got {invoke_keys!r}")
    timeout_ms = _integer(limits, "timeout_ms", default.timeout_ms)
    memory_mb = _integer(limits, "memory_mb", default.memory_mb)
    if not 1 <= timeout_ms <= MAX_TIMEOUT_MS:
        raise DeployError(f"{MANIFEST_FILE}: limits.timeout_ms must be between 1 and {MAX_TIMEOUT_MS}")
    try:
        check_memory_mb(memory_mb, max_memory_mb)
    except ConfigError as exc:
        raise DeployError(f"{MANIFEST_FILE}: limits.{exc}") from None
    env = {**ol.env, **_environment(_table(toml, "env"), f"{MANIFEST_FILE}: [env]")}
    if sum(len(key) + len(value) for key, value in env.items()) > MAX_ENV_BYTES:
        raise DeployError(f"the environment is larger than {MAX_ENV_BYTES >> 10} KB")
    entry = _entry_module(env.get("OL_ENTRY_FILE", HANDLER_FILE))
    if python and not (code_dir / f"{entry}.py").is_file():
        raise DeployError(f"the package has no {entry}.py (defining f(event) or a WSGI app) at its top level")
    wsgi_entry = env.get("OL_WSGI_ENTRY")
    if wsgi_entry is not None and not _MODULE.fullmatch(wsgi_entry):
        raise DeployError(f"{OL_MANIFEST_FILE}: OL_WSGI_ENTRY must be a Python name, got {wsgi_entry!r}")
    return FunctionSpec(Limits(timeout_ms, memory_mb), isolation, invoke_keys, entry, wsgi_entry, ol.methods, env,
                        ol.warnings)


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        document = tomllib.loads(_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise DeployError(f"{MANIFEST_FILE}: {exc}") from None
    _reject_unknown(document, {"function", "limits", "state", "env"}, "")
    _reject_unknown(_table(document, "function"), {"isolation", "invoke_keys"}, "function.")
    _reject_unknown(_table(document, "limits"), {"timeout_ms", "memory_mb"}, "limits.")
    state = _table(document, "state")
    if "namespaces" in state:
        raise DeployError(f"{MANIFEST_FILE}: state.namespaces cannot be set by a package: shared namespaces "
                          "are granted by the worker's operator (wasmlambda namespaces grant NAME FUNCTION)")
    _reject_unknown(state, set(), "state.")
    return document


@dataclasses.dataclass(frozen=True)
class _OpenLambdaManifest:
    methods: tuple[str, ...] = ()
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    isolation: Isolation | None = None
    warnings: tuple[str, ...] = ()


def _read_ol_yaml(path: Path) -> _OpenLambdaManifest:
    if not path.exists():
        return _OpenLambdaManifest()
    try:
        document = yaml.safe_load(_text(path))
    except yaml.YAMLError as exc:
        raise DeployError(f"{OL_MANIFEST_FILE}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if document is None:
        return _OpenLambdaManifest()
    if not isinstance(document, dict):
        raise DeployError(f"{OL_MANIFEST_FILE}: must be a mapping (triggers, environment, ...)")
    warnings = [f"{OL_MANIFEST_FILE}: {key!r} is not supported by this worker and was ignored"
                for key in sorted(map(str, set(document) - _OL_READ))]
    triggers = document.get("triggers") or {}
    if not isinstance(triggers, dict):
        raise DeployError(f"{OL_MANIFEST_FILE}: triggers must be a mapping (http: [...])")
    warnings += [f"{OL_MANIFEST_FILE}: {kind} triggers are not supported by this worker and were ignored"
                 for kind in sorted(map(str, set(triggers) - {"http"}))]
    methods = _methods(triggers.get("http") or [])
    reuse = document.get("reuse-sandbox", True)
    if not isinstance(reuse, bool):
        raise DeployError(f"{OL_MANIFEST_FILE}: reuse-sandbox must be true or false, got {reuse!r}")
    env = _environment(document.get("environment") or {}, f"{OL_MANIFEST_FILE}: environment")
    return _OpenLambdaManifest(methods, env, None if reuse else "fresh", tuple(warnings))


def _methods(http: object) -> tuple[str, ...]:
    if not isinstance(http, list):
        raise DeployError(f"{OL_MANIFEST_FILE}: triggers.http must be a list of {{method: ...}}")
    methods: set[str] = set()
    for trigger in http:
        method = trigger.get("method", "*") if isinstance(trigger, dict) else None
        if not isinstance(method, str):
            raise DeployError(f"{OL_MANIFEST_FILE}: each triggers.http entry must be {{method: NAME}}, got {trigger!r}")
        if method == "*":
            return ()
        if method.upper() not in METHODS:
            raise DeployError(f"{OL_MANIFEST_FILE}: unknown HTTP method {method!r} (one of {', '.join(METHODS)}, "
                              "or \"*\")")
        methods.add(method.upper())
    return tuple(sorted(methods))


def _environment(table: object, where: str) -> dict[str, str]:
    if not isinstance(table, dict):
        raise DeployError(f"{where} must be a mapping of names to values")
    env = {}
    for name, value in table.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise DeployError(f"{where}: {name!r} is not a valid variable name")
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, str | int | float):
            raise DeployError(f"{where}: {name} must be a string or a number, got {type(value).__name__}")
        text = str(value)
        if "\0" in text:
            raise DeployError(f"{where}: {name} contains a NUL character")
        env[name] = text
    return env


def _entry_module(filename: str) -> str:
    module = filename.removesuffix(".py")
    if not filename.endswith(".py") or not _MODULE.fullmatch(module):
        raise DeployError(f"{OL_MANIFEST_FILE}: OL_ENTRY_FILE must name a .py file at the package's top level, "
                          f"got {filename!r}")
    return module


def _text(path: Path) -> str:
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise DeployError(f"{path.name} is larger than {MAX_MANIFEST_BYTES >> 10} KB")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DeployError(f"{path.name}: not UTF-8 ({exc.reason} at byte {exc.start})") from None


def _table(document: dict[str, Any], key: str) -> dict[str, Any]:
    value = document.get(key, {})
    if not isinstance(value, dict):
        raise DeployError(f"{MANIFEST_FILE}: [{key}] must be a table")
    return value


def _reject_unknown(table: dict[str, Any], known: set[str], prefix: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise DeployError(f"{MANIFEST_FILE}: unknown setting {prefix}{unknown[0]}")


def _integer(table: dict[str, Any], key: str, default: int) -> int:
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise DeployError(f"{MANIFEST_FILE}: limits.{key} must be an integer, got {value!r}")
    return value
