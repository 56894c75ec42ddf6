"""What the download and split stages share: the split format, stratified splitting, readers.

Split output (``data/split/<dataset>/``), the interface every later stage reads:

* ``{train,val,test}_x.npy``: uint8 images (N, H, W, C) or int token ids (N, max_len);
* ``{train,val,test}_y.npy``: int64 labels; ``{split}_len.npy`` true lengths for text;
* ``meta.json``: kind, input shape, class names, vocabulary size, data source;
* ``manifest.json``: where the data came from, the class counts and the content digest of
  each split (:func:`split_digest`, the dataset digest MLflow shows for a run's inputs).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnlab import paths
from nnlab.config import DataConfig
from nnlab.files import read_json

SPLITS = ("train", "val", "test")


class StageOrderError(RuntimeError):
    """A stage's input is missing: an earlier stage has not run."""


@dataclass
class Prepared:
    """What a dataset's ``split`` returns: arrays per split plus metadata."""

    kind: str
    classes: list[str]
    arrays: dict[str, dict[str, np.ndarray]]  # split -> {"x":..., "y":..., ["len":...]}
    meta: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)  # extra JSON files to write


def stratified_split(
    labels: np.ndarray, fractions: list[float], seed: int
) -> list[np.ndarray]:
    """Split indices into parts with the given fractions, class by class, seeded.

    ``fractions`` are the sizes of all parts but the first; the first part takes the rest.
    Each class is shuffled and cut at the same proportions, so class balance is kept.
    """
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        sizes = [round(len(idx) * f) for f in fractions]
        start = len(idx) - sum(sizes)
        parts[0].append(idx[:start])
        for i, size in enumerate(sizes, 1):
            parts[i].append(idx[start : start + size])
            start += size
    return [np.sort(np.concatenate(p)) if p else np.array([], int) for p in parts]


def subsample(labels: np.ndarray, max_samples: int | None, seed: int) -> np.ndarray:
    """Indices of a stratified, seeded subsample of at most ``max_samples`` items."""
    if max_samples is None or max_samples >= len(labels):
        return np.arange(len(labels))
    keep, _ = stratified_split(labels, [1 - max_samples / len(labels)], seed)
    return keep


def refuse_empty(dataset: str, counts: dict[str, int], cfg: DataConfig) -> None:
    """One line naming the dataset and every split that would be empty."""
    empty = [s for s in SPLITS if counts.get(s, 0) == 0]
    if empty:
        raise ValueError(
            f"split@{dataset}: the {' and '.join(empty)} split would be empty ({counts}); "
            f"raise data.{dataset}.max_samples (now {cfg.max_samples}) or the split fractions"
        )


def class_counts(y: np.ndarray, classes: list[str]) -> dict[str, int]:
    return {c: int((y == i).sum()) for i, c in enumerate(classes)}


def split_digest(arrays: dict[str, np.ndarray]) -> str:
    """A short, stable sha256 of one split's content: every array's name, dtype, shape and
    bytes, in name order (the same arrays give the same digest on any machine)."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        arr = np.ascontiguousarray(arrays[key])
        h.update(f"{key}:{arr.dtype.str}:{arr.shape};".encode())
        h.update(memoryview(arr).cast("B"))
    return h.hexdigest()[:16]


def split_dir(dataset: str, root: Path = Path(".")) -> Path:
    """``data/split/<dataset>``, or StageOrderError naming the stage to run when missing."""
    path = paths.split_dir(dataset, root)
    if not (path / paths.META).is_file():
        raise StageOrderError(
            f"{path}: no prepared data; run `dvc repro split@{dataset}` "
            f"(or `nnlab download {dataset} && nnlab split {dataset}`) first"
        )
    return path


def load_meta(dataset: str, root: Path = Path(".")) -> dict[str, Any]:
    return read_json(split_dir(dataset, root) / "meta.json")


def split_digests(dataset: str, root: Path = Path(".")) -> dict[str, str]:
    """The content digest of each split, from the split's manifest ({} if it has none)."""
    manifest = split_dir(dataset, root) / paths.MANIFEST
    return dict(read_json(manifest).get("digests", {})) if manifest.is_file() else {}


def load_arrays(dataset: str, split: str, root: Path = Path(".")) -> dict[str, np.ndarray]:
    """Memory-mapped arrays of one split: nothing is copied into RAM until indexed."""
    path = split_dir(dataset, root)
    arrays = {}
    for f in sorted(path.glob(f"{split}_*.npy")):
        arrays[f.stem.removeprefix(f"{split}_")] = np.load(f, mmap_mode="r")
    if "x" not in arrays or "y" not in arrays:
        raise StageOrderError(f"{path}: split {split!r} is missing; rerun split@{dataset}")
    return arrays
