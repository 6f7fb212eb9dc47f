"""Fuzz a live worker over HTTP: `make fuzz` (1,000,000 inputs) or a bounded run in `make test`.

Usage: python bench/fuzz.py [--inputs N] [--seed S] [--processes P]

Starts ``wasmlambda serve`` (fast parser) with a few functions deployed and
throws malformed and half-valid HTTP at it from P client processes: request
lines, methods, targets, versions, headers (duplicated, folded, huge,
binary), framing (Content-Length and Transfer-Encoding, in every
combination, right or wrong), chunk syntax, bodies (JSON or not, deep,
huge), pipelined requests, and the admin routes with and without a token.
Each input goes on a connection of its own, which the client half-closes
after sending, so the worker always sees the whole input and then EOF.

The property: every input is answered with a well-formed HTTP/1.1 response
whose status is below 500 (or 501-505, which name an unknown transfer
coding, the guest, the capacity or the version), or the connection is closed without an answer
(an input that never completes a request); the worker process never dies,
never logs a traceback, and still serves a normal request at the end.
Anything else is a finding: the first few of each kind are printed, with
the input that caused them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.load import ADMIN_TOKEN, start_server, stop_server  # noqa: E402

# 501: a Transfer-Encoding the server does not implement (RFC 9112 6.1 says so).
ALLOWED_5XX = {501, 502, 503, 504, 505}
_STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r\n]*\r\n")

METHODS = [b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE", b"get",
           b"P0ST", b"", b"GET POST", b"\x00", b"\xff\xfe"]
TARGETS = [b"/run/echo", b"/run/hello", b"/runLambda/echo", b"/run/nope", b"/registry/", b"/registry/echo",
           b"/registry/new", b"/status", b"/stats", b"/metrics", b"/billing", b"/billing/x", b"/logs/echo",
           b"/keys/echo", b"/keys/echo/abc", b"/namespaces", b"/namespaces/a/echo", b"/", b"", b"*",
           b"http://x/run/echo", b"/run/echo?logs=true", b"/run/echo?%zz", b"/run/../registry/", b"/run//echo",
           b"/run/echo/extra", b"/" + b"a" * 5000, b"/run/\xff", b"/run/echo#frag", b"/logs/echo?since=-1&limit=x"]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.1 ", b"HTTP/1", b"http/1.1", b"HTTP/9.9",
            b""]
BODIES = [b"", b"null", b"1", b'"x"', b'{"name": "fuzz"}', b"[1,2,3]", b"{", b"nul", b"\xff\xfe\x00",
          b"[" * 5000 + b"]" * 5000, b"1e999999", b'{"a": NaN}', b"Infinity", b'"\\ud800"', b" " * 100 + b"1",
          b"\x1f\x8b\x08\x00" + os.urandom(40), json.dumps({"k": "v" * 10000}).encode()]
HEADER_NAMES = [b"Host", b"Content-Length", b"Transfer-Encoding", b"Connection", b"Expect", b"Upgrade",
                b"Authorization", b"Cookie", b"X-Thing", b"Content-Type", b"Origin", b"content-length",
                b"Host ", b" Host", b"", b"\x00", b"X" * 300, b"Trailer", b"TE"]
HEADER_VALUES = [b"x", b"0", b"5", b"-1", b"99999999999999999999", b"chunked", b"gzip, chunked", b"chunked, gzip",
                 b"identity", b"close", b"keep-alive", b"100-continue", b"h2c", b"Bearer " + ADMIN_TOKEN.encode(),
                 b"Bearer wrong", b"Bearer", b"\x7f", b"a\rb", b"a\nb", b" padded ", b"v" * 9000, b"\xff"]


def generate(rng: random.Random) -> bytes:
    """One input: usually close to a valid request, then mutated."""
    method = rng.choice(METHODS)
    target = rng.choice(TARGETS)
    version = rng.choice(VERSIONS)
    body = rng.choice(BODIES)
    lines = [b"%s %s %s" % (method, target, version)] if rng.random() > 0.02 else [os.urandom(rng.randint(0, 40))]
    if rng.random() < 0.9:
        lines.append(b"Host: fuzz")
    framing = rng.random()
    if framing < 0.5:
        lines.append(b"Content-Length: %d" % (len(body) + rng.choice([0, 0, 0, -1, 1, 100])))
    elif framing < 0.75:
        lines.append(b"Transfer-Encoding: chunked")
        body = chunked(body, rng)
    elif framing < 0.85:
        lines.append(b"Content-Length: %d" % len(body))
        lines.append(b"Transfer-Encoding: chunked")
        body = chunked(body, rng)
    for _ in range(rng.randint(0, 4)):
        lines.append(rng.choice(HEADER_NAMES) + rng.choice([b": ", b":", b" : ", b""]) + rng.choice(HEADER_VALUES))
    separator = rng.choice([b"\r\n"] * 8 + [b"\n", b"\r", b"\r\r\n"])
    message = separator.join(lines) + separator + separator + body
    mutation = rng.random()
    if mutation < 0.15:  # flip a few bytes
        data = bytearray(message)
        for _ in range(rng.randint(1, 4)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        message = bytes(data)
    elif mutation < 0.25:  # cut it short
        message = message[:rng.randint(0, len(message))]
    elif mutation < 0.35:  # pipeline another request behind it
        message += generate(rng)
    elif mutation < 0.40:
        message = os.urandom(rng.randint(1, 200))
    return message


def chunked(body: bytes, rng: random.Random) -> bytes:
    out = b""
    while body:
        size = rng.randint(1, max(1, len(body)))
        piece, body = body[:size], body[size:]
        size_text = rng.choice([b"%x" % len(piece)] * 6 + [b"%X" % len(piece), b"%x;ext=1" % len(piece), b"zz",
                                                           b"-1", b"%x" % (len(piece) + 1)])
        out += size_text + b"\r\n" + piece + b"\r\n"
    return out + rng.choice([b"0\r\n\r\n"] * 6 + [b"0\r\nTrailer: x\r\n\r\n", b"0\r\n", b""])


def send(port: int, message: bytes, timeout_s: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as connection:
        try:
            connection.sendall(message)
            connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the worker may answer and close before it has read everything
        answer = b""
        try:
            while chunk := connection.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
        return answer


def judge(answer: bytes, message: bytes = b"") -> str | None:
    """None if the answer keeps the property, else what is wrong with it.  (An answer to
    a HEAD request has a Content-Length and no body: after one, either may follow.)"""
    heads = b"HEAD " in message
    if not answer:
        return None  # closed without an answer: an input that never completed a request
    position = 0
    while position < len(answer):
        match = _STATUS.match(answer, position)
        if match is None:
            return "malformed response"
        status = int(match[1])
        if status >= 500 and status not in ALLOWED_5XX:
            return f"status {status}"
        head_end = answer.find(b"\r\n\r\n", position)
        if head_end < 0:
            return "truncated response head"
        head = answer[position:head_end].lower()
        length = re.search(rb"\r\ncontent-length: (\d+)", head)
        position = head_end + 4
        if heads and (position == len(answer) or answer.startswith(b"HTTP/1.1 ", position)):
            continue
        position += int(length[1]) if length else 0
        if position > len(answer):
            return "truncated response body"
    return None


def fuzz_range(port: int, seed: int, count: int) -> tuple[Counter[str], list[tuple[str, bytes]]]:
    rng = random.Random(seed)
    findings: Counter[str] = Counter()
    examples: list[tuple[str, bytes]] = []
    for _ in range(count):
        message = generate(rng)
        try:
            problem = judge(send(port, message), message)
        except TimeoutError:
            problem = "no answer within 10 s"
        except OSError as exc:
            problem = f"connection failed: {exc.strerror or exc}"
        if problem is not None:
            findings[problem] += 1
            if len(examples) < 5:
                examples.append((problem, message[:300]))
    return findings, examples


def deploy_functions(port: int, scratch: Path) -> None:
    import http.client

    from guest_sdk import build_bytes

    for name, source in {"echo": "def f(event):\n    return event\n",
                         "hello": "def f(event):\n    return {'hello': (event or {}).get('name')}\n"}.items():
        folder = scratch / name
        folder.mkdir()
        (folder / "f.py").write_text(source)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("POST", f"/registry/{name}", build_bytes(folder, progress=lambda _: None, check=False),
                           headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert connection.getresponse().status == 201
        connection.close()


def run(inputs: int, seed: int, processes: int, progress: bool = True) -> dict[str, object]:
    """Fuzz a fresh worker; returns the findings (an empty dict of findings means none)."""
    with tempfile.TemporaryDirectory() as scratch:
        log_path = Path(scratch) / "worker.log"
        with log_path.open("w") as log:
            worker, port = start_server([sys.executable, "-m", "wasmlambda", "serve", "--port", "0",
                                         "--data-dir", f"{scratch}/data"], stderr=log)
        try:
            deploy_functions(port, Path(scratch))
            started = time.monotonic()
            findings: Counter[str] = Counter()
            examples: list[tuple[str, bytes]] = []
            batch = 5000
            done = 0
            with multiprocessing.Pool(processes) as pool:
                jobs = [(port, seed + index, min(batch, inputs - start))
                        for index, start in enumerate(range(0, inputs, batch))]
                for found, seen in pool.imap_unordered(_fuzz_job, jobs):
                    findings.update(found)
                    examples.extend(seen[:5 - len(examples)])
                    done += batch
                    if progress and done % 50_000 == 0:
                        print(f"{min(done, inputs):,} inputs, {sum(findings.values())} findings, "
                              f"{done / (time.monotonic() - started):,.0f}/s", file=sys.stderr, flush=True)
            alive = worker.poll() is None
            final = judge(send(port, b"POST /run/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n7")) \
                if alive else "worker died"
        finally:
            stop_server(worker)
        log_text = log_path.read_text()
    tracebacks = log_text.count("Traceback")
    first = log_text.find("Traceback")
    return {"inputs": inputs, "seconds": round(time.monotonic() - started, 1), "findings": dict(findings),
            "examples": [(problem, message.decode("latin-1")) for problem, message in examples],
            "worker_alive": alive, "final_request": final or "ok", "tracebacks_in_log": tracebacks,
            "first_traceback": log_text[max(0, first - 200):first + 3000] if first >= 0 else None,
            "crashes": (0 if alive else 1) + (1 if final else 0) + tracebacks}


def _fuzz_job(job: tuple[int, int, int]) -> tuple[Counter[str], list[tuple[str, bytes]]]:
    return fuzz_range(*job)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    report = run(args.inputs, args.seed, args.processes)
    print(json.dumps(report, indent=2))
    return 0 if report["crashes"] == 0 and not report["findings"] else 1


if __name__ == "__main__":
    sys.exit(main())
