"""The CLI commands that talk to a running worker over HTTP (``--url``):
deploy, invoke, ls, rm, logs, status, billing, explain, keys, secrets, namespaces.

Every request carries the admin token, found the way the worker finds it
(``--token``, ``$WASMLAMBDA_ADMIN_TOKEN``, then the data dir's
``admin-token`` file), so on the worker's machine nothing needs set-up."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import _admin_token
from ._client import DEFAULT_URL, ClientError, WorkerClient
from ._money import dollars
from .config import load_settings


def add_remote_commands(commands: Any) -> None:
    def remote(name: str, help_text: str, run: Any, parent: Any = commands) -> argparse.ArgumentParser:
        command: argparse.ArgumentParser = parent.add_parser(name, help=help_text, description=help_text)
        command.add_argument("--url", default=os.environ.get("WASMLAMBDA_URL", DEFAULT_URL),
                             help=f"the worker (default $WASMLAMBDA_URL or {DEFAULT_URL})")
        command.add_argument("--token", help="the admin token (default $WASMLAMBDA_ADMIN_TOKEN, "
                             "else the data dir's admin-token file)")
        command.set_defaults(run=run)
        return command

    deploy = remote("deploy", "build a function folder (or take a built package) and deploy it", _deploy)
    deploy.add_argument("source", type=Path, help="a function folder with f.py, or a .tar.gz package")
    deploy.add_argument("--name", help="the function's name (default: the folder or package name)")
    deploy.add_argument("--pip-args", default="", help="extra pip arguments for vendoring requirements.txt")

    invoke = remote("invoke", "call a function and print its JSON result", _invoke)
    invoke.add_argument("name", help="the function")
    invoke.add_argument("event", nargs="?", default="null", help="the JSON event (default null), or - for stdin")
    invoke.add_argument("--show-cost", action="store_true", help="print how the call ran and what it cost")
    invoke.add_argument("--logs", action="store_true", help="print the call's logs (to stderr)")
    invoke.add_argument("--key", help="an invoke key, for a function deployed with invoke_keys = true")

    remote("ls", "list deployed functions", _ls)
    rm = remote("rm", "remove a deployed function", _rm)
    rm.add_argument("name", help="the function")

    logs = remote("logs", "print a function's recent log lines", _logs)
    logs.add_argument("name", help="the function")
    logs.add_argument("--request", help="only this request id's lines")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C")

    remote("status", "show the worker's status", _status)

    billing = remote("billing", "what calls cost, beside the same calls billed at 1 ms and 100 ms rounding",
                     _billing)
    billing.add_argument("--fn", help="only this function")
    billing.add_argument("--since", help="epoch seconds, ISO 8601, or an age such as 15m, 2h, 7d")
    billing.add_argument("--until", help="same forms as --since")
    billing.add_argument("--group", choices=["fn", "minute", "hour"], default="fn", help="one row per (default fn)")
    explain = remote("explain", "explain one invocation's bill: phases, memory, fuel and price lines", _explain)
    explain.add_argument("request_id", help="the X-Request-Id of the call")

    keys = commands.add_parser("keys", help="invoke keys of functions deployed with invoke_keys = true",
                               description="Create, list and revoke a function's invoke keys.")
    key_commands = keys.add_subparsers(title="commands", metavar="COMMAND", required=True)
    remote("create", "create an invoke key (printed once)", _create_key, key_commands).add_argument("name")
    remote("ls", "list a function's invoke keys (ids only)", _list_keys, key_commands).add_argument("name")
    revoke = remote("rm", "revoke an invoke key", _revoke_key, key_commands)
    revoke.add_argument("name")
    revoke.add_argument("id", help="the key's id (wlk_<id>_...)")

    secrets = commands.add_parser("secrets", help="environment variables a function sees but its package does not hold",
                                  description="Set, list and remove a function's secrets (its os.environ, set "
                                              "after each restore; never in a snapshot, log or answer).")
    secret_commands = secrets.add_subparsers(title="commands", metavar="COMMAND", required=True)
    set_secret = remote("set", "set a secret (the value from the argument, or from stdin with - or none)",
                        _set_secret, secret_commands)
    set_secret.add_argument("name", help="the function")
    set_secret.add_argument("key", help="the variable's name")
    set_secret.add_argument("value", nargs="?", default="-", help="the value, or - (the default) to read stdin")
    remote("ls", "list a function's secrets (names only)", _list_secrets, secret_commands).add_argument("name")
    remove_secret = remote("rm", "remove a secret", _remove_secret, secret_commands)
    remove_secret.add_argument("name", help="the function")
    remove_secret.add_argument("key", help="the variable's name")

    namespaces = commands.add_parser("namespaces", help="grant functions shared key-value namespaces",
                                     description="Shared namespaces (shared:NAME) and the functions granted each.")
    namespace_commands = namespaces.add_subparsers(title="commands", metavar="COMMAND", required=True)
    remote("ls", "list shared namespaces and their functions", _list_grants, namespace_commands)
    for verb, help_text in (("grant", "let a function use shared:NAME"), ("revoke", "take that back")):
        command = remote(verb, help_text, _change_grant, namespace_commands)
        command.set_defaults(granting=verb == "grant")
        command.add_argument("namespace", help="NAME or shared:NAME")
        command.add_argument("function")


def _client(args: argparse.Namespace) -> WorkerClient:
    if args.token:
        return WorkerClient(args.url, token=args.token)
    settings = load_settings()  # WASMLAMBDA_ADMIN_TOKEN (and a config file) land in admin_token
    return WorkerClient(args.url, token=settings.admin_token or _admin_token.read(settings.data_dir))


def _deploy(args: argparse.Namespace) -> int:
    from guest_sdk import BuildError, build_bytes

    source: Path = args.source
    if source.is_dir():
        try:
            package = build_bytes(source, args.pip_args.split(), progress=_progress, check=False)
        except BuildError as exc:
            raise ClientError(str(exc)) from None
        name = args.name or source.resolve().name
    elif source.is_file():
        package = source.read_bytes()
        name = args.name or source.name.removesuffix(".gz").removesuffix(".tar").removesuffix(".tgz")
    else:
        raise ClientError(f"{source}: no such folder or package")
    described = _client(args).checked("POST", f"/registry/{name}", package).json()
    for warning in described.get("warnings", []):
        _progress(f"warning: {warning}")
    limits = described["limits"]
    print(f"deployed {name} (version {described['version']}, timeout {limits['timeout_ms']} ms, "
          f"memory {limits['memory_mb']} MB, {described['isolation']})")
    return 0


def _invoke(args: argparse.Namespace) -> int:
    event = sys.stdin.buffer.read() if args.event == "-" else args.event.encode()
    path = f"/run/{args.name}" + ("?logs=true" if args.logs else "")
    reply = _client(args).request("POST", path, event, token=args.key)
    if args.show_cost:
        facts = [f"{name.removeprefix('x-wasmlambda-')}={value}" for name, value in reply.headers.items()
                 if name.startswith("x-wasmlambda-")]
        _progress(f"request {reply.headers.get('x-request-id', '?')}: " + " ".join(facts))
    if reply.status >= 300:
        error = reply.error()
        if args.logs:
            _print_logs(reply.json()["error"].get("logs", ""))
        elif error.logs:
            print(error.logs, file=sys.stderr, end="")
        raise error
    if args.logs:
        document = reply.json()
        _print_logs(document["logs"])
        print(json.dumps(document["result"], ensure_ascii=False))
    else:
        print(reply.body.decode())
    return 0


def _ls(args: argparse.Namespace) -> int:
    functions = _client(args).checked("GET", "/registry/").json()["functions"]
    if not functions:
        print("no functions deployed")
        return 0
    rows = [("NAME", "VERSION", "ISOLATION", "TIMEOUT_MS", "MEMORY_MB", "DEPLOYED")]
    rows += [(fn["name"], fn["version"], fn["isolation"], str(fn["limits"]["timeout_ms"]),
              str(fn["limits"]["memory_mb"]), fn["deployed_at"]) for fn in functions]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _rm(args: argparse.Namespace) -> int:
    _client(args).checked("DELETE", f"/registry/{args.name}")
    print(f"removed {args.name}")
    return 0


def _logs(args: argparse.Namespace) -> int:
    client = _client(args)
    since = 0
    while True:
        query = f"?since={since}" + (f"&request_id={args.request}" if args.request else "")
        page = client.checked("GET", f"/logs/{args.name}{query}").json()
        for line in page["lines"]:
            stamp = time.strftime("%H:%M:%S", time.localtime(line["time"]))
            print(f"{stamp} {line['request_id']} {line['line']}", flush=True)
        since = page["next"]
        if page["lines"]:
            continue  # pages of up to 1000 lines: there may be more
        if not args.follow:
            return 0
        time.sleep(1)


def _status(args: argparse.Namespace) -> int:
    status = _client(args).checked("GET", "/status").json()
    for key, value in status.items():
        print(f"{key}: {value}")
    return 0


def _billing(args: argparse.Namespace) -> int:
    query = "&".join(f"{key}={quote(str(value))}" for key, value in
                     (("group", args.group), ("fn", args.fn), ("since", args.since), ("until", args.until)) if value)
    rows = _client(args).checked("GET", f"/billing?{query}").json()["rows"]
    if not rows:
        print("no invocations in that range")
        return 0
    table: list[tuple[str, ...]] = [(
        "GROUP" if args.group != "fn" else "FUNCTION", "CALLS", "ERRORS", "BILLED_MS", "COST_USD (1us)",
        "AT_1MS_USD", "AT_100MS_USD", "100MS/ACTUAL", "TIME_PART 100MS/ACTUAL")]
    totals = [0] * 7
    for row in rows:
        bucket = row["bucket"] if args.group == "fn" else time.strftime("%Y-%m-%d %H:%M", time.gmtime(row["bucket"]))
        values = [row["invocations"], row["errors"], row["billed_us"], row["cost_pusd"], row["memory_cost_pusd"],
                  row["cost_1ms_pusd"], row["cost_100ms_pusd"]]
        totals = [total + value for total, value in zip(totals, values, strict=True)]
        table.append(_billing_row(str(bucket), values))
    if len(rows) > 1:
        table.append(_billing_row("TOTAL", totals))
    widths = [max(len(row[column]) for row in table) for column in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.rjust(width) if index else cell.ljust(width)
                        for index, (cell, width) in enumerate(zip(row, widths, strict=True))).rstrip())
    print("costs are exact sums of integer pico-dollars, shown in USD; TIME_PART compares the memory-time\n"
          "charge alone (without the per-request price) at 100 ms rounding against microsecond billing")
    return 0


def _billing_row(label: str, values: list[int]) -> tuple[str, ...]:
    calls, errors, billed_us, cost, time_cost, at_1ms, at_100ms = values
    fixed = cost - time_cost  # per-request (and fuel) charges: the same under any rounding
    ratio = f"{at_100ms / cost:.1f}x" if cost else "-"
    time_ratio = f"{(at_100ms - fixed) / time_cost:.0f}x" if time_cost else "-"
    return (label, str(calls), str(errors), f"{billed_us / 1000:.3f}", dollars(cost), dollars(at_1ms),
            dollars(at_100ms), ratio, time_ratio)


def _explain(args: argparse.Namespace) -> int:
    record = _client(args).checked("GET", f"/billing/{quote(args.request_id)}").json()
    phases = record["phases_us"]
    print(f"request {record['request_id']}: {record['function']}, status {record['status']}, "
          f"{'cold' if record['cold'] else 'warm'} start")
    print(f"  queue {phases['queue']} us, restore {phases['restore']} us, run {phases['run']} us "
          f"-> billed {phases['billed']} us")
    print(f"  memory {record['memory_mb']} MB reserved, peak {record['peak_memory_bytes']:,} bytes; "
          f"fuel {record['fuel']:,}; {record['bytes_in']} bytes in, {record['bytes_out']} out")
    for line in record["price_lines"]:
        print(f"  {line['item']:<12} {line['cost_pusd']:>14,} p$   {line['formula']}")
    print(f"  total {record['cost_pusd']:,} p$ = ${record['cost']} "
          f"(at 1 ms rounding ${record['rounding']['1ms']}, at 100 ms ${record['rounding']['100ms']})")
    return 0


def _create_key(args: argparse.Namespace) -> int:
    created = _client(args).checked("POST", f"/keys/{quote(args.name)}").json()
    _progress(f"invoke key {created['id']} for {args.name} (shown once; send it as Authorization: Bearer KEY)")
    print(created["key"])
    return 0


def _list_keys(args: argparse.Namespace) -> int:
    keys = _client(args).checked("GET", f"/keys/{quote(args.name)}").json()["keys"]
    for key in keys:
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(key["created"]))
        print(f"{key['id']}  created {created}")
    if not keys:
        print(f"{args.name} has no invoke keys")
    return 0


def _revoke_key(args: argparse.Namespace) -> int:
    _client(args).checked("DELETE", f"/keys/{quote(args.name)}/{quote(args.id)}")
    print(f"revoked {args.id}")
    return 0


def _set_secret(args: argparse.Namespace) -> int:
    # (From stdin, a final newline is dropped: `echo secret |` adds one.)
    value = sys.stdin.buffer.read().removesuffix(b"\n") if args.value == "-" else args.value.encode()
    _client(args).checked("PUT", f"/secrets/{quote(args.name)}/{quote(args.key)}", value)
    print(f"set {args.key} for {args.name} (new instances see it; running ones finish with the old value)")
    return 0


def _list_secrets(args: argparse.Namespace) -> int:
    names = _client(args).checked("GET", f"/secrets/{quote(args.name)}").json()["names"]
    print("\n".join(names) if names else f"{args.name} has no secrets")
    return 0


def _remove_secret(args: argparse.Namespace) -> int:
    _client(args).checked("DELETE", f"/secrets/{quote(args.name)}/{quote(args.key)}")
    print(f"removed {args.key} from {args.name}")
    return 0


def _list_grants(args: argparse.Namespace) -> int:
    grants = _client(args).checked("GET", "/namespaces").json()["namespaces"]
    for namespace, functions in grants.items():
        print(f"{namespace}: {' '.join(functions)}")
    if not grants:
        print("no shared namespaces")
    return 0


def _change_grant(args: argparse.Namespace) -> int:
    method = "PUT" if args.granting else "DELETE"
    _client(args).checked(method, f"/namespaces/{quote(args.namespace)}/{quote(args.function)}")
    print(f"granted {args.namespace} to {args.function}" if args.granting
          else f"revoked {args.namespace} from {args.function}")
    return 0


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _print_logs(logs: str) -> None:
    for line in logs.splitlines():
        print(f"log | {line}", file=sys.stderr)
