import hashlib
import io
import os
import stat
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from nnlab.data.sources import (
    ChecksumError,
    UnsafeArchiveError,
    fetch,
    safe_extract,
)
from nnlab.files import atomic_dir, atomic_file
from nnlab.log import DownloadError, with_fallback
from tests.http_server import dead_url, serve


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_fetch_good_file(tmp_path):
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "f.bin").write_bytes(b"hello" * 1000)
    with serve(tmp_path / "srv") as url:
        got = fetch([f"{url}/f.bin"], tmp_path / "out" / "f.bin", _sha(b"hello" * 1000))
    assert (tmp_path / "out" / "f.bin").read_bytes() == b"hello" * 1000
    assert got["url"].endswith("/f.bin")
    assert not [p for p in (tmp_path / "out").iterdir() if p.name != "f.bin"]  # no temp left


def test_bad_checksum_deletes_and_tries_next_mirror(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "good").mkdir()
    (tmp_path / "bad" / "f.bin").write_bytes(b"corrupt")
    (tmp_path / "good" / "f.bin").write_bytes(b"right")
    with serve(tmp_path / "bad") as bad, serve(tmp_path / "good") as good:
        got = fetch([f"{bad}/f.bin", f"{good}/f.bin"], tmp_path / "f.bin", _sha(b"right"))
    assert got["url"].startswith(good)
    assert (tmp_path / "f.bin").read_bytes() == b"right"


def test_bad_checksum_everywhere_names_file_expected_actual(tmp_path):
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "f.bin").write_bytes(b"corrupt")
    expected = _sha(b"right")
    with serve(tmp_path / "srv") as url, pytest.raises(ChecksumError) as err:
        fetch([f"{url}/f.bin"], tmp_path / "dl" / "f.bin", expected, retries=1)
    msg = str(err.value)
    assert "f.bin" in msg and expected in msg and _sha(b"corrupt") in msg
    assert not (tmp_path / "dl").exists() or not list((tmp_path / "dl").iterdir())


def test_server_down_fails_fast(tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(DownloadError, match="f.bin"):
        fetch([f"{dead_url()}/f.bin", f"{dead_url()}/f.bin"], tmp_path / "f.bin", retries=3)
    assert time.perf_counter() - t0 < 5
    assert not list(tmp_path.iterdir())


def test_missing_file_404_is_an_error(tmp_path):
    (tmp_path / "srv").mkdir()
    with serve(tmp_path / "srv") as url, pytest.raises(DownloadError, match="404"):
        fetch([f"{url}/nope.bin"], tmp_path / "nope.bin")


def _fail():
    raise DownloadError("offline")


def test_fallback_rule():
    remote = lambda: {"files": "real"}  # noqa: E731
    fallback = lambda: {"files": "sample"}  # noqa: E731
    kw = {"dataset": "d", "fallback_name": "sample"}
    assert with_fallback("auto", remote, fallback, **kw)["source"] == "remote"
    auto = with_fallback("auto", _fail, fallback, **kw)
    assert auto["source"] == "sample" and "offline" in auto["fallback_reason"]
    assert with_fallback("bundled", remote, fallback, **kw)["files"] == "sample"
    with pytest.raises(DownloadError):
        with_fallback("remote", _fail, fallback, **kw)


def _tar_with(tmp_path, name, member: tarfile.TarInfo, data: bytes = b"x"):
    path = tmp_path / name
    with tarfile.open(path, "w:gz") as tf:
        ok = tarfile.TarInfo("ok/file.txt")
        ok.size = 1
        tf.addfile(ok, io.BytesIO(b"x"))
        tf.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def _member(name, kind=tarfile.REGTYPE, link=""):
    m = tarfile.TarInfo(name)
    m.type = kind
    m.linkname = link
    m.size = 1 if kind == tarfile.REGTYPE else 0
    return m


@pytest.mark.parametrize(
    "member",
    [
        _member("/etc/evil"),
        _member("ok/../../evil"),
        _member("ok/link", tarfile.SYMTYPE, "../../outside"),
        _member("ok/abs", tarfile.SYMTYPE, "/etc/passwd"),
        _member("ok/hard", tarfile.LNKTYPE, "../../x"),
        _member("a/b/hard", tarfile.LNKTYPE, "../x"),  # hard links resolve from the root
        _member("ok/fifo", tarfile.FIFOTYPE),
        _member("ok/dev", tarfile.CHRTYPE),
    ],
    ids=["absolute", "dotdot", "symlink-out", "symlink-abs", "hardlink-out", "hardlink-root",
         "fifo", "device"],
)
def test_unsafe_tar_refused_nothing_extracted(tmp_path, member):
    archive = _tar_with(tmp_path, "a.tar.gz", member)
    with pytest.raises(UnsafeArchiveError, match="refused"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["a.tar.gz"]


def test_unsafe_zip_refused(tmp_path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("fine.txt", "x")
        zf.writestr("../escape.txt", "x")
    with pytest.raises(UnsafeArchiveError, match="escape.txt"):
        safe_extract(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_inner_symlink_refused_even_when_it_stays_inside(tmp_path):
    # dataset archives have no reason to hold links: every link is refused, harmless or not
    archive = _tar_with(tmp_path, "a.tar.gz", _member("ok/link", tarfile.SYMTYPE, "file.txt"))
    with pytest.raises(UnsafeArchiveError, match=r"a\.tar\.gz: refused: .*ok/link.*symlink"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_plain_archive_extracts_with_umask_modes(tmp_path):
    archive = _tar_with(tmp_path, "a.tar.gz", _member("ok/more.txt"))
    old = os.umask(0o027)
    try:
        safe_extract(archive, tmp_path / "out")
    finally:
        os.umask(old)
    assert (tmp_path / "out" / "ok" / "file.txt").read_text() == "x"
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "out" / "ok" / "more.txt").stat().st_mode) == 0o640


def test_atomic_file_honours_umask_and_keeps_old_on_error(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(target, "w") as fh:
        fh.write("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]
    old = os.umask(0o022)
    try:
        with atomic_file(target, "w") as fh:
            fh.write("new")
    finally:
        os.umask(old)
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o644


def test_atomic_dir_restores_old_output_when_the_swap_fails(tmp_path, monkeypatch):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "good.txt").write_text("earlier output")
    real_rename = Path.rename

    def failing(self, target):
        if Path(target) == dest and self.name.startswith(".out.tmp-"):
            raise OSError("disk went away")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", failing)
    with pytest.raises(OSError, match="disk went away"), atomic_dir(dest) as tmp:
        (tmp / "new.txt").write_text("new")
    assert (dest / "good.txt").read_text() == "earlier output"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_writes_fsync_file_and_folder(tmp_path, monkeypatch):
    import nnlab.files

    synced = []
    real = os.fsync
    monkeypatch.setattr(nnlab.files.os, "fsync", lambda fd: synced.append(fd) or real(fd))
    with atomic_file(tmp_path / "f.txt", "w") as fh:
        fh.write("x")
    assert len(synced) == 2  # the file, then its folder
    synced.clear()
    with atomic_dir(tmp_path / "d") as tmp:
        (tmp / "a.txt").write_text("a")
    assert len(synced) == 3  # the file, the new folder, the parent after the rename
