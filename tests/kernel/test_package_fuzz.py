"""Property: any package, any manifest, is accepted or refused with a DeployError (a 400),
never another exception, and nothing is written outside the destination."""

from __future__ import annotations

import io
import tarfile
import tempfile
from pathlib import Path

from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from wasmlambda.errors import DeployError
from wasmlambda.kernel import FunctionSpec, Limits
from wasmlambda.kernel._manifest import read_spec
from wasmlambda.kernel._package import extract

SAFE_NAMES = st.sampled_from(["lib.py", "data/x.json", "pkg/__init__.py", "pkg/mod.py", "README", "d"])
NAMES = st.one_of(
    SAFE_NAMES, SAFE_NAMES, SAFE_NAMES,
    st.sampled_from(["f.py", "./f.py", "top/f.py", "a", "a/b", "a/b/c.py", "../x", "/etc/x", "d/", "f.py/x",
                     "n" * 300, "/".join(["p" * 100] * 12), "é/ü.py", "a\\b", "vendor/lib.py", ".", "..", "a//b"]),
    # (No lone surrogates: tarfile cannot write them. Names that are not UTF-8 reach the
    # reader as bytes; tests/kernel/test_package.py covers those.)
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1,
            max_size=40))
KINDS = st.sampled_from([tarfile.REGTYPE] * 12 + [tarfile.DIRTYPE] * 4 + [tarfile.SYMTYPE, tarfile.LNKTYPE,
                                                                          tarfile.CHRTYPE, tarfile.FIFOTYPE])
MEMBERS = st.lists(st.tuples(NAMES, KINDS, st.binary(max_size=200)), max_size=8)


def build(members: list[tuple[str, bytes, bytes]], with_handler: bool) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        if with_handler:
            tar.addfile(tarfile.TarInfo("f.py"), io.BytesIO(b""))
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.linkname = "f.py"
                tar.addfile(info)
    return buffer.getvalue()


@settings(max_examples=300, deadline=None)
@example(members=[("\x13\xc5\xc9", tarfile.REGTYPE, b"")], with_handler=True, cut=None,
         flips=[(5393, 122)])  # found by this test: a name that is not UTF-8 escaped as a 500
@given(members=MEMBERS, with_handler=st.booleans(),
       # Mostly intact archives, so that most cases reach the unpacking, not the gzip check.
       cut=st.one_of(st.none(), st.none(), st.none(), st.integers(0, 400)),
       flips=st.one_of(st.just([]), st.just([]), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                                                          min_size=1, max_size=3)))
def test_any_archive_is_unpacked_or_refused(members: list[tuple[str, bytes, bytes]], with_handler: bool,
                                            cut: int | None, flips: list[tuple[int, int]]) -> None:
    data = bytearray(build(members, with_handler))
    for position, value in flips:
        if data:
            data[position % len(data)] = value
    if cut is not None:
        data = data[:cut]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        destination = root / "deploy" / "code"
        try:
            extract(bytes(data), destination, 4096)
        except DeployError as exc:
            event(f"refused: {str(exc).split(' (')[0][:40]}")
        else:
            event("unpacked")
            assert (destination / "f.py").is_file() or (destination / "f.wasm").is_file()
        outside = [path for path in root.rglob("*") if root / "deploy" not in (path, *path.parents)]
        assert outside == []


VALUES = st.one_of(st.integers(-5, 2_000_000).map(str), st.integers(16, 600).map(str),  # TOML literals
                   st.sampled_from(["true", "false", '"warm"', '"fresh"', "[]", '["x"]', "{}", "1.5", "'b'", '""']))


@st.composite
def manifests(draw: st.DrawFn) -> str:
    """Mostly-plausible wasmlambda.toml documents, sometimes broken."""
    tables = {"function": ["isolation", "invoke_keys", "isolation", "invoke_keys", "other"],
              "limits": ["timeout_ms", "memory_mb", "timeout_ms", "memory_mb", "x"], "state": ["namespaces"],
              "extra": ["k"]}
    lines = []
    for table in draw(st.lists(st.sampled_from(["function", "limits"] * 4 + sorted(tables)), max_size=3)):
        lines.append(f"[{table}]")
        for key in draw(st.lists(st.sampled_from(tables[table]), max_size=3, unique=True)):
            lines.append(f"{key} = {draw(VALUES)}")
    text = "\n".join(lines) + "\n"
    if draw(st.integers(0, 4)) == 0:  # now and then, broken
        text = draw(st.text(max_size=60)) if draw(st.booleans()) else text.replace("=", draw(st.sampled_from(
            ["", "==", ":"])), 1)
    return text


@settings(max_examples=300, deadline=None)
@given(document=manifests())
def test_any_manifest_is_read_or_refused(document: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "f.py").write_text("")
        (Path(scratch) / "wasmlambda.toml").write_text(document)
        try:
            spec = read_spec(Path(scratch), Limits(1000, 64), 512)
        except DeployError:
            event("refused")
            return
        event("read")
        assert isinstance(spec, FunctionSpec) and 16 <= spec.limits.memory_mb <= 512


OL_KEYS = ["triggers", "environment", "reuse-sandbox", "kafka", "triggers", "environment"]
YAML_VALUES = st.one_of(
    st.sampled_from(["GET", "POST", "'*'", "get", "BREW", "true", "false", "3", "null", "[]", "{}", "app.py",
                     "'x.py'", "'-'", "[{method: GET}, {method: POST}]", "[{method: '*'}]", "[GET]",
                     "{http: [{method: PUT}], kafka: []}", "{http: 3}", "{A: 1, B: two}", "{OL_ENTRY_FILE: f.py}",
                     "{OL_ENTRY_FILE: ../x.py}", "{OL_WSGI_ENTRY: app}", "{OL_WSGI_ENTRY: 'a b'}", "{1: x}",
                     "{A: [1]}", "&a [*a]", "!!python/object:os.system x"]),
    st.text(max_size=20))


@st.composite
def ol_manifests(draw: st.DrawFn) -> str:
    """Mostly-plausible ol.yaml documents, sometimes broken."""
    lines = [f"{key}: {draw(YAML_VALUES)}" for key in draw(st.lists(st.sampled_from(OL_KEYS), max_size=3,
                                                                     unique=True))]
    text = "\n".join(lines) + "\n"
    if draw(st.integers(0, 4)) == 0:
        text = draw(st.text(max_size=60))
    return text


@settings(max_examples=300, deadline=None)
@given(document=ol_manifests())
def test_any_ol_yaml_is_read_or_refused(document: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "f.py").write_text("")
        (Path(scratch) / "ol.yaml").write_text(document)
        try:
            spec = read_spec(Path(scratch), Limits(1000, 64), 512)
        except DeployError:
            event("refused")
            return
        event("read")
        assert isinstance(spec, FunctionSpec) and all(isinstance(value, str) for value in spec.env.values())
