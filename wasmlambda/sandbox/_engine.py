"""The one compiled guest runtime, shared by every function.

Theory of operation: one Engine (pooling allocator, copy-on-write memory
images, epoch interruption) compiles the runtime image once, caches the
machine code on disk, and keeps an ``InstancePre`` so that a new instance is
a store plus a pooled memory slot (~0.1 ms).  A function is never compiled:
its state is a :class:`Snapshot` applied over a fresh instance.

Timeouts are epochs: a daemon thread bumps the engine's epoch every
``TICK_MS`` and each call's deadline is set in ticks, so a spinning guest
traps within a tick of its timeout.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi
from wasmtime._extern import wrap_extern

from ..errors import CapacityExceeded, DeadlineExceeded, DeployError, GuestTrap, MemoryLimitExceeded
from ._call import link_host_calls
from ._hostcalls import Dispatch
from ._instance import DEFAULT_ENTRY, GUEST_CODE_DIR, GUEST_STDLIB, GUEST_TMP_DIR, TICK_MS, Entry, Instance
from ._snapshot import Snapshot

# The shadow stack ([0, 512 KiB), linked with --stack-first) is dead between
# calls, so snapshots skip it.
STACK_BYTES = 512 * 1024
# Slots beyond max_instances for deploy-time snapshots and the base copy.
_SPARE_SLOTS = 4
# Resident bytes a reused pooling slot keeps (reset by memcpy, not page
# faults): covers the 7.2 MiB snapshot, halving the first call's cost.
_KEEP_RESIDENT = 8 << 20
# Fuel is metering, not a limit (deadlines are epochs): a budget no call can spend.
_FUEL_BUDGET = 1 << 62


class RuntimeImage:
    """A built runtime directory: python.wasm, lib/python3.11, build-info.json."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.wasm = directory / "python.wasm"
        self.stdlib = directory / "lib" / "python3.11"
        info = json.loads((directory / "build-info.json").read_text())
        self.id: str = info["image_sha256"][:16]


