"""``wasmlambda cluster up|config``: workers behind HAProxy, sharing Redis.

Theory of operation: a cluster is three kinds of process, all existing
engines but the workers.  Redis holds what workers share (deployed code,
key-value state); each worker keeps its own data dir (its copies of code
and snapshots, its billing ledger); HAProxy picks the worker for each
request.  ``/run/<fn>`` is routed by a consistent hash of the function's
name with bounded load (a function's calls go to the worker that has its
code and warm instances, unless that worker already has more than its
share of the connections), so code and instances stay where they are used
instead of on every worker.  Control-plane routes go to any healthy worker:
each of them writes through to Redis.  Health checks ask ``/status``; a
request is retried on another worker only when it could not be sent at all
(the connection was refused), never once a byte of it reached a worker.

``cluster up`` is for development and tests: everything on loopback, in the
foreground, stopped together by Ctrl-C or SIGTERM; a worker that dies is
started again on its port.  ``cluster config`` prints the balancer's
configuration (HAProxy, or nginx) for workers run by hand on several
machines.  docs/cluster.md says what runs where.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from . import _admin_token
from ._children import listening_port
from ._folders import check_function_folder
from .errors import ConfigError

__all__ = ["add_cluster_commands", "haproxy_config", "nginx_config"]

_READY_TIMEOUT_S = 60.0
_STOP_GRACE_S = 10.0
# A function's worker may take this percentage of the average load before
# its calls spill over to the next worker on the ring (HAProxy's bounded load).
HASH_BALANCE_FACTOR = 150


def add_cluster_commands(commands: Any) -> None:
    cluster = commands.add_parser("cluster", help="several workers behind HAProxy, sharing Redis",
                                  description="Run or configure several workers as one service.")
    cluster_commands = cluster.add_subparsers(title="commands", metavar="COMMAND", required=True)
    up = cluster_commands.add_parser("up", help="start Redis, N workers and HAProxy on this machine (development)",
                                     description="Start Redis (unless --state), N workers and HAProxy on "
                                                 "loopback; stay in the foreground until Ctrl-C.")
    up.add_argument("--workers", type=int, default=3, help="how many workers (default 3)")
    up.add_argument("--port", type=int, default=8080, help="the balancer's port (default 8080)")
    up.add_argument("--data-dir", type=Path, required=True, help="one data dir per worker is made under it")
    up.add_argument("--state", help="an existing redis://HOST:PORT/DB (default: start redis-server)")
    up.add_argument("--balance", choices=["hash", "roundrobin"], default="hash",
                    help="how /run is routed: consistent hash of the function (default) or round robin")
    up.add_argument("--deploy", type=Path, nargs="*", default=[], metavar="DIR",
                    help="function folders to deploy at startup (through the first worker)")
    up.add_argument("--worker-arg", action="append", default=[], metavar="ARG",
                    help="an extra argument for every worker's `serve` (repeatable)")
    up.set_defaults(run=_up)

    config = cluster_commands.add_parser("config", help="print the balancer config for workers you run yourself",
                                         description="Print an HAProxy (or nginx) config for the given workers.")
    config.add_argument("workers", nargs="+", metavar="HOST:PORT", help="the workers' addresses")
    config.add_argument("--port", type=int, default=8080, help="the balancer's port (default 8080, 1-65535)")
    config.add_argument("--bind", default="0.0.0.0", help="the balancer's address (default 0.0.0.0)")
    config.add_argument("--nginx", action="store_true", help="an nginx config instead (passive health checks only)")
    config.add_argument("--balance", choices=["hash", "roundrobin"], default="hash")
    config.set_defaults(run=_config)


# -- the balancer's configuration -------------------------------------------

Server = tuple[str, str, int]  # (name, host, port)


def haproxy_config(servers: Sequence[Server], bind: str, port: int, balance: str = "hash") -> str:
    """HAProxy 2.6: consistent hash with bounded load for /run, any healthy worker for the rest."""
    if balance == "hash":
        routing = ["    # The function's name: the third field of /run/<fn>/...",
                   "    balance hash path,field(3,/)",
                   "    hash-type consistent",
                   f"    hash-balance-factor {HASH_BALANCE_FACTOR}"]
    else:
        routing = ["    balance roundrobin"]
    checks = ["    option httpchk GET /status", "    http-check expect status 200",
              "    default-server check inter 500ms fall 2 rise 2"]
    lines = ["# Generated by `wasmlambda cluster`; docs/cluster.md explains each choice.",
             "global", "    maxconn 8192", "",
             "defaults",
             "    mode http",
             "    timeout connect 2s",
             "    timeout client 90s",
             "    # The longest call a function may make (15 min) and a margin.",
             "    timeout server 16m",
             "    timeout http-keep-alive 60s",
             "    # Retry only a request that never reached a worker (the connection failed),",
             "    # on another worker: nothing that a worker may have started runs twice.",
             "    retries 2",
             "    retry-on conn-failure",
             "    option redispatch 1",
             "",
             "frontend wasmlambda",
             f"    bind {bind}:{port}",
             "    use_backend functions if { path_beg /run/ }",
             "    default_backend control",
             "",
             "backend functions", *routing, *checks,
             *(f"    server {name} {host}:{server_port}" for name, host, server_port in servers),
             "",
             "backend control", "    balance roundrobin", *checks,
             *(f"    server {name} {host}:{server_port}" for name, host, server_port in servers),
             ""]
    return "\n".join(lines)


def nginx_config(servers: Sequence[Server], bind: str, port: int, balance: str = "hash") -> str:
    """The same routing for nginx; its free version checks health passively only."""
    upstream = ["    hash $wasmlambda_function consistent;"] if balance == "hash" else []
    lines = ["# Generated by `wasmlambda cluster config --nginx`; docs/cluster.md explains each choice.",
             "# nginx (free) has passive health checks only: a worker is skipped after max_fails",
             "# failed requests, not found down by probing /status as HAProxy does.",
             "map $uri $wasmlambda_function {",
             "    ~^/run/(?<name>[^/]+) $name;",
             "    default \"\";",
             "}",
             "upstream wasmlambda_functions {", *upstream,
             *(f"    server {host}:{server_port} max_fails=2 fail_timeout=5s;" for _, host, server_port in servers),
             "}",
             "upstream wasmlambda_control {",
             *(f"    server {host}:{server_port} max_fails=2 fail_timeout=5s;" for _, host, server_port in servers),
             "}",
             "server {",
             f"    listen {bind}:{port};",
             "    client_max_body_size 64m;",
             "    proxy_http_version 1.1;",
             "    proxy_set_header Connection \"\";",
             "    # Retry only when the connection could not be made (nothing was sent).",
             "    proxy_next_upstream error;",
             "    proxy_read_timeout 16m;",
             "    location /run/ { proxy_pass http://wasmlambda_functions; }",
             "    location / { proxy_pass http://wasmlambda_control; }",
             "}",
             ""]
    return "\n".join(lines)


def _config(args: argparse.Namespace) -> int:
    if not 0 < args.port <= 65535:
        raise ConfigError(f"--port must be 1-65535, got {args.port}")
    servers = []
    for index, address in enumerate(args.workers, start=1):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"{address!r}: give each worker as HOST:PORT")
        servers.append((f"w{index}", host, int(port)))
    render = nginx_config if args.nginx else haproxy_config
    print(render(servers, args.bind, args.port, args.balance), end="")
    return 0


# -- cluster up -------------------------------------------------------------------


def _up(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    if not 0 < args.port <= 65535:
        raise ConfigError(f"--port must be 1-65535 (HAProxy needs a fixed port), got {args.port}")
    for tool in ("haproxy", *(() if args.state else ("redis-server",))):
        if _which(tool) is None:
            raise ConfigError(f"{tool} is not installed (README's `make setup` installs it: apt-get install {tool})")
    for directory in args.deploy:
        check_function_folder(directory)
    data_dir: Path = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    cluster = _Cluster(data_dir, args)
    return 0 if trio.run(cluster.run) else 1


def _which(tool: str) -> str | None:
    import shutil

    return shutil.which(tool) or next((str(path) for directory in ("/usr/sbin", "/sbin")
                                       if (path := Path(directory) / tool).is_file()), None)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def log(message: str) -> None:
    print(f"wasmlambda cluster: {message}", file=sys.stderr, flush=True)


class _Cluster:
    def __init__(self, data_dir: Path, args: argparse.Namespace) -> None:
        self.data_dir = data_dir
        self.args = args
        self.token = _admin_token.load_or_create(data_dir)
        self.redis_url: str = args.state or ""
        self.processes: dict[str, trio.Process] = {}  # "redis", "balancer", "w1", ...
        self.worker_ports: dict[str, int] = {}
        self.stopping = False
        self.failed = False
        self._scope = trio.CancelScope()  # the supervision's, set by run

    async def run(self) -> bool:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                nursery.start_soon(self._stop_on_signal, signals)
                try:
                    await self._start(nursery)
                except ConfigError as exc:
                    log(f"error: {exc}")
                    self.failed = True
                    await self._stop_all()
                    return False
                print(f"listening on http://127.0.0.1:{self.args.port}", flush=True)
        return not self.failed

    async def _start(self, nursery: trio.Nursery) -> None:
        if not self.redis_url:
            port = _free_port()
            (self.data_dir / "redis").mkdir(exist_ok=True)
            await self._spawn(nursery, "redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                                 "--save", "", "--appendonly", "no",
                                                 "--dir", str(self.data_dir / "redis")], worker=False)
            await _wait_for_port(port, "redis-server")
            self.redis_url = f"redis://127.0.0.1:{port}/0"
            log(f"redis-server on {self.redis_url}")
        names = [f"w{index}" for index in range(1, self.args.workers + 1)]
        failures: list[ConfigError] = []
        async with trio.open_nursery() as starting:  # the workers start side by side
            for name in names:
                starting.start_soon(self._start_worker, nursery, name, failures)
        if failures:
            raise failures[0]
        servers = [(name, "127.0.0.1", self.worker_ports[name]) for name in names]
        config = self.data_dir / "haproxy.cfg"
        config.write_text(haproxy_config(servers, "127.0.0.1", self.args.port, self.args.balance))
        await self._spawn(nursery, "balancer", [_which("haproxy") or "haproxy", "-db", "-f", str(config)],
                          worker=False)
        await _wait_for_port(self.args.port, "HAProxy")
        self._write_description()
        for directory in self.args.deploy:
            await self._deploy(directory)

    async def _start_worker(self, nursery: trio.Nursery, name: str, failures: list[ConfigError]) -> None:
        try:
            await self._spawn(nursery, name, self._worker_command(name, 0), worker=True)
        except ConfigError as exc:
            failures.append(exc)

    def _worker_command(self, name: str, port: int) -> list[str]:
        return [sys.executable, "-m", "wasmlambda", "serve", "--port", str(port), "--worker-id", name,
                "--data-dir", str(self.data_dir / name), "--state", self.redis_url, "--code-store", self.redis_url,
                *self.args.worker_arg]

    async def _spawn(self, nursery: trio.Nursery, name: str, command: list[str], worker: bool) -> None:
        """Start a process and watch it from the nursery; returns once it is ready
        (a worker: once it says it listens).  Only workers are restarted."""
        ready = trio.Event()
        nursery.start_soon(self._watch, name, command, worker, ready)
        with trio.move_on_after(_READY_TIMEOUT_S):
            await ready.wait()
        if not ready.is_set():
            raise ConfigError(f"{name} was not ready within {_READY_TIMEOUT_S:g} s")
        if self.processes[name].returncode is not None:
            raise ConfigError(f"{name} exited during startup (its messages are above)")

    async def _watch(self, name: str, command: list[str], worker: bool, ready: trio.Event) -> None:
        # Several workers on one machine's cores: their sandbox threads sleep
        # rather than busy-wait (as `serve --processes N` does), unless told otherwise.
        environment = {"WASMLAMBDA_SPIN_US": "0", **os.environ, "WASMLAMBDA_ADMIN_TOKEN": self.token}
        while True:
            process = await trio.lowlevel.open_process(command, env=environment,
                                                       stdout=subprocess.PIPE if worker else subprocess.DEVNULL)
            self.processes[name] = process  # (from now on, stopping the cluster stops it)
            if worker:
                assert process.stdout is not None
                port = await listening_port(process.stdout)
                if port is not None and name not in self.worker_ports:
                    self.worker_ports[name] = port
                    command = self._worker_command(name, port)  # a restart takes the same port
            if ready.is_set() and "balancer" in self.processes:  # a restart: cluster.json names it
                self._write_description()
            ready.set()
            code = await process.wait()
            if self.stopping or name not in self.worker_ports:  # (a worker that never came up: see _spawn)
                return
            if not worker:
                log(f"{name} (pid {process.pid}) exited with {code}: stopping the cluster")
                self.failed = True
                await self._stop_all()
                return
            log(f"{name} (pid {process.pid}) exited with {code}; starting it again on its port")
            await trio.sleep(0.5)

    async def _deploy(self, directory: Path) -> None:
        from guest_sdk import BuildError, build_bytes

        from ._client import ClientError, WorkerClient

        try:
            package = build_bytes(directory, progress=log, check=False)
            client = WorkerClient(f"http://127.0.0.1:{self.args.port}", token=self.token)
            await trio.to_thread.run_sync(client.checked, "POST", f"/registry/{directory.resolve().name}", package)
        except (BuildError, ClientError) as exc:
            raise ConfigError(f"--deploy {directory}: {exc}") from None

    def _write_description(self) -> None:
        def entry(name: str) -> dict[str, Any]:
            return {"id": name, "port": self.worker_ports[name], "pid": self.processes[name].pid}

        redis = self.processes.get("redis")
        description = {
            "balancer": {"port": self.args.port, "pid": self.processes["balancer"].pid},
            "redis": {"url": self.redis_url, "pid": redis.pid if redis is not None else None},
            "workers": [entry(name) for name in sorted(self.worker_ports, key=lambda name: int(name[1:]))],
        }
        path = self.data_dir / "cluster.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(description, indent=2) + "\n")
        os.replace(temporary, path)

    async def _stop_on_signal(self, signals: Any) -> None:
        async for received in signals:
            log(f"{signal.Signals(received).name}: stopping")
            await self._stop_all()
            return

    async def _stop_all(self) -> None:
        """Balancer first (no new requests), then the workers, then Redis."""
        self.stopping = True
        order = ["balancer", *(name for name in self.processes if name.startswith("w")), "redis"]
        with trio.move_on_after(_STOP_GRACE_S):
            for name in order:
                process = self.processes.get(name)
                if process is not None and process.returncode is None:
                    process.terminate()
                    await process.wait()
        for process in self.processes.values():
            if process.returncode is None:
                process.kill()
        self._scope.cancel()  # nothing left to watch


async def _wait_for_port(port: int, what: str) -> None:
    """Poll until something accepts connections on the loopback port."""
    with trio.move_on_after(_READY_TIMEOUT_S):
        while True:
            with contextlib.suppress(OSError):
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                await stream.aclose()
                return
            await trio.sleep(0.05)
    raise ConfigError(f"{what} did not accept connections on port {port} within {_READY_TIMEOUT_S:g} s")
