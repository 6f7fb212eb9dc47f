from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from guest_sdk import pack
from wasmlambda.errors import DeployError
from wasmlambda.kernel._package import MAX_ENTRIES, check_name, extract

from ..conftest import FunctionFactory


def archive(entries: dict[str, bytes], kinds: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, kind in (kinds or {}).items():
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return buffer.getvalue()


def test_extracts_files_and_subpackages(tmp_path: Path) -> None:
    extract(archive({"f.py": b"def f(e): return e", "lib/util.py": b"X = 1"}), tmp_path / "out", 1 << 20)
    assert (tmp_path / "out" / "f.py").read_bytes() == b"def f(e): return e"
    assert (tmp_path / "out" / "lib" / "util.py").read_bytes() == b"X = 1"


def test_single_top_level_folder_is_the_root(tmp_path: Path) -> None:
    extract(archive({"hello/f.py": b"", "hello/more.py": b""}), tmp_path / "out", 1 << 20)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["f.py", "more.py"]


def test_pack_round_trips(tmp_path: Path, make_function: FunctionFactory) -> None:
    source = make_function("x", "def f(event):\n    return 1\n", toml="[limits]\ntimeout_ms = 5\n",
                           files={"lib/a.py": "A = 1"})
    (source / "__pycache__").mkdir()
    (source / "__pycache__" / "f.cpython-311.pyc").write_bytes(b"junk")
    extract(pack(source), tmp_path / "out", 1 << 20)
    names = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert names == ["f.py", "lib/a.py", "wasmlambda.toml"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not a tarball", "not a valid tar.gz"),
        (b"", "not a valid tar.gz"),
        (archive({"../evil.py": b""}), "unsafe path"),
        (archive({"/etc/cron.d/x": b""}), "unsafe path"),
        (archive({"f.py": b""}, {"link": tarfile.SYMTYPE}), "not a regular file"),
        (archive({"g.py": b""}), "no f.py"),
        (archive({"a/f.py": b"", "b/g.py": b""}), "no f.py"),
        (archive({"f.py": b"x" * 2000}), "unpacks to more than"),
        # A file and a folder at the same path, in either order (these used to escape as a 500).
        (archive({"f.py": b"", "a": b"x", "a/b": b"y"}), "cannot unpack 'a/b'"),
        (archive({"f.py": b"", "a/b": b"y", "a": b"x"}), "cannot unpack 'a'"),
        (archive({"f.py": b"", "f.py/x": b""}), "cannot unpack 'f.py/x'"),
        (archive({"f.py": b"", "d/" + "n" * 300: b""}), "path too long"),
        (archive({"f.py": b"", "/".join(["d" * 200] * 6): b""}), "path too long"),
        (archive({}), "no f.py"),
        (archive({"f.py": b"", "\udcff.py": b""}), "not UTF-8"),  # the byte 0xff in a member's name
        (gzip.compress(b"garbage" * 100), "not a valid tar.gz"),
        (archive({"f.py": b"x"})[:-20], "not a valid tar.gz"),  # truncated
    ],
)
def test_bad_archives_are_rejected(tmp_path: Path, data: bytes, message: str) -> None:
    with pytest.raises(DeployError, match=message):
        extract(data, tmp_path / "out", 1000)
    assert not (tmp_path / "etc").exists()


def test_folders_count_against_the_entry_limit(tmp_path: Path) -> None:
    # 10,001 empty folders in a few hundred KB: each is a directory entry to create.
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.addfile(tarfile.TarInfo("f.py"), io.BytesIO(b""))
        for index in range(MAX_ENTRIES):
            info = tarfile.TarInfo(f"d{index}")
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
    with pytest.raises(DeployError, match=f"more than {MAX_ENTRIES} files and folders"):
        extract(buffer.getvalue(), tmp_path / "out", 1 << 20)
    assert not (tmp_path / "out").exists()


class _CountingDecompressor:
    """Wraps a zlib decompressor, adding up what it produces."""

    produced = 0

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def decompress(self, data: bytes, max_length: int = 0) -> bytes:
        out: bytes = self._inner.decompress(data, max_length)
        _CountingDecompressor.produced += len(out)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_a_gzip_bomb_is_not_decompressed_past_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 256 MB of zeros in one member: a ~250 KB package.
    size = 256 << 20
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        tar.addfile(tarfile.TarInfo("f.py"), io.BytesIO(b""))
        info = tarfile.TarInfo("zeros.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(bytes(size)))
    bomb = buffer.getvalue()
    assert len(bomb) < 2 << 20
    original = zlib.decompressobj
    monkeypatch.setattr(zlib, "decompressobj", lambda *args, **kwargs: _CountingDecompressor(original(*args, **kwargs)))
    _CountingDecompressor.produced = 0
    with pytest.raises(DeployError, match="unpacks to more than 1 MB"):
        extract(bomb, tmp_path / "out", 1 << 20)
    # The declared size is refused before its bytes are read: well under the bomb's 256 MB.
    assert _CountingDecompressor.produced < 32 << 20


@pytest.mark.parametrize("name", ["hello", "a", "my-fn_2", "X" * 64])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "-x", "a b", "a/b", "..", "é", "X" * 65])
def test_bad_names(name: str) -> None:
    with pytest.raises(DeployError, match="invalid function name"):
        check_name(name)
