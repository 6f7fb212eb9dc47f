"""The worker's core: deploy, invoke, list and remove functions.

This is what the HTTP API calls.  It owns the registry (code on disk), the
warm pool and the scheduler, and it is the only place that decides between
a warm instance and a cold restore.  A request's whole path through the
layers is described in docs/architecture.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import trio

from .._money import dollars
from ..config import Settings
from ..errors import (
    ClientGone,
    DeadlineExceeded,
    DeployError,
    FunctionNotFound,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    WasmLambdaError,
)
from ..sandbox import Instance, MustRunOnThread, Runtime, RuntimeImage
from ..services import CallContext, KeyValueService, ServiceFailure, Services, open_store
from . import _inline as inline
from ._access import Document, InvokeKeys, JsonFile, NamespaceGrants
from ._changes import ChangeToken
from ._code_store import ACCESS_CHANGED, SUBSCRIBED, CodeStore
from ._composition import InvokeService
from ._ledger import Ledger
from ._logs import LogStore
from ._manifest import FunctionSpec, Limits, read_spec
from ._meter import Bill, PriceModel, Usage, microseconds
from ._metrics import Metrics
from ._package import NATIVE_FILE, VENDOR_DIR, check_name, extract, kind_of
from ._package_cache import PackageCache
from ._peers import Peer, PeerRegistry, peer_registry
from ._pool import Pool
from ._registry import COMPILED, Function, Registry
from ._scheduler import CallerGone, Scheduler
from ._secrets import Secrets, check_secret
from ._streaming import ResponseStream, StreamService

# The scheduler queue deploys wait in (no function can have this name).
DEPLOYS = "\0deploys"
# Unpacked packages may be this many times the size of the archive limit.
_UNPACK_RATIO = 4


class _Run:
    """What one guest call did, measured on the thread that ran it (perf_counter_ns stamps)."""

    __slots__ = ("arrived", "begun", "cold", "cpu_ns", "finished", "fuel", "peak_memory", "response_settings",
                 "restored", "started", "thread_cpu_ns")

    def __init__(self, arrived: int) -> None:
        self.arrived = self.begun = self.restored = self.finished = arrived
        self.thread_cpu_ns = 0  # the thread's CPU time over restore + run, nested calls on it included
        self.cpu_ns = 0  # the same without the nested calls: what this call is billed for
        self.started = self.cold = False
        self.peak_memory = self.fuel = 0
        self.response_settings: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class Invocation:
    """One call's outcome: the JSON result or the error, its usage and cost, its logs."""

    usage: Usage
    duration_us: int  # everything in the worker, queue included
    cost_pusd: int | None  # None when billing is off
    result: bytes | None = None
    error: WasmLambdaError | None = None
    logs: str = ""
    nested_calls: int = 0
    response_settings: dict[str, Any] | None = None  # status, headers, cookies the handler set

    @property
    def request_id(self) -> str:
        return self.usage.request_id

    @property
    def cold(self) -> bool:
        return self.usage.cold


class _NoWarmInstance(Exception):
    """An inline call found no warm instance: it goes to a sandbox thread (a cold start may not hold the loop)."""


# How a call ended, by its ledger status (a stream's status is 200 until it is cut).
_OUTCOMES = {499: "client-disconnected", 504: "timeout", 507: "memory-limit"}


def _bytes_out(result: bytes | None, response_settings: dict[str, Any] | None) -> int:
    if response_settings is not None and response_settings.get("streamed"):
        return int(response_settings.get("bytes", 0))
    return len(result) if result is not None else 0


