"""No code the worker runs calls an OS-specific API outside the places that check
wasmlambda/_platform.py first (AST scan of every module of the package)."""

from __future__ import annotations

import ast
from pathlib import Path

import wasmlambda

PACKAGE = Path(wasmlambda.__file__).parent
# Attribute names that exist (or work) only on some operating systems.
SPECIFIC = {
    "SO_REUSEPORT": "Linux/BSD socket option",
    "pipe": "os.pipe (Trio cannot wait on a pipe on Windows)",
    "symlink_to": "symlinks (not available to ordinary users on Windows)",
    "readlink": "symlinks",
    "fork": "POSIX only",
    "set_inheritable": "socket inheritance (POSIX)",
    "pass_fds": "POSIX only",
    "epoll": "Linux only",
    "_epoll": "Linux only (Trio's private epoll)",
    "O_DIRECTORY": "POSIX only",
    "sched_setaffinity": "Linux only",
    "getuid": "POSIX only",
    "SIGKILL": "POSIX only",
    "SIGHUP": "POSIX only",
}
# Where they may appear: each of these places checks a _platform flag (or is one).
ALLOWED = {
    ("http/_server.py", "SO_REUSEPORT"),  # shared_port_socket: only when _platform.REUSE_PORT chose it
    ("_supervisor.py", "set_inheritable"),  # only when not REUSE_PORT and INHERIT_SOCKETS
    ("_supervisor.py", "pass_fds"),
    ("kernel/_scheduler.py", "_epoll"),  # _loop_epoll_fd: only when _platform.EPOLL_WATCH
    ("kernel/_registry.py", "symlink_to"),  # publish: only when _platform.SYMLINKS
    ("kernel/_registry.py", "readlink"),  # reading a link: only for a symlink (pointer files otherwise)
}


def uses(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in SPECIFIC:
            found.add(node.attr)
        elif isinstance(node, ast.keyword) and node.arg in SPECIFIC:
            found.add(node.arg)
        elif isinstance(node, ast.ImportFrom) and any(alias.name in SPECIFIC for alias in node.names):
            found.update(alias.name for alias in node.names if alias.name in SPECIFIC)
    return found


def test_os_specific_calls_only_where_a_platform_check_guards_them() -> None:
    found = {(path.relative_to(PACKAGE).as_posix(), name) for path in PACKAGE.rglob("*.py") for name in uses(path)}
    unexpected = sorted(found - ALLOWED)
    assert not unexpected, "OS-specific calls outside the allowed places: " + ", ".join(
        f"{where} uses {name} ({SPECIFIC[name]})" for where, name in unexpected)
    assert not ALLOWED - found, f"allowed but no longer used (trim the list): {sorted(ALLOWED - found)}"


def test_the_scan_finds_what_it_looks_for(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import os, subprocess\nr, w = os.pipe()\nsubprocess.Popen(['x'], pass_fds=[3])\n"
                      "from socket import SO_REUSEPORT\n")
    assert uses(sample) == {"pipe", "pass_fds", "SO_REUSEPORT"}