class Runtime:
    """Engine + compiled module + pre-linked instance factory."""

    def __init__(self, image: RuntimeImage, cache_dir: Path, *, max_instances: int, max_memory_mb: int,
                 meter_fuel: bool = False, host_dispatch: Dispatch | None = None) -> None:
        self.image = image
        self.meter_fuel = meter_fuel
        self.host_dispatch = host_dispatch  # where guests' host calls go (the Worker checks it is its Services)
        self.engine = wasmtime.Engine(_engine_config(max_instances + _SPARE_SLOTS, max_memory_mb, meter_fuel))
        self.module = _load_module(self.engine, image, cache_dir / "compiled", meter_fuel)
        self._linker = wasmtime.Linker(self.engine)
        self._linker.define_wasi()
        self._host_calls = link_host_calls(self._linker, host_dispatch)
        self._pre = self._linker.instantiate_pre(self.module)
        self._empty_code_dir = tempfile.TemporaryDirectory(prefix="wasmlambda-empty-")
        # Stands in for /tmp (fd 5), which the guest serves from its own memory (shim/wl_tmpfs.c).
        self._empty_tmp_dir = tempfile.TemporaryDirectory(prefix="wasmlambda-empty-tmp-")
        self._stop_ticking = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="wasmlambda-epoch", daemon=True)
        self._ticker.start()
        base = self.instantiate(None, max_memory_mb << 20)
        self.base_memory = base.read_memory()
        base.close()

    @property
    def base_id(self) -> str:
        return self.image.id

    def _tick(self) -> None:
        while not self._stop_ticking.wait(TICK_MS / 1000):
            self.engine.increment_epoch()

    def close(self) -> None:
        self._stop_ticking.set()
        self._ticker.join()
        self._empty_code_dir.cleanup()
        self._empty_tmp_dir.cleanup()

    def instantiate(self, code_dir: Path | None, memory_limit: int) -> Instance:
        """A fresh instance of the Python runtime's base image."""
        wasi = wasmtime.WasiConfig()
        # Same order as at Wizer time: wasi-libc's preopen table is in the snapshot.
        wasi.preopen_dir(str(self.image.stdlib), GUEST_STDLIB, False)
        wasi.preopen_dir(str(code_dir or self._empty_code_dir.name), GUEST_CODE_DIR, False)
        wasi.preopen_dir(self._empty_tmp_dir.name, GUEST_TMP_DIR, False)
        return self._instantiate(self._pre, wasi, memory_limit)

    def _instantiate(self, pre: wasmtime.InstancePre, wasi: wasmtime.WasiConfig, memory_limit: int) -> Instance:
        store = wasmtime.Store(self.engine)
        store.set_wasi(wasi)
        store.set_limits(memory_size=memory_limit)
        if self.meter_fuel:
            store.set_fuel(_FUEL_BUDGET)
        try:
            instance = pre.instantiate(store)
        except wasmtime.WasmtimeError as exc:
            if "concurrent limit" in str(exc):
                raise CapacityExceeded("all sandbox slots are in use") from None
            raise
        return Instance(store, _Exports(store, instance), memory_limit, _FUEL_BUDGET if self.meter_fuel else 0)

    def restore(self, snapshot: Snapshot, code_dir: Path, memory_limit: int) -> Instance:
        """A fresh instance in the state the snapshot recorded."""
        instance = self.instantiate(code_dir, memory_limit)
        try:
            instance.grow_to(snapshot.pages)
            snapshot.apply(instance.memory_address())
        except BaseException:
            instance.close()
            raise
        return instance

    def snapshot(self, code_dir: Path, name: str, memory_limit: int, timeout_ms: int,
                 entry: Entry = DEFAULT_ENTRY) -> Snapshot:
        """Import the function's handler in a fresh instance and record the delta.

        Raises DeployError naming the file and line when the import fails.
        """
        module = entry.module
        instance = self.instantiate(code_dir, memory_limit)
        try:
            instance.load(name, timeout_ms, entry)
            return Snapshot.take(self.base_id, self.base_memory, instance.read_memory(), STACK_BYTES)
        except DeadlineExceeded:
            raise DeployError(f"importing {module}.py took longer than the {timeout_ms} ms timeout") from None
        except MemoryLimitExceeded:
            raise DeployError(f"importing {module}.py exceeded the memory limit of {memory_limit >> 20} MB") from None
        except GuestTrap as exc:
            raise DeployError(f"importing {module}.py crashed the sandbox: {exc}") from None
        finally:
            instance.close()

    # -- native (C) functions: their own small module, no snapshot -------------

    def load_native(self, wasm: Path, compiled: Path) -> NativeProgram:
        """Compile (or load the cached machine code of) a native function's module.

        Raises DeployError when the module is invalid or does not speak the
        guest ABI (see guest_sdk/include/wasmlambda.h).
        """

        def compile_module() -> wasmtime.Module:
            try:
                return wasmtime.Module(self.engine, wasm.read_bytes())
            except wasmtime.WasmtimeError as exc:
                raise DeployError(f"{wasm.name} is not a usable WebAssembly module: "
                                  f"{str(exc).splitlines()[0]}") from None

        module = _cached_module(self.engine, compiled, compile_module)
        exports = {export.name for export in module.exports}
        missing = sorted({"memory", "wl_reserve", "wl_handle"} - exports)
        if missing:
            raise DeployError(f"{wasm.name} does not export {', '.join(missing)}: build it with guest_sdk "
                              "against wasmlambda.h")
        foreign = sorted(f"{i.module}.{i.name}" for i in module.imports
                         if i.module not in ("wasi_snapshot_preview1", "wasmlambda"))
        if foreign:
            raise DeployError(f"{wasm.name} imports {foreign[0]}, which the sandbox does not provide")
        # poll_oneoff is how a WASI module sleeps: one that can is never run inline
        # (the Python runtime's shim announces it instead, see Instance).
        sleeps = any(i.module == "wasi_snapshot_preview1" and i.name == "poll_oneoff" for i in module.imports)
        return NativeProgram(self._linker.instantiate_pre(module), "_initialize" in exports, sleeps)

    def start_native(self, program: NativeProgram, memory_limit: int) -> Instance:
        instance = self._instantiate(program.pre, wasmtime.WasiConfig(), memory_limit)
        if program.needs_initialize:
            instance.initialize()  # wasi-libc reactor constructors
        return instance


