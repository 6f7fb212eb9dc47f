"""``wasmlambda serve --processes N``: one port, N worker processes, supervised.

Theory of operation: one worker process is bound by one interpreter lock,
so using every core takes several processes.  The supervisor (this module,
in the process the user started) resolves the settings once and starts N
children, each an ordinary ``wasmlambda serve`` that receives the resolved
settings through ``WASMLAMBDA_*`` variables and a worker id ``<base>.<i>``.

* The port: on Linux every child binds it with SO_REUSEPORT and the kernel
  spreads new connections over them; the supervisor holds a bound,
  non-listening socket of its own so the port stays ours while a child is
  replaced.  Elsewhere on POSIX the supervisor opens the listening socket
  and the children inherit it.  Windows has neither: refused, with advice.
* The data dir is shared: code, snapshots, invoke keys, namespace grants
  and the billing ledger (SQLite, which several writers may use).  A child
  that changes it tells its siblings through ``kernel/_changes.py``.
* A child that dies is started again (after a short back-off if it keeps
  dying), the others serve meanwhile; SIGTERM or Ctrl-C stops them all.
* The first child deploys ``--deploy`` folders before the others start, so
  they load the functions from the data dir instead of building them N times.

See docs/architecture.md, "Processes and clusters".
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path

import trio

from . import _platform
from ._children import listening_port
from .config import Settings
from .errors import ConfigError
from .http import shared_port_socket

__all__ = ["process_count", "supervise"]

# A child that dies sooner than this after starting is restarted only after a pause.
_QUICK_DEATH_S = 5.0
_STOP_GRACE_S = 10.0
_DEFAULT_SPIN_US = next(f.default for f in dataclasses.fields(Settings) if f.name == "spin_us")


def process_count(settings: Settings) -> int:
    return settings.processes or os.cpu_count() or 1


def supervise(settings: Settings, deploy_dirs: list[Path], log: Callable[[str], None]) -> int:
    count = process_count(settings)
    if not _platform.REUSE_PORT and not _platform.INHERIT_SOCKETS:
        raise ConfigError("--processes above 1 is not supported on this OS (no SO_REUSEPORT or socket "
                          "inheritance): run one worker per port behind a balancer (wasmlambda cluster config)")
    reuse_port = _platform.REUSE_PORT
    try:
        if reuse_port:
            holder = shared_port_socket(settings.host, settings.port, listen=False)
        else:
            holder = socket.create_server((settings.host, settings.port), backlog=1024)
            holder.set_inheritable(True)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}") from None
    with holder:
        host, port = holder.getsockname()[:2]
        base_id = settings.worker_id or socket.gethostname()
        child_settings = dataclasses.replace(settings, port=port, processes=1)
        if settings.spin_us == _DEFAULT_SPIN_US:
            # Busy-waiting threads of one process would take the cores its
            # siblings need (measured in bench/RESULTS.md): they sleep instead.
            child_settings = dataclasses.replace(child_settings, spin_us=0)
        environment = _child_environment(child_settings)
        extra = ["--reuse-port"] if reuse_port else ["--listen-fd", str(holder.fileno())]
        children = [_Child(f"{base_id}.{index}", environment, extra, holder.fileno(), log)
                    for index in range(count)]
        children[0].deploy_dirs = deploy_dirs
        succeeded = trio.run(_supervise, children, f"http://{host}:{port}", log)
    return 0 if succeeded else 1


def _child_environment(settings: Settings) -> dict[str, str]:
    """The resolved settings as WASMLAMBDA_* variables (they override any config file)."""
    environment = dict(os.environ)
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if field.name == "worker_id":
            continue
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        environment[f"WASMLAMBDA_{field.name.upper()}"] = text
    return environment


class _Child:
    def __init__(self, worker_id: str, environment: dict[str, str], extra: list[str], inherited_fd: int,
                 log: Callable[[str], None]) -> None:
        self.worker_id = worker_id
        self.environment = {**environment, "WASMLAMBDA_WORKER_ID": worker_id}
        self.extra = extra
        self.inherited_fd = inherited_fd
        self.log = log
        self.deploy_dirs: list[Path] = []
        self.process: trio.Process | None = None
        self.failed = False

    async def run(self, ready: trio.Event, stopping: trio.Event, stop_all: Callable[[], Awaitable[None]]) -> None:
        """Run the child, and run it again whenever it dies, until stopping; if its
        first start fails, ``stop_all``."""
        deploy = [str(directory) for directory in self.deploy_dirs]
        while not stopping.is_set():
            command = [sys.executable, "-m", "wasmlambda", "serve", *self.extra]
            if deploy:
                command += ["--deploy", *deploy]
            started = time.monotonic()
            self.process = process = await trio.lowlevel.open_process(
                command, env=self.environment, stdout=subprocess.PIPE, pass_fds=(self.inherited_fd,))
            assert process.stdout is not None
            if await listening_port(process.stdout) is not None:
                deploy = []  # deployed now: the data dir has them for every later start
                ready.set()
            code = await process.wait()
            if stopping.is_set():
                return
            if not ready.is_set():  # never came up (bad settings, a --deploy that fails): give up
                self.log(f"process {self.worker_id} exited with {_describe_exit(code)} before serving; stopping")
                self.failed = True
                await stop_all()
                return
            self.log(f"process {self.worker_id} (pid {process.pid}) exited with {_describe_exit(code)}; "
                     "starting another")
            if time.monotonic() - started < _QUICK_DEATH_S:
                await trio.sleep(1.0)

    def terminate(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()


async def _supervise(children: list[_Child], url: str, log: Callable[[str], None]) -> bool:
    """Start the children one after another, then watch them; False if one never came up."""
    stopping = trio.Event()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            stop_all = partial(_stop_children, children, stopping, nursery.cancel_scope)
            nursery.start_soon(_stop_on_signal, signals, stop_all, log)
            for child in children:  # one at a time: the first deploys, the others find its work on disk
                ready = trio.Event()
                nursery.start_soon(child.run, ready, stopping, stop_all)
                await _first_of(ready, stopping)
                if stopping.is_set():
                    break
            else:
                pids = ", ".join(str(child.process.pid) for child in children if child.process is not None)
                log(f"{len(children)} worker processes (pids {pids})")
                print(f"wasmlambda listening on {url}", flush=True)
    return not any(child.failed for child in children)


async def _first_of(*events: trio.Event) -> None:
    async with trio.open_nursery() as nursery:
        async def wait(event: trio.Event) -> None:
            await event.wait()
            nursery.cancel_scope.cancel()

        for event in events:
            nursery.start_soon(wait, event)


async def _stop_on_signal(signals: AsyncIterator[int], stop_all: Callable[[], Awaitable[None]],
                          log: Callable[[str], None]) -> None:
    async for received in signals:
        log(f"{signal.Signals(received).name}: stopping the worker processes")
        await stop_all()
        return


async def _stop_children(children: list[_Child], stopping: trio.Event, supervision: trio.CancelScope) -> None:
    """Stop every child (SIGTERM, then SIGKILL after a grace period), then the supervision itself."""
    stopping.set()
    for child in children:
        child.terminate()
    with trio.move_on_after(_STOP_GRACE_S):
        for child in children:
            if child.process is not None:
                await child.process.wait()
    for child in children:
        child.kill()
    supervision.cancel()


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"
