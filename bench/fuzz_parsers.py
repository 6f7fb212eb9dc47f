"""Coverage-guided fuzzing (atheris) of the request parsers and the package reader, in process.

Usage: python bench/fuzz_parsers.py TARGET [-runs=N] [other libFuzzer flags]
       TARGET: parser (both twins of the fast parser) or package (tar.gz + wasmlambda.toml)

The property is the one the live fuzzer (bench/fuzz.py) checks over HTTP:
any input is accepted, or refused in the one documented way (the parser: a
request, "more data", FALLBACK to h11, or a ParseError with a 4xx status;
the package reader: unpacked, or a DeployError), nothing else.  `make fuzz`
runs both targets for a bounded number of runs; a crash input is written
where libFuzzer says.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from wasmlambda.errors import DeployError
    from wasmlambda.http import _parser_py
    from wasmlambda.kernel import Limits
    from wasmlambda.kernel._manifest import read_spec
    from wasmlambda.kernel._package import extract

from wasmlambda import _fastpath

_compiled = _fastpath.pick("_parser", _parser_py)
_PARSERS = [_parser_py] if _compiled is _parser_py else [_parser_py, _compiled]
_SCRATCH = Path(tempfile.mkdtemp(prefix="wasmlambda-fuzz-"))


def parse(data: bytes) -> None:
    outcomes = []
    for implementation in _PARSERS:
        parser = implementation.RequestParser(lambda path: 1 << 20)
        parser.feed(data)
        seen = []
        try:
            while (parsed := parser.next()) is not None:
                seen.append(parsed if parsed is implementation.FALLBACK else parsed.method)
                if parsed is implementation.FALLBACK:
                    break
        except implementation.ParseError as exc:
            if not 400 <= exc.status < 500:
                raise AssertionError(f"a parse error with status {exc.status}") from None
            seen.append(exc.status)
        outcomes.append([item if isinstance(item, int | bytes) else "FALLBACK" for item in seen])
    if len(outcomes) == 2 and outcomes[0] != outcomes[1]:
        raise AssertionError(f"the parser twins disagree: {outcomes}")


def unpack(data: bytes) -> None:
    with tempfile.TemporaryDirectory(dir=_SCRATCH) as scratch:
        code = Path(scratch) / "deploy" / "code"
        try:
            extract(data, code, 1 << 16)
        except DeployError:
            return
        with contextlib.suppress(DeployError):
            read_spec(code, Limits(1000, 64), 512)


def seeds(target: str) -> Path:
    """A corpus to start from: valid inputs the mutations can bend."""
    corpus = _SCRATCH / f"seeds-{target}"
    corpus.mkdir()
    if target == "parser":
        examples = [b"POST /run/hello HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nnull",
                    b"GET /status HTTP/1.1\r\nHost: x\r\n\r\nGET /stats HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"POST /run/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
                    b"PUT /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"]
    else:
        import io
        import tarfile

        examples = []
        for files in ({"f.py": b"def f(e):\n    return e\n"},
                      {"f.py": b"", "wasmlambda.toml": b"[limits]\nmemory_mb = 64\n", "lib/a.py": b"A = 1"},
                      {"top/f.py": b"", "top/wasmlambda.toml": b'[function]\nisolation = "fresh"\n'}):
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
                for name, data in files.items():
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
            examples.append(buffer.getvalue())
    for index, example in enumerate(examples):
        (corpus / f"seed{index}").write_bytes(example)
    return corpus


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("parser", "package"):
        sys.exit(__doc__)
    target = parse if sys.argv[1] == "parser" else unpack
    atheris.Setup([sys.argv[0], *sys.argv[2:], str(seeds(sys.argv[1]))], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
