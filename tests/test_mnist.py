import gzip
import hashlib
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from nnlab import paths
from nnlab.data import mnist
from nnlab.data.prepare import StageOrderError, load_arrays, load_meta
from nnlab.files import read_json
from nnlab.log import DownloadError
from nnlab.stages.download import run as run_download
from nnlab.stages.split import run as run_split
from tests.conftest import tiny_params
from tests.http_server import dead_url, serve


def write_idx(path: Path, array: np.ndarray) -> None:
    """A uint8 array as a (gzipped if .gz) IDX file."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with (gzip.open if path.suffix == ".gz" else open)(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_idx_roundtrip_and_damage(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    for name in ("a-idx3-ubyte", "b-idx3-ubyte.gz"):
        write_idx(tmp_path / name, arr)
        np.testing.assert_array_equal(mnist.read_idx(tmp_path / name), arr)
    cut = (tmp_path / "a-idx3-ubyte").read_bytes()[:-2]
    for data, error in ((b"\x01\x02\x03\x04rest", "bad magic"), (cut, "truncated")):
        (tmp_path / "bad").write_bytes(data)
        with pytest.raises(ValueError, match=f"bad: .*{error}"):
            mnist.read_idx(tmp_path / "bad")


@pytest.fixture
def fake_mirror(tmp_path, monkeypatch):
    """Four tiny IDX files on a local mirror, with mnist.FILES pointing at their checksums."""
    rng = np.random.default_rng(1)
    srv = tmp_path / "mirror"
    srv.mkdir()
    files = {}
    for split, n in {"train": 120, "test": 40}.items():
        labels = np.arange(n) % 10
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        for kind, arr in (("images", images), ("labels", labels)):
            key = f"{split}_{kind}"
            fname, _ = mnist.FILES[key]
            write_idx(srv / fname, arr)
            files[key] = (fname, "md5:" + hashlib.md5((srv / fname).read_bytes()).hexdigest())
    monkeypatch.setattr(mnist, "FILES", files)
    return srv


@pytest.mark.parametrize("where", ["mirror", "path"])
def test_download_and_split_from_mirror_or_path(tmp_path, fake_mirror, where):
    with serve(fake_mirror) as url:
        block = {"mirrors": [url + "/"]} if where == "mirror" else {"path": str(fake_mirror)}
        params = tiny_params(**{"data.mnist": {"kind": "mnist", "source": "remote", **block}})
        manifest = run_download(params, "mnist", tmp_path)
    assert manifest["source"] == "remote" and manifest["path" if where == "path" else "files"]
    assert {p.name for p in (tmp_path / "data/raw/mnist").glob("*.gz")} == {
        f for f, _ in mnist.FILES.values()
    }
    split = run_split(params, "mnist", tmp_path)
    assert split["counts"] == {"train": 108, "val": 12, "test": 40}  # official test kept
    assert split["test"] == "official t10k test set"


def test_path_with_a_wrong_or_missing_file_is_an_error_not_a_fallback(tmp_path, fake_mirror):
    params = tiny_params(**{"data.mnist.path": str(fake_mirror), "data.mnist.source": "auto"})
    name = mnist.FILES["test_labels"][0]
    (fake_mirror / name).write_bytes(b"changed")
    with pytest.raises(ValueError, match=f"data.mnist.path: .*{name}: checksum mismatch"):
        run_download(params, "mnist", tmp_path)
    (fake_mirror / name).unlink()
    with pytest.raises(FileNotFoundError, match=f"no regular file {name}"):
        run_download(params, "mnist", tmp_path)
    assert not (tmp_path / "data/raw/mnist").exists()


def test_unreachable_mirror_remote_fails_fast_auto_falls_back_loudly(tmp_path, capsys):
    def params(source):
        return tiny_params(**{"data.mnist.source": source, "data.mnist.mirrors": [dead_url()]})

    t0 = time.perf_counter()
    with pytest.raises(DownloadError, match="train-images"):
        run_download(params("remote"), "mnist", tmp_path)
    assert time.perf_counter() - t0 < 5 and not (tmp_path / "data/raw/mnist").exists()
    manifest = run_download(params("auto"), "mnist", tmp_path)
    assert "bundled" in manifest["source"] and "WARNING" in capsys.readouterr().err
    on_disk = read_json(tmp_path / "data/raw/mnist" / paths.MANIFEST)
    assert on_disk["source"] == manifest["source"] and on_disk["fallback_reason"]


def test_split_names_the_stage_before_it_then_is_stratified_and_deterministic(mnist_root, tmp_path):
    params = tiny_params()
    with pytest.raises(StageOrderError, match="nnlab download mnist"):
        run_split(params, "mnist", tmp_path)
    run_download(params, "mnist", tmp_path)
    run_split(params, "mnist", tmp_path)
    for split in ("train", "val", "test"):
        a = load_arrays("mnist", split, mnist_root)
        b = load_arrays("mnist", split, tmp_path)
        np.testing.assert_array_equal(a["x"], b["x"])
        np.testing.assert_array_equal(a["y"], b["y"])
        assert a["x"].dtype == np.uint8 and a["x"].shape[1:] == (28, 28, 1)
        counts = np.bincount(a["y"], minlength=10)
        assert counts.max() - counts.min() <= 2, counts  # stratified
    meta = load_meta("mnist", mnist_root)
    assert meta["input_shape"] == [1, 28, 28] and meta["source"].startswith("bundled")
    run_split(tiny_params(seed=8), "mnist", tmp_path)  # another seed, another split
    other, first = (load_arrays("mnist", "val", r)["x"] for r in (tmp_path, mnist_root))
    assert not np.array_equal(other, first)
