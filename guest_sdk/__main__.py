"""python -m guest_sdk build DIR [-o OUT] | run DIR [EVENT]"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from wasmlambda.errors import WasmLambdaError

from ._build import build
from ._run import run
from ._vendor import BuildError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m guest_sdk", description="Build and try wasmlambda functions.")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    pip_help = "extra arguments for pip when vendoring requirements.txt, e.g. '--no-index --find-links DIR'"

    build_command = commands.add_parser("build", help="turn a function folder into a deployable tar.gz",
                                        description="Validate, vendor requirements, byte-compile and package.")
    build_command.add_argument("directory", type=Path, help="the function folder (with f.py)")
    build_command.add_argument("-o", "--output", type=Path, help="the package to write (default: DIR.tar.gz)")
    build_command.add_argument("--pip-args", default="", help=pip_help)

    run_command = commands.add_parser("run", help="run a function once, locally, in the WebAssembly runtime",
                                      description="Run the handler once in the worker's sandbox and print "
                                                  "its result (stdout), logs and timing (stderr).")
    run_command.add_argument("directory", type=Path, help="the function folder (with f.py)")
    run_command.add_argument("event", nargs="?", default="null", help="the JSON event, or - to read stdin")
    run_command.add_argument("--pip-args", default="", help=pip_help)

    args = parser.parse_args(argv)
    pip_args = args.pip_args.split()
    try:
        if hasattr(args, "output"):
            build(args.directory, args.output, pip_args, progress=lambda message: print(message, file=sys.stderr))
            return 0
        event = sys.stdin.read() if args.event == "-" else args.event
        return run(args.directory, event.encode(), pip_args)
    except (BuildError, WasmLambdaError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