class Worker:
    @classmethod
    def open(cls, settings: Settings, image: RuntimeImage, log: Callable[[str], None] = print) -> Worker:
        """A worker with its own runtime and host services, wired together (what
        ``serve`` runs); closing the worker closes them."""
        services = Services({"kv": KeyValueService(open_store(settings.state, settings.data_dir))})
        runtime = Runtime(image, settings.cache_dir, max_instances=settings.max_instances,
                          max_memory_mb=settings.max_memory_mb, meter_fuel=settings.meter_fuel,
                          host_dispatch=services.dispatch)
        try:
            worker = cls(settings, runtime, services, log)
        except BaseException:
            runtime.close()
            services.close()
            raise
        worker._owns_runtime = True
        return worker

    def __init__(self, settings: Settings, runtime: Runtime, services: Services,
                 log: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.id = settings.worker_id or socket.gethostname()
        self.runtime = runtime
        if runtime.host_dispatch != services.dispatch:  # else guests' invoke/map calls would go nowhere
            raise ValueError("the runtime must send host calls to these services: "
                             "Runtime(..., host_dispatch=services.dispatch)")
        self.services = services
        self._owns_runtime = False  # (set by open: close() closes the runtime too)
        self.invoker = InvokeService(self)
        self.services.add(self.invoker)
        self.services.add(StreamService())
        self.log = log
        self.default_limits = Limits(settings.default_timeout_ms, settings.default_memory_mb)
        self.registry = Registry(settings.data_dir)
        self.packages = PackageCache(settings.data_dir)
        # Shared with the other workers of a cluster (None: this worker's data dir only).
        self.code_store = CodeStore(settings.code_store) if settings.code_store else None
        self.keys = InvokeKeys(self._document("invoke-keys"))
        self.grants = NamespaceGrants(self._document("namespaces"))
        self.secrets = Secrets(self._document("secrets"))
        # Sibling processes sharing the data dir (serve --processes) announce their changes here.
        self.changes = ChangeToken(settings.data_dir)
        self.pool = Pool(settings.memory_budget_mb << 20, settings.idle_timeout_s, settings.max_instances)
        self.scheduler = Scheduler(
            settings.sandbox_threads, settings.max_queue, spin_us=settings.spin_us,
            max_running_per_key=settings.max_running_per_function or max(1, settings.sandbox_threads // 2),
            max_queued_per_key=settings.max_queued_per_function or max(1, settings.max_queue // 4))
        self.metrics = Metrics()
        self.inline_calls = self.moved_calls = 0
        self.logs = LogStore(bytes_per_call=settings.max_log_bytes_per_call,
                             bytes_per_function=settings.max_log_bytes_per_function)
        self.prices = PriceModel(settings.price_gb_second_pusd, settings.price_request_pusd,
                                 settings.price_million_fuel_pusd)
        self.ledger = Ledger(settings.data_dir / "ledger.sqlite3", settings.ledger_flush_ms / 1000, log) \
            if settings.billing else None
        self._deploy_locks: dict[str, trio.Lock] = {}
        self._trio_token: trio.lowlevel.TrioToken | None = None  # for nested calls that fetch shared code
        # The other processes and workers this one answers for (see join_peers).
        self.peers: PeerRegistry | None = None
        self.peer: Peer | None = None
        self.registry.load(warn=log)
        self._prepare_loaded_functions()

    def _document(self, name: str) -> Document:
        """Where the operator's decisions are kept: the cluster's Redis (a key created
        through any worker opens every worker), or a file of the data dir."""
        if self.code_store is not None:
            return self.code_store.document(name)
        return JsonFile(self.settings.data_dir / f"{name}.json")

    def _reload_access(self) -> None:
        """Re-read keys, grants and secrets (changed by another process or worker);
        instances holding a function's old secrets are not used again."""
        self.keys.reload()
        self.grants.reload()
        for name in self.secrets.reload():
            self.pool.drop(name)

    def _prepare_loaded_functions(self) -> None:
        """Snapshots are deltas over one runtime image: after a runtime
        rebuild, or if one is damaged, take them again from the stored code.
        A function that cannot be prepared is skipped; the others serve.
        Native modules are compiled (or their cached machine code loaded)."""
        for function in list(self.registry):
            try:
                self._prepare(function)
            except WasmLambdaError as exc:
                self.log(f"skipping function {function.name!r}: {exc}")
                self.registry.remove(function.name)

    def sync(self) -> None:
        """Catch up with what sibling processes changed in the shared data dir
        (on every request; ~100 ns when nothing did)."""
        if not self.changes.take():
            return
        self._reload_access()
        changed, gone = self.registry.refresh(warn=self.log)
        for name in gone:
            self.pool.drop(name)
            self.logs.forget(name)
        for function in changed:
            self.pool.drop(function.name)
            try:
                self._prepare(function)
            except WasmLambdaError as exc:
                self.log(f"skipping function {function.name!r}: {exc}")
                self.registry.forget(function.name)

    def _prepare(self, function: Function) -> None:
        if function.kind == "wasm":
            function.program = self.runtime.load_native(function.code_dir / NATIVE_FILE, function.compiled_path)
            return
        if function.snapshot is None or function.snapshot.base_id != self.runtime.base_id:
            self.log(f"re-snapshotting {function.name!r} for runtime {self.runtime.base_id}")
            limits = function.spec.limits
            snapshot = self.runtime.snapshot(function.code_dir, function.name, limits.memory_bytes, limits.timeout_ms,
                                             function.entry)
            self.registry.replace_snapshot(function, snapshot)

    def _cold_start(self, function: Function) -> Instance:
        memory = function.spec.limits.memory_bytes
        if function.program is not None:
            return self.runtime.start_native(function.program, memory)
        assert function.snapshot is not None
        instance = self.runtime.restore(function.snapshot, function.code_dir, memory)
        secrets = self.secrets.of(function.name)
        if secrets:
            try:
                instance.set_environment(secrets, function.spec.limits.timeout_ms)
            except BaseException:
                instance.close()
                raise
        return instance

    # -- invoking ---------------------------------------------------------

    async def invoke(self, name: str, event: bytes, head: bytes = b"",
                     caller_gone: Callable[[], Awaitable[None]] | None = None,
                     stream: ResponseStream | None = None) -> Invocation:
        """A request from outside: queued for a sandbox thread, billed, logged.

        ``head`` is the HTTP request head, for the handler's context;
        ``caller_gone()`` returns once the caller has left (a call still
        queued then never runs); ``stream`` takes the response if the
        handler streams one (kernel/_streaming.py)."""
        function = await self.function(name)
        limits = function.spec.limits
        arrived = time.perf_counter_ns()
        context = CallContext(name, self.grants.for_function(name), os.urandom(8).hex(), 0, (name,),
                              arrived + (limits.timeout_ms + 50) * 1_000_000, Bill(), stream)
        run = _Run(arrived)
        result: bytes | None = None
        error: WasmLambdaError | None = None
        answered: list[Usage] = []  # the row written when the caller got its answer

        def bill_late_calls() -> None:
            # Abandoned, the call may still finish nested calls after its 504:
            # their cost replaces its ledger row (the 504 said what was known).
            if answered and self.ledger is not None and context.bill.calls:
                self.ledger.record(answered[0], self.prices.quote(answered[0]), context.bill)

        try:
            inline = self._run_inline(function, event, context, run, head)
            if inline is not None:
                result, logs = inline
            else:
                run = _Run(arrived)  # (an inline attempt that moved left nothing worth keeping)
                result, logs = await self.scheduler.run(
                    lambda: self._run_guest(function, event, context, run, head=head), limits.timeout_ms,
                    bill_late_calls, caller_gone, key=name)
        except DeadlineExceeded as exc:
            error, logs = exc, exc.logs
            if run.finished < run.begun:  # abandoned mid-call: billed up to now
                run.finished = time.perf_counter_ns()
        except WasmLambdaError as exc:
            error, logs = exc, exc.logs
        except CallerGone:
            error, logs = ClientGone("the caller left before its call started"), ""
        if not run.started:  # withdrawn from the queue: it waited, nothing ran
            run.begun = run.restored = run.finished = time.perf_counter_ns()
        usage, cost, logs = self._account(function, context, run, event, result, error, logs)
        answered.append(usage)  # before any await: the scheduler calls back only after one
        return Invocation(usage, microseconds(arrived, time.perf_counter_ns()), cost, result, error, logs,
                          context.bill.calls, run.response_settings)

    def call_nested(self, name: str, event: bytes, parent: CallContext) -> bytes:
        """``wasmlambda_guest.invoke`` from inside a running call, on its sandbox
        thread: no HTTP, no queue; the callee's cost goes onto the parent's bill."""
        try:
            function = self.registry.get(name)
        except FunctionNotFound:
            if self.code_store is None or self._trio_token is None:
                raise
            # Shared code not built here yet: the loop fetches it while this thread waits.
            function = trio.from_thread.run(self.function, name, trio_token=self._trio_token)
        if function.spec.invoke_keys:
            raise ServiceFailure(f"{name!r} requires an invoke key: only callers from outside, with a key, may call it")
        if name in parent.chain:
            raise ServiceFailure(f"call cycle: {' -> '.join((*parent.chain, name))}")
        if parent.depth + 1 > self.settings.max_call_depth:
            raise ServiceFailure(f"calls nest deeper than {self.settings.max_call_depth} "
                                 f"({' -> '.join((*parent.chain, name))})")
        now = time.perf_counter_ns()
        remaining_ms = (parent.deadline_ns - now) // 1_000_000
        if remaining_ms <= 0:
            raise ServiceFailure(f"no time left to call {name!r}")
        timeout_ms = min(function.spec.limits.timeout_ms, remaining_ms)
        context = CallContext(name, self.grants.for_function(name), f"{parent.request_id}.{parent.bill.next_id()}",
                              parent.depth + 1, (*parent.chain, name), parent.deadline_ns, Bill())
        run = _Run(now)
        result: bytes | None = None
        error: WasmLambdaError | None = None
        try:
            result, logs = self._run_guest(function, event, context, run, timeout_ms)
        except WasmLambdaError as exc:
            error, logs = exc, exc.logs
        if parent.bill.thread == threading.get_ident():  # ran inline, inside the caller's CPU time
            parent.bill.inline_cpu_ns += run.thread_cpu_ns
        self._account(function, context, run, event, result, error, logs, parent.bill)
        if error is not None:
            raise ServiceFailure(f"{name}: {type(error).__name__}: {error}")
        assert result is not None
        return result

    def _run_inline(self, function: Function, event: bytes, context: CallContext, run: _Run,
                    head: bytes) -> tuple[bytes, str] | None:
        """The call on the event loop's thread if it may run there (kernel/_inline.py);
        None when it goes to a sandbox thread instead, having done nothing."""
        inline_ns = self.settings.inline_us * 1000
        if not function.calls.short(inline_ns) or function.spec.isolation != "warm" or \
                (function.program is not None and function.program.sleeps):
            return None
        try:
            answer = self._run_guest(function, event, context, run, head=head, inline_ms=inline.BUDGET_MS)
        except _NoWarmInstance:
            return None
        except MustRunOnThread as exc:
            function.calls.inline = False
            self.moved_calls += 1
            self.log(f"{function.name!r} runs on sandbox threads from now on: {exc}")
            return None
        self.inline_calls += 1
        return answer

    def _run_guest(self, function: Function, event: bytes, context: CallContext, run: _Run,
                   timeout_ms: int | None = None, head: bytes = b"", inline_ms: int = 0) -> tuple[bytes, str]:
        """One guest call on the current (sandbox) thread, measured into ``run``:
        take a warm instance (or start one), call it, give it back.  The lease
        begins and ends on this thread, so a call the loop abandoned still
        returns (or closes) its own instance.  ``inline_ms``: on the loop's
        thread (_run_inline), warm instances only, else _NoWarmInstance."""
        generation = self.secrets.generation(function.name)
        key = (function.name, f"{function.version}.{generation}" if generation else function.version)
        instance = self.pool.acquire(key, cold=not inline_ms)
        if instance is None and inline_ms:
            raise _NoWarmInstance
        run.started = True
        bill = context.bill
        bill.thread = threading.get_ident()
        run.begun = run.restored = time.perf_counter_ns()
        cpu_start = time.thread_time_ns()  # (inside the wall-clock span: CPU time never exceeds it)
        try:
            if instance is None:
                run.cold = True
                instance = self._cold_start(function)
                run.restored = time.perf_counter_ns()
            caller = self.services.bind(context)  # a nested call's caller, or None
            try:
                return instance.invoke(event, timeout_ms or function.spec.limits.timeout_ms, context.request_id,
                                       head, inline_ms)
            finally:
                run.response_settings = instance.response_settings  # (a stream's summary, even if it was cut)
                self.services.bind(caller)
                self.invoker.settle(context.request_id)  # what invoke_async started, it awaited or leaves billed
                run.thread_cpu_ns = time.thread_time_ns() - cpu_start
                run.finished = time.perf_counter_ns()
                if not run.cold:  # (a first run pays for touching its pages: not what the next will take)
                    function.calls.note(run.finished - run.restored)
                run.cpu_ns = max(run.thread_cpu_ns - bill.inline_cpu_ns, 0)
                if self.ledger is not None:
                    run.peak_memory, run.fuel = instance.memory_size(), instance.fuel_used
        finally:
            # Dead and fresh-isolation instances are closed on this thread, not the
            # loop's, and after the answer is handed over: closing resets the
            # pooled memory slot (~0.5 ms), which the caller need not wait for.
            self.pool.release(key, instance, function.spec.isolation == "warm", self.scheduler.after_answer)

    def _account(self, function: Function, context: CallContext, run: _Run, event: bytes, result: bytes | None,
                 error: WasmLambdaError | None, logs: str, parent: Bill | None = None
                 ) -> tuple[Usage, int | None, str]:
        """Meter one call and keep its output. A nested call's cost (with its own
        callees') goes onto its parent's bill; a request's ledger row and cost
        include its callees. A call that never started costs nothing and has no
        ledger row. Returns the usage, the cost and the output as kept (clipped)."""
        usage = Usage(context.request_id, function.name, time.time(), 200 if error is None else error.status,
                      run.cold, microseconds(run.arrived, run.begun), microseconds(run.begun, run.restored),
                      microseconds(run.restored, run.finished), microseconds(0, run.cpu_ns),
                      function.spec.limits.memory_mb, run.peak_memory,
                      run.fuel, len(event), _bytes_out(result, run.response_settings))
        own = cost = None
        if self.ledger is not None and not run.started:
            cost = 0
        elif self.ledger is not None:
            quote = self.prices.quote(usage)
            own = quote[0]
            if parent is not None:
                parent.add(quote, context.bill)
            else:
                cost = self.ledger.record(usage, quote, context.bill)
        self.metrics.record(usage, microseconds(run.arrived, time.perf_counter_ns()), own or 0)
        logs = self.logs.clip(logs)
        if logs:
            self.logs.append(function.name, context.request_id, logs)
        return usage, cost, logs

    # -- deploying --------------------------------------------------------

    async def deploy(self, name: str, archive: bytes, share: bool = True) -> dict[str, Any]:
        """Build and publish a version; with a code store it is shared (before
        it is published here) unless ``share`` is False (fetched from there)."""
        check_name(name)
        if len(archive) > self.settings.max_package_bytes:
            raise PayloadTooLarge(f"the package is larger than {self.settings.max_package_bytes >> 20} MB")
        async with self._lock_for(name):
            function = await self._deploy_locked(name, archive, share)
        self.log(f"deployed {name!r} version {function.version}")
        return function.describe()

    async def _deploy_locked(self, name: str, archive: bytes, share: bool) -> Function:
        timeout_ms = self.settings.default_timeout_ms
        deadline_ns = time.perf_counter_ns() + timeout_ms * 1_000_000
        try:
            function = await self.scheduler.run(lambda: self._build(name, archive, deadline_ns), timeout_ms,
                                                key=DEPLOYS)
        except DeadlineExceeded:
            raise DeployError(f"deploying took longer than the worker's default timeout ({timeout_ms} ms)") \
                from None
        if share and self.code_store is not None:
            try:
                await trio.to_thread.run_sync(self.code_store.put, name, function.version, archive)
            except ServiceUnavailable:
                self.registry.retire(function.directory)  # nothing changed anywhere
                raise
        previous = self.registry.publish(function)
        self.changes.announce()
        self.pool.drop(name)
        if previous is not None:
            self.registry.retire(previous.directory)
        return function

    async def function(self, name: str) -> Function:
        """The deployed function; with a code store, one deployed through
        another worker is fetched and built here on its first call."""
        self._trio_token = self._trio_token or trio.lowlevel.current_trio_token()
        try:
            return self.registry.get(name)
        except FunctionNotFound:
            if self.code_store is None:
                raise
        check_name(name)
        async with self._lock_for(name):
            with contextlib.suppress(FunctionNotFound):
                return self.registry.get(name)  # a call that waited for the lock fetched it
            shared = await trio.to_thread.run_sync(self.code_store.fetch, name)
            if shared is None:
                raise FunctionNotFound(f"no function named {name!r} is deployed")
            function = await self._deploy_locked(name, shared[1], share=False)
        self.log(f"fetched {name!r} version {function.version} from the shared code store")
        return function

    @contextlib.asynccontextmanager
    async def _lock_for(self, name: str) -> AsyncIterator[None]:
        """Deploys and removals of one function take turns; other functions' do not wait."""
        lock = self._deploy_locks.setdefault(name, trio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and not lock.statistics().tasks_waiting:
                self._deploy_locks.pop(name, None)

    def _build(self, name: str, archive: bytes, deadline_ns: int) -> Function:
        """Unpack, validate and snapshot in a staging directory (off the event loop).
        The handler's import may take its own timeout, but never past the deploy's deadline."""
        staging = self.registry.staging_dir()
        try:
            code = staging / "code"
            extract(archive, code, self.settings.max_package_bytes * _UNPACK_RATIO)
            self.packages.adopt(code / VENDOR_DIR)
            kind = kind_of(code)
            spec = read_spec(code, self.default_limits, self.settings.max_memory_mb, python=kind == "python")
            function = Function(name, hashlib.sha256(archive).hexdigest()[:12], staging, spec, time.time(), kind)
            if function.kind == "wasm":
                function.program = self.runtime.load_native(code / NATIVE_FILE, staging / COMPILED)
            else:
                left_ms = (deadline_ns - time.perf_counter_ns()) // 1_000_000
                if left_ms <= 0:
                    raise DeadlineExceeded("no time left to import the handler")
                function.snapshot = self.runtime.snapshot(code, name, spec.limits.memory_bytes,
                                                          min(spec.limits.timeout_ms, left_ms), function.entry)
            return self.registry.stage(staging, function)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    async def remove(self, name: str) -> None:
        if self.code_store is not None:
            check_name(name)
            if name in await trio.to_thread.run_sync(self.code_store.index):
                await trio.to_thread.run_sync(self.code_store.delete, name)  # the others drop their copies
                if name not in self.registry:
                    return  # shared, never run here
        await self._remove_here(name)

    async def _remove_here(self, name: str) -> None:
        async with self._lock_for(name):
            function = self.registry.remove(name)
            self.pool.drop(name)
            self.logs.forget(name)
            self.keys.forget(name)
            self.secrets.forget(name)
            self.changes.announce()
            self.registry.retire(function.directory)
        self.log(f"removed {name!r}")

    # -- peers: the processes and workers /stats, /logs and /billing answer for

    def join_peers(self, url: str) -> None:
        """Be asked at ``url`` by the other processes of this worker (sharing
        its data dir) and, with a code store, by every worker of the cluster."""
        self.peers = peer_registry(self.settings.data_dir, self.code_store)
        # Processes of one worker share its ledger: they are one billing group.
        self.peer = Peer(self.id, f"{socket.gethostname()}:{self.settings.data_dir.resolve()}", url)
        self.peers.register(self.peer)

    def leave_peers(self) -> None:
        if self.peers is not None and self.peer is not None:
            with contextlib.suppress(ServiceUnavailable, OSError):
                self.peers.withdraw(self.peer.process)

    # -- following the shared code store ----------------------------------

    async def catch_up(self) -> None:
        """Drop the copies here whose version the cluster replaced or removed
        (while this worker was down, or disconnected): before serving, and
        whenever the subscription to the code store's changes starts again."""
        if self.code_store is None:
            return
        index = await trio.to_thread.run_sync(self.code_store.index)
        for function in list(self.registry):
            if index.get(function.name) != function.version:
                await self._drop_copy(function.name, index.get(function.name))

    async def follow_code_store(self) -> None:
        """Drop copies other workers replace or remove, forever (see catch_up)."""
        if self.code_store is None:
            return
        store = self.code_store
        changes_in, changes = trio.open_memory_channel[str](1024)
        token = trio.lowlevel.current_trio_token()
        stopping = threading.Event()

        def announced(name: str) -> None:
            trio.from_thread.run_sync(changes_in.send_nowait, name, trio_token=token)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._drop_stale, store, changes)
            try:
                while True:
                    try:  # (listen announces SUBSCRIBED first: catching up then misses nothing)
                        await trio.to_thread.run_sync(store.listen, announced, stopping.is_set,
                                                      abandon_on_cancel=True)
                    except ServiceUnavailable as exc:
                        self.log(f"{exc}; retrying in 1 s (the copies here keep serving)")
                        await trio.sleep(1)
            finally:
                stopping.set()

    async def _drop_stale(self, store: CodeStore, changes: trio.MemoryReceiveChannel[str]) -> None:
        async for name in changes:
            if name == SUBSCRIBED:
                with contextlib.suppress(ServiceUnavailable):
                    await self.catch_up()
                continue
            if name == ACCESS_CHANGED:  # invoke keys, grants or secrets changed through some worker
                with contextlib.suppress(ServiceUnavailable):
                    await trio.to_thread.run_sync(self._reload_access)
                continue
            with contextlib.suppress(FunctionNotFound):
                local = self.registry.get(name)
                index = await trio.to_thread.run_sync(store.index)
                if index.get(name) != local.version:
                    await self._drop_copy(name, index.get(name))

    async def _drop_copy(self, name: str, shared_version: str | None) -> None:
        self.log(f"dropping the copy of {name!r} here: the cluster has "
                 f"{'version ' + shared_version if shared_version else 'removed it'}")
        with contextlib.suppress(FunctionNotFound):
            await self._remove_here(name)

    # -- inspecting -------------------------------------------------------

    async def describe(self, name: str) -> dict[str, Any]:
        return (await self.function(name)).describe()

    async def list_functions(self) -> list[dict[str, Any]]:
        """The functions here; with a code store, also those shared but not
        yet run here (name and version only)."""
        functions = {function.name: function.describe() for function in self.registry}
        if self.code_store is not None:
            for name, version in (await trio.to_thread.run_sync(self.code_store.index)).items():
                functions.setdefault(name, {"name": name, "version": version, "built_here": False})
        return [functions[name] for name in sorted(functions)]

    async def spec(self, name: str) -> FunctionSpec:
        """What the deployed function's manifests say (for checks before a call: methods, keys)."""
        return (await self.function(name)).spec

    def read_logs(self, name: str, since: int, request_id: str | None, limit: int) -> list[dict[str, Any]]:
        self.registry.get(name)  # 404 for unknown functions
        return self.logs.read(name, since, request_id, limit)

    # -- billing -----------------------------------------------------------

    def _ledger(self) -> Ledger:
        if self.ledger is None:
            raise NotFound("billing is off on this worker (billing = false)")
        return self.ledger

    async def billing(self, function: str | None, since: float | None, until: float | None,
                      group: str) -> list[dict[str, Any]]:
        """This worker's ledger summed per ``group`` bucket (its processes share it)."""
        return await self._ledger().aggregate(function, since, until, group)

    async def explain(self, request_id: str) -> dict[str, Any] | None:
        """One invocation's bill, line by line, or None if this worker did not bill it."""
        record = await self._ledger().find(request_id)
        if record is None:
            return None
        usage = Usage(record["request_id"], record["function"], record["ts"], record["status"], bool(record["cold"]),
                      record["queue_us"], record["restore_us"], record["run_us"], record["cpu_us"],
                      record["memory_mb"], record["peak_memory_bytes"], record["fuel"], record["bytes_in"],
                      record["bytes_out"])
        nested = [{"item": "nested calls", "cost_pusd": record["nested_cost_pusd"],
                   "formula": f"{record['nested_calls']} call(s) made with wasmlambda_guest.invoke/map"}]
        return {
            **record,
            "outcome": _OUTCOMES.get(record["status"], "ok" if record["status"] < 400 else "error"),
            "cold": usage.cold,
            "phases_us": {"queue": usage.queue_us, "restore": usage.restore_us, "run": usage.run_us,
                          "cpu": usage.cpu_us, "billed": usage.billed_us},
            "price_lines": self.prices.explain(usage) + (nested if record["nested_calls"] else []),
            "cost": dollars(record["cost_pusd"]),
            "rounding": {"1ms": dollars(record["cost_1ms_pusd"]), "100ms": dollars(record["cost_100ms_pusd"])},
        }

    # -- access: invoke keys and shared namespaces ------------------------

    async def check_invoke_key(self, name: str, presented: str) -> bool:
        if self.keys.check(name, presented):
            return True
        if self.code_store is None:
            return False
        # Created through another worker a moment ago (its announcement may not
        # have arrived yet)?  Ask the cluster's copy before refusing.
        await trio.to_thread.run_sync(self.keys.reload)
        return self.keys.check(name, presented)

    async def _check_deployed(self, name: str) -> None:
        """FunctionNotFound unless ``name`` is deployed here or (with a code store) in the cluster."""
        if name in self.registry:
            return
        if self.code_store is None or name not in await trio.to_thread.run_sync(self.code_store.index):
            raise FunctionNotFound(f"no function named {name!r} is deployed")

    async def list_invoke_keys(self, name: str) -> list[dict[str, Any]]:
        await self._check_deployed(name)
        return self.keys.list(name)

    async def create_invoke_key(self, name: str) -> dict[str, Any]:
        await self._check_deployed(name)
        key = self.keys.create(name)
        self.changes.announce()
        return key

    def revoke_invoke_key(self, name: str, key_id: str) -> None:
        self.keys.revoke(name, key_id)
        self.changes.announce()

    async def list_secrets(self, name: str) -> list[str]:
        """The names of a function's secrets (values are never read back)."""
        await self._check_deployed(name)
        return self.secrets.names(name)

    async def set_secret(self, name: str, key: str, value: bytes) -> None:
        await self._check_deployed(name)
        self.secrets.set(name, key, check_secret(key, value))
        self._secrets_changed(name)

    def remove_secret(self, name: str, key: str) -> None:
        self.secrets.remove(name, key)
        self._secrets_changed(name)

    def _secrets_changed(self, name: str) -> None:
        self.pool.drop(name)  # the next call starts an instance with the new values
        self.changes.announce()

    def list_grants(self) -> dict[str, list[str]]:
        return self.grants.list()

    def grant(self, namespace: str, function: str) -> None:
        self.grants.grant(namespace, function)
        self.changes.announce()

    def revoke_grant(self, namespace: str, function: str) -> None:
        self.grants.revoke(namespace, function)
        self.changes.announce()

    def status(self, with_tenants: bool) -> dict[str, Any]:
        """Who answers (for health checks and for telling processes apart)."""
        status: dict[str, Any] = {"runtime": self.runtime.base_id, "worker": self.id, "pid": os.getpid()}
        if with_tenants:
            status["functions"] = len(self.registry)
        return status

    def stats_json(self, per_function: bool = True) -> dict[str, Any]:
        metrics = self.metrics.to_json()
        if not per_function:
            del metrics["functions"]
        else:
            for function in self.registry:
                if function.name in metrics["functions"]:
                    metrics["functions"][function.name]["runs_inline"] = function.calls.inline
        return {
            **metrics,
            # Calls run on the event loop's thread, and those that had to move (kernel/_inline.py).
            "inline": {"calls": self.inline_calls, "moved": self.moved_calls},
            "deployed": len(self.registry),
            # OpenLambda's name: distributions new to this worker's package cache.
            "pull-package.cnt": self.packages.pulled,
            "packages": self.packages.stats(),
            "pool": {"idle_instances": len(self.pool), "idle_bytes": self.pool.idle_bytes,
                     "high_water": self.pool.high_water,
                     "busy": self.pool.busy, "evictions": self.pool.evictions},
            "queue": {"running": self.scheduler.running, "waiting": self.scheduler.waiting,
                      "busy_threads": self.scheduler.busy_threads},
        }

    async def run_janitor(self) -> None:
        """Evict idle instances past their timeout and sweep retired versions (and the
        package files only they used), forever."""
        swept = trio.current_time()
        while True:
            await trio.sleep(min(5.0, self.settings.idle_timeout_s / 4))
            self.pool.evict_idle()
            if trio.current_time() - swept > 60:
                swept = trio.current_time()
                self.registry.sweep()
                await trio.to_thread.run_sync(self.packages.sweep)  # after the versions that linked them

    def gauges(self) -> dict[str, tuple[str, str, float]]:
        gauges: dict[str, tuple[str, str, float]] = {
            "wasmlambda_functions_deployed": ("gauge", "Deployed functions.", len(self.registry)),
            "wasmlambda_pool_idle_instances": ("gauge", "Warm instances waiting for a call.", len(self.pool)),
            "wasmlambda_pool_busy_instances": ("gauge", "Instances running a call.", self.pool.busy),
            "wasmlambda_pool_idle_memory_bytes": ("gauge", "Linear memory held by idle instances.",
                                                  self.pool.idle_bytes),
            "wasmlambda_pool_evictions_total": ("counter", "Warm instances evicted.", self.pool.evictions),
            "wasmlambda_queue_waiting": ("gauge", "Calls waiting for a sandbox thread.", self.scheduler.waiting),
        }
        if self.ledger is not None:
            gauges["wasmlambda_ledger_write_failures_total"] = (
                "counter", "Ledger batches the database refused (kept and retried).", self.ledger.write_failures)
            gauges["wasmlambda_ledger_pending_rows"] = (
                "gauge", "Ledger rows waiting to be written.", self.ledger.pending)
        return gauges

    def close(self) -> None:
        self.leave_peers()
        self.scheduler.close()
        self.pool.close()
        self.services.close()
        if self.ledger is not None:
            self.ledger.close()
        if self.code_store is not None:
            self.code_store.close()
        self.changes.close()
        if self._owns_runtime:
            self.runtime.close()

