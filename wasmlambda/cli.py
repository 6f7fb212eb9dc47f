"""The ``wasmlambda`` command.

``serve`` runs a worker and ``runtime`` builds or inspects the guest
runtime (here); the commands that talk to a worker over HTTP live in
``_remote``.  Every failure is one ``error: ...`` line and a non-zero exit
code (2 for bad settings).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import trio

from . import __version__, _admin_token, _guest_runtime
from ._cluster import add_cluster_commands
from ._folders import check_function_folder
from ._remote import add_remote_commands
from .config import Settings, load_settings
from .errors import ConfigError, DeployError, ServiceUnavailable, WasmLambdaError

_log_name = "wasmlambda"


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {_log_name}: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        result: int = args.run(args)
        return result
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except WasmLambdaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wasmlambda", description="Serverless Python in WebAssembly sandboxes.")
    parser.add_argument("--version", action="version", version=f"wasmlambda {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve = commands.add_parser("serve", help="run a worker", description="Run a worker serving HTTP.")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080; 0 picks a free one)")
    serve.add_argument("--data-dir", type=Path, help="where deployed functions are stored")
    serve.add_argument("--http", choices=["fast", "h11"], help="HTTP parser: fast (Cython, default) or h11")
    serve.add_argument("--state", help="key-value state: sqlite (default, in the data dir) or redis://HOST:PORT/DB")
    serve.add_argument("--default-timeout-ms", type=int, help="timeout of functions that set none (30000)")
    serve.add_argument("--default-memory-mb", type=int, help="memory of functions that set none (128)")
    serve.add_argument("--admin-token", help="the control plane's bearer token (default: $WASMLAMBDA_ADMIN_TOKEN, "
                       "else DATA_DIR/admin-token, created at first start)")
    serve.add_argument("--processes", type=int, help="worker processes serving the port (default 1; 0: one per core)")
    serve.add_argument("--worker-id", help="names this worker in X-WasmLambda-Worker and /status (default: host name)")
    serve.add_argument("--code-store", help="share deployed code with other workers: redis://HOST:PORT/DB")
    serve.add_argument("--config", type=Path, help="a TOML settings file")
    # How the processes of `serve --processes N` get the shared port (set by the supervisor).
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--deploy", type=Path, nargs="*", default=[], metavar="DIR",
                       help="function folders to deploy at startup (named after the folder)")
    serve.set_defaults(run=_serve)

    runtime = commands.add_parser("runtime", help="build or inspect the guest runtime")
    runtime_commands = runtime.add_subparsers(title="commands", metavar="COMMAND", required=True)
    build = runtime_commands.add_parser("build", help="build the CPython-for-WASI runtime (cached)")
    build.add_argument("--force", action="store_true", help="rebuild even if the cached one is current")
    build.set_defaults(run=_runtime_build)
    info = runtime_commands.add_parser("info", help="show where the runtime is and whether it is built")
    info.set_defaults(run=_runtime_info)
    pack = runtime_commands.add_parser("pack", help="package the built runtime as a py3-none-any wheel",
                                       description="Write wasmlambda_runtime_python-<version>+<hash>-py3-none-any.whl"
                                                   " (the built runtime, for any OS) into a folder.")
    pack.add_argument("-o", "--output", type=Path, default=Path("dist"), help="the folder (default: dist)")
    pack.set_defaults(run=_runtime_pack)
    add_remote_commands(commands)
    add_cluster_commands(commands)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {name: getattr(args, name, None)
                 for name in ("host", "port", "http", "state", "data_dir", "default_timeout_ms", "default_memory_mb",
                              "admin_token", "processes", "worker_id", "code_store")}
    return load_settings(getattr(args, "config", None), overrides=overrides)


def _serve(args: argparse.Namespace) -> int:
    from .sandbox import RuntimeImage

    settings = _settings(args)
    if settings.worker_id:  # several workers (or processes) log to one terminal: say which one speaks
        global _log_name
        _log_name = f"wasmlambda[{settings.worker_id}]"
    for directory in args.deploy:
        check_function_folder(directory)
    image = RuntimeImage(_guest_runtime.locate(settings.cache_dir))
    from . import _supervisor

    is_child = args.reuse_port or args.listen_fd is not None
    if not is_child and _supervisor.process_count(settings) > 1:
        if not settings.admin_token:  # made once here, not raced for by the children
            settings = dataclasses.replace(settings, admin_token=_admin_token.load_or_create(settings.data_dir))
            log(f"admin token in {settings.data_dir / _admin_token.TOKEN_FILE} (the CLI on this machine reads it)")
        return _supervisor.supervise(settings, args.deploy, log)
    trio.run(_serve_async, settings, image, args.deploy, args.reuse_port, args.listen_fd)
    return 0


async def _serve_async(settings: Settings, image: Any, deploy_dirs: list[Path],
                       reuse_port: bool = False, listen_fd: int | None = None) -> None:
    from guest_sdk import BuildError, build_bytes

    from .http import Api, ServerLimits, bound_address, open_listeners, serve
    from .kernel import Worker

    listeners = await open_listeners(settings.host, settings.port, reuse_port=reuse_port, inherited_fd=listen_fd)
    # Processes sharing a port, and workers sharing a code store, answer for
    # each other (/stats, /logs, /billing): each also listens on a port of its own.
    own_listeners = []
    if reuse_port or listen_fd is not None or settings.code_store:
        own_listeners = await open_listeners(settings.host, 0)
    admin_token = settings.admin_token
    if not admin_token:
        admin_token = _admin_token.load_or_create(settings.data_dir)
        log(f"admin token in {settings.data_dir / _admin_token.TOKEN_FILE} (the CLI on this machine reads it)")
    worker = Worker.open(settings, image, log)
    try:
        if own_listeners:
            reachable = settings.host if settings.host not in ("0.0.0.0", "::", "") else socket.gethostname()
            worker.join_peers(f"http://{reachable}:{bound_address(own_listeners)[1]}")
        for directory in deploy_dirs:
            try:
                package = build_bytes(directory, progress=log, check=False)
                await worker.deploy(directory.resolve().name, package)
            except (DeployError, BuildError) as exc:
                raise DeployError(f"--deploy {directory}: {exc}") from None
        try:
            await worker.catch_up()  # never serve a version the cluster replaced while this worker was down
        except ServiceUnavailable as exc:
            log(f"{exc}: serving the copies here until it is back")
        log(f"runtime {worker.runtime.base_id}, {len(worker.registry)} function(s), data in {settings.data_dir}")
        host, port = bound_address(listeners)
        # Signals are caught before "listening" is printed: a supervisor that
        # stops the worker right after that line still gets a clean stop.
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            print(f"wasmlambda listening on http://{host}:{port}", flush=True)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(worker.run_janitor)
                nursery.start_soon(worker.follow_code_store)
                if worker.ledger is not None:
                    nursery.start_soon(worker.ledger.run)
                nursery.start_soon(_cancel_on_signal, signals, nursery.cancel_scope)
                limits = ServerLimits(settings.keepalive_timeout_s, settings.request_timeout_s,
                                      settings.max_connections, settings.max_buffered_request_mb << 20)
                nursery.start_soon(serve, Api(worker, admin_token), listeners + own_listeners, settings.http, limits)
    finally:
        worker.close()
    log("stopped")


async def _cancel_on_signal(signals: AsyncIterator[int], scope: trio.CancelScope) -> None:
    """SIGTERM and Ctrl-C both stop the worker cleanly (no traceback)."""
    async for received in signals:
        log(f"{signal.Signals(received).name}: shutting down")
        scope.cancel()
        return


def _runtime_build(args: argparse.Namespace) -> int:
    from .sandbox import Runtime, RuntimeImage

    settings = _settings(args)
    script = _guest_runtime.build_script()
    try:
        directory = script.build(settings.cache_dir, force=args.force)
    except script.BuildError as exc:
        raise ConfigError(str(exc)) from None
    # Compile once now (cached) and prove the image boots.
    Runtime(RuntimeImage(directory), settings.cache_dir, max_instances=1, max_memory_mb=64).close()
    print("runtime check passed: the image instantiates and its memory snapshot loads")
    return 0


def _runtime_pack(args: argparse.Namespace) -> int:
    from . import _runtime_wheel

    settings = _settings(args)
    script = _guest_runtime.build_script()
    if not script.is_built(settings.cache_dir):
        raise ConfigError("the runtime is not built here: run `wasmlambda runtime build` first")
    log(f"packing runtime {script.input_key()} ...")
    wheel = _runtime_wheel.pack(script.runtime_dir(settings.cache_dir), script.input_key(), args.output)
    print(f"{wheel} ({wheel.stat().st_size >> 20} MB)")
    return 0


def _runtime_info(args: argparse.Namespace) -> int:
    from . import _fastpath, _runtime_wheel

    settings = _settings(args)
    info: dict[str, Any] = {}
    if _guest_runtime.BUILD_SCRIPT.exists():  # a source checkout: the runtime it builds
        script = _guest_runtime.build_script()
        directory = script.runtime_dir(settings.cache_dir)
        info.update({"key": script.input_key(), "directory": str(directory),
                     "built": script.is_built(settings.cache_dir)})
        if info["built"]:
            info.update(json.loads((directory / "build-info.json").read_text()))
    wheel = _runtime_wheel.installed()
    info["wheel"] = {"directory": str(wheel[0]), "key": wheel[1]} if wheel else None
    try:
        info["in_use"] = str(_guest_runtime.locate(settings.cache_dir))
    except WasmLambdaError as exc:
        info["in_use"] = None
        info["missing"] = str(exc)
    # Which hot paths are compiled here (C extensions) and which use their pure-Python twins.
    info["extensions"] = {name: "compiled" if _fastpath.active(name) else "pure Python"
                          for name in _fastpath.NAMES}
    print(json.dumps(info, indent=2))
    return 0
