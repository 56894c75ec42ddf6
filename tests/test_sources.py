import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from nnlab.data.sources import Limits, parse_mirror, unpack_tree
from nnlab.files import atomic_dir, atomic_file


def test_a_mirror_without_a_file_name_is_a_folder():  # a bad pin: test_adversarial_params
    pin = "0" * 64
    assert parse_mirror("http://h/mnist/", "a.gz") == ("http://h/mnist/a.gz", None)
    assert parse_mirror(f"http://h/m#sha256={pin}", "a.gz") == ("http://h/m/a.gz", f"sha256:{pin}")
    assert parse_mirror(f"http://h/x/a.zip#md5={pin[:32]}", "b.gz")[0] == "http://h/x/a.zip"


def test_extracted_and_atomic_files_honour_the_umask(tmp_path):
    archive = tmp_path / "a.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for name in ("ok/file.txt", "ok/more.txt"):
            member = tarfile.TarInfo(name)
            member.size = 1
            tf.addfile(member, io.BytesIO(b"x"))
    old = os.umask(0o027)
    try:
        unpack_tree(archive, tmp_path / "out", str(archive), Limits())
        with atomic_file(tmp_path / "f.txt", "w") as fh:
            fh.write("new")
    finally:
        os.umask(old)
    assert (tmp_path / "out" / "ok" / "file.txt").read_text() == "x"
    modes = [(tmp_path / p).stat().st_mode for p in ("out", "out/ok/more.txt", "f.txt")]
    assert [stat.S_IMODE(m) for m in modes] == [0o750, 0o640, 0o640]


def test_atomic_writes_keep_the_old_output_on_a_full_disk_or_a_failed_swap(tmp_path, monkeypatch):
    target, dest, full = tmp_path / "f.txt", tmp_path / "out", f"no space left on {tmp_path}$"
    target.write_text("old")
    dest.mkdir()
    (dest / "good.txt").write_text("earlier output")
    with pytest.raises(OSError, match=full), atomic_file(target, "w") as fh:
        fh.write("half")
        raise OSError(28, "No space left on device")
    with pytest.raises(OSError, match=full), atomic_dir(dest) as tmp:
        (tmp / "half.npy").write_bytes(b"x")
        raise OSError("784000 requested and 8064 written")  # how numpy says it
    real_rename = Path.rename

    def failing(self, target):
        if Path(target) == dest and self.name.startswith(".out.tmp-"):
            raise OSError("disk went away")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", failing)
    with pytest.raises(OSError, match="disk went away"), atomic_dir(dest) as tmp:
        (tmp / "new.txt").write_text("new")
    assert (dest / "good.txt").read_text() == "earlier output" and target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["f.txt", "good.txt", "out"]


def test_atomic_writes_fsync_file_and_folder(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "fsync", lambda fd, real=os.fsync: synced.append(fd) or real(fd))
    with atomic_file(tmp_path / "f.txt", "w") as fh:
        fh.write("x")
    assert len(synced) == 2  # the file, then its folder
    with atomic_dir(tmp_path / "d") as tmp:
        (tmp / "a.txt").write_text("a")
    assert len(synced) == 2 + 3  # then the file, the new folder, the parent after the rename