class _Exports:
    """An instance's exports, looked up by name when asked: an Instance needs
    three, and wasmtime-py's ``Instance.exports`` wraps every one (~30 µs of
    a ~100 µs instantiation)."""

    __slots__ = ("_instance", "_store")

    def __init__(self, store: wasmtime.Store, instance: wasmtime.Instance) -> None:
        self._store = store
        self._instance = instance

    def __getitem__(self, name: str) -> Any:
        item = ffi.wasmtime_extern_t()
        encoded = name.encode()
        if not ffi.wasmtime_instance_export_get(self._store._context(), ctypes.byref(self._instance._instance),
                                                encoded, len(encoded), ctypes.byref(item)):
            raise KeyError(name)
        return wrap_extern(item)


class NativeProgram:
    """A native function's compiled, pre-linked module."""

    __slots__ = ("needs_initialize", "pre", "sleeps")

    def __init__(self, pre: wasmtime.InstancePre, needs_initialize: bool, sleeps: bool) -> None:
        self.pre = pre
        self.needs_initialize = needs_initialize
        self.sleeps = sleeps  # it imports poll_oneoff: it may block without a host call


def _engine_config(slots: int, max_memory_mb: int, meter_fuel: bool) -> wasmtime.Config:
    config = wasmtime.Config()
    config.epoch_interruption = True
    config.consume_fuel = meter_fuel
    config.memory_init_cow = True
    pooling = ffi.wasmtime_pooling_allocation_config_new()
    try:
        ffi.wasmtime_pooling_allocation_config_total_memories_set(pooling, slots)
        ffi.wasmtime_pooling_allocation_config_total_tables_set(pooling, slots)
        ffi.wasmtime_pooling_allocation_config_total_core_instances_set(pooling, slots)
        ffi.wasmtime_pooling_allocation_config_max_memory_size_set(pooling, max_memory_mb << 20)
        ffi.wasmtime_pooling_allocation_config_linear_memory_keep_resident_set(pooling, _KEEP_RESIDENT)
        ffi.wasmtime_pooling_allocation_strategy_set(config.ptr(), pooling)
    finally:
        ffi.wasmtime_pooling_allocation_config_delete(pooling)
    return config


def _load_module(engine: wasmtime.Engine, image: RuntimeImage, compiled_dir: Path, fuel: bool) -> wasmtime.Module:
    """Deserialize the cached machine code, compiling (~2 s) only on a miss.

    The key covers the image, the wasmtime version and the engine settings
    that change the code, since a .cwasm is only valid for all three.
    """
    version = importlib.metadata.version("wasmtime")
    key = hashlib.sha256(f"{image.id} {version} cow epochs pooling fuel={fuel}".encode()).hexdigest()[:16]
    path = compiled_dir / f"python-{key}.cwasm"

    def compile_module() -> wasmtime.Module:
        print(f"compiling the guest runtime for this machine (once, about 2 s) -> {path}", flush=True)
        return wasmtime.Module.from_file(engine, str(image.wasm))

    return _cached_module(engine, path, compile_module)


def _cached_module(engine: wasmtime.Engine, path: Path,
                   compile_module: Callable[[], wasmtime.Module]) -> wasmtime.Module:
    """The machine code cached at ``path``, or ``compile_module()``'s, cached there
    (atomically: a crash never leaves half a file).  A file another wasmtime
    version wrote, or a corrupt one, is compiled again."""
    if path.exists():
        try:
            return wasmtime.Module.deserialize_file(engine, str(path))
        except wasmtime.WasmtimeError:
            path.unlink()
    module = compile_module()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as temporary:
        temporary.write(module.serialize())
    os.replace(temporary.name, path)
    return module
