"""Settings: one dataclass, filled from defaults < TOML file < environment < flags.

The environment uses ``WASMLAMBDA_<FIELD>`` (for example ``WASMLAMBDA_PORT``);
the TOML file (``--config`` or ``WASMLAMBDA_CONFIG``) uses the field names as
keys, at top level or under ``[worker]``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

# The Python guest's snapshot alone is 7.2 MiB of linear memory.
MIN_MEMORY_MB = 16
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
_WORKER_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Busy-waiting longer than this (10 ms) would hold the event loop up.
MAX_SPIN_US = 10_000
# A call averaging longer than this (10 ms) is never worth running on the event loop.
MAX_INLINE_US = 10_000


def _xdg(variable: str, fallback: str) -> Path:
    """The per-user folder for data (XDG_DATA_HOME) or caches (XDG_CACHE_HOME), in
    each OS's own place when the XDG variable is not set: ~/Library on macOS,
    %LOCALAPPDATA% on Windows."""
    if os.environ.get(variable):
        return Path(os.environ[variable]) / "wasmlambda"
    cache = variable == "XDG_CACHE_HOME"
    if sys.platform == "darwin":
        return Path.home() / "Library" / ("Caches" if cache else "Application Support") / "wasmlambda"
    if sys.platform == "win32":
        local = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return local / "wasmlambda" / ("Cache" if cache else "Data")
    return Path.home() / fallback / "wasmlambda"


@dataclasses.dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    # "fast": the Cython request parser, handing anything unusual to h11;
    # "h11": h11 for every request (the reference implementation).
    http: str = "fast"
    data_dir: Path = dataclasses.field(default_factory=lambda: _xdg("XDG_DATA_HOME", ".local/share"))
    cache_dir: Path = dataclasses.field(default_factory=lambda: _xdg("XDG_CACHE_HOME", ".cache"))
    default_timeout_ms: int = 30_000
    default_memory_mb: int = 128
    # Upper bound for any function's memory_mb; also the size of a pooling slot.
    max_memory_mb: int = 1024
    # Linear memory that idle warm instances may hold before LRU eviction.
    memory_budget_mb: int = 4096
    idle_timeout_s: int = 600
    # Live instances at once (warm + running); pooling allocator slots.
    max_instances: int = 256
    # Sandbox calls run on these threads, off the event loop.
    sandbox_threads: int = 16
    # The longest an idle sandbox thread busy-waits for the next call, and the
    # event loop (when one call is in flight) for its result, yielding the CPU
    # to anything runnable, before they sleep.  Each side spins only while its
    # waits have lately been shorter than a wake-up (~50 µs on a VM), and for
    # at most 100 µs (kernel/_scheduler.py, SPIN_PAYS_NS).  0: never busy-wait
    # (the default of each process of `serve --processes N` above 1, unless set).
    spin_us: int = 300
    # A warm call of a function whose calls have lately run shorter than this
    # runs on the event loop's own thread, with no hop to a sandbox thread
    # (kernel/_inline.py: it moves to one at its first host call or sleep).
    # 0: every call goes to a sandbox thread.
    inline_us: int = 250
    # Requests that may wait for a thread before new ones get 503.
    max_queue: int = 1024
    # Fairness: one function may run on at most this many sandbox threads at
    # once (0: half of sandbox_threads) and have at most this many calls
    # waiting (0: a quarter of max_queue); functions take turns for threads.
    max_running_per_function: int = 0
    max_queued_per_function: int = 0
    # What a client may hold: an idle keep-alive connection is closed after
    # keepalive_timeout_s; a request must arrive whole within request_timeout_s
    # of its first byte (else 408); past max_connections, or max_buffered_request_mb
    # of request bytes being received over all connections, new ones get 503.
    keepalive_timeout_s: int = 60
    request_timeout_s: int = 60
    max_connections: int = 4096
    max_buffered_request_mb: int = 512
    # A call's output beyond this is cut (a line says so); a function keeps at
    # most this much of its recent output in memory (and 1000 lines).
    max_log_bytes_per_call: int = 64 * 1024
    max_log_bytes_per_function: int = 1024 * 1024
    max_event_bytes: int = 6 * 1024 * 1024
    max_package_bytes: int = 64 * 1024 * 1024
    # Billing. Money is an integer number of pico-dollars (p$, 1e-12 USD):
    # fine enough that a 1 µs call of 128 MB still costs a whole number (2 p$)
    # and sums never drift.  Defaults match a commercial cloud's list price:
    # $0.0000166667 per GB-second and $0.20 per million requests.
    billing: bool = True
    price_gb_second_pusd: int = 16_666_667
    price_request_pusd: int = 200_000
    # Fuel (wasm instructions, roughly) is metered only when this is on: it
    # costs 10-20 % of guest speed.  Priced per million units of fuel.
    meter_fuel: bool = False
    price_million_fuel_pusd: int = 0
    # Ledger writes are batched: at most this much is lost on a kill -9.
    ledger_flush_ms: int = 200
    # Key-value state for guests: "sqlite" (state.sqlite3 in the data dir) or
    # a redis:// URL, for several workers sharing state.
    state: str = "sqlite"
    # Functions calling functions (wasmlambda_guest.invoke / map).
    max_call_depth: int = 16
    max_fan_out: int = 64
    # The control plane's bearer token; empty: read (or create) <data_dir>/admin-token.
    admin_token: str = dataclasses.field(default="", repr=False)
    # Worker processes serving the one port (0: one per core), sharing the data dir.
    processes: int = 1
    # Names this process in X-WasmLambda-Worker and /status (default: the host name).
    worker_id: str = ""
    # Where deployed code is shared between workers: "" (this worker's data dir
    # only) or a redis:// URL every worker of a cluster is given.
    code_store: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0-65535, got {self.port}")
        if self.http not in ("fast", "h11"):
            raise ConfigError(f"http must be fast or h11, got {self.http!r}")
        for name in ("default_timeout_ms", "idle_timeout_s", "max_instances", "sandbox_threads",
                     "max_event_bytes", "max_package_bytes", "memory_budget_mb", "ledger_flush_ms",
                     "max_call_depth", "max_fan_out", "keepalive_timeout_s", "request_timeout_s", "max_connections",
                     "max_buffered_request_mb", "max_log_bytes_per_call", "max_log_bytes_per_function"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.inline_us <= MAX_INLINE_US:
            raise ConfigError(f"inline_us must be 0-{MAX_INLINE_US} (longer calls would stall the event loop), "
                              f"got {self.inline_us}")
        if not 0 <= self.spin_us <= MAX_SPIN_US:
            raise ConfigError(f"spin_us must be 0-{MAX_SPIN_US} (longer would stall the event loop), "
                              f"got {self.spin_us}")
        for name in ("max_queue", "max_running_per_function", "max_queued_per_function", "price_gb_second_pusd",
                     "price_request_pusd", "price_million_fuel_pusd"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        check_memory_mb(self.default_memory_mb, self.max_memory_mb)
        if self.processes < 0:
            raise ConfigError(f"processes must not be negative (0: one per core), got {self.processes}")
        if self.worker_id and not _WORKER_ID.fullmatch(self.worker_id):
            raise ConfigError(f"worker_id may hold letters, digits, '.', '_' and '-' (1-64), got {self.worker_id!r}")
        if self.state != "sqlite" and not self.state.startswith(_REDIS_SCHEMES):
            raise ConfigError(f"state must be 'sqlite' or a redis:// URL, got {self.state!r}")
        if self.code_store and not self.code_store.startswith(_REDIS_SCHEMES):
            raise ConfigError(f"code_store must be empty or a redis:// (or rediss://) URL, got {self.code_store!r}")

    @property
    def code_dir(self) -> Path:
        return self.data_dir / "functions"


def check_memory_mb(memory_mb: int, max_memory_mb: int) -> None:
    if not MIN_MEMORY_MB <= memory_mb <= max_memory_mb:
        raise ConfigError(f"memory_mb must be between {MIN_MEMORY_MB} and {max_memory_mb}, got {memory_mb}")


_FIELDS = {field.name: field for field in dataclasses.fields(Settings)}


def _convert(name: str, value: Any, source: str) -> Any:
    kind = _FIELDS[name].type
    try:
        if kind == "bool":
            return _boolean(value)
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if kind == "Path":
            return Path(str(value)).expanduser()
        return str(value)
    except ValueError:
        raise ConfigError(f"{source}: {name} must be {kind}, got {value!r}") from None


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] = os.environ,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge the layers; unknown keys and bad values raise ConfigError."""
    values: dict[str, Any] = {}
    config_file = config_file or (Path(environ["WASMLAMBDA_CONFIG"]) if environ.get("WASMLAMBDA_CONFIG") else None)
    if config_file is not None:
        try:
            document = tomllib.loads(config_file.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_file}: {exc}") from None
        table = document.get("worker", document)
        for key, value in table.items():
            if key not in _FIELDS:
                raise ConfigError(f"{config_file}: unknown setting {key!r}")
            values[key] = _convert(key, value, str(config_file))
    for name in _FIELDS:
        env_value = environ.get(f"WASMLAMBDA_{name.upper()}")
        if env_value is not None:
            values[name] = _convert(name, env_value, f"WASMLAMBDA_{name.upper()}")
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = _convert(name, value, f"--{name.replace('_', '-')}")
    return Settings(**values)
